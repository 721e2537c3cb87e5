/*
 * test_abi.c — the size rule of libparasync's public structs
 * (include/para_sync/client.h, "ABI policy").
 *
 * Every *_options, *_counters and *_meta* struct starts with size_t size,
 * and a program built against an older header — here, a copy of each struct
 * truncated by its last member — must find the library writing nothing past
 * its struct and reading nothing past it (a member it did not have takes
 * its default).  Canaries after the old struct catch writes past it;
 * options are handed to the library in a buffer malloc'd to the old size
 * exactly, so the ASan build of this test catches any read beyond (and the
 * NATS options' missing last member is a pointer: reading it crashes).  A check of the header itself makes sure that every
 * such struct, including one added later, has the size member first.
 */
#include "harness.h"

#include <stddef.h>
#include <stdint.h>

#define CANARY 0xA5

/* The structs' size member is first (the header check below does every one). */
_Static_assert(offsetof(psync_nats_options, size) == 0, "size first");
_Static_assert(offsetof(psync_replica_options, size) == 0, "size first");
_Static_assert(offsetof(psync_replica_metadata, size) == 0, "size first");
_Static_assert(offsetof(psync_replica_counters, size) == 0, "size first");
_Static_assert(offsetof(psync_collection_options, size) == 0, "size first");
_Static_assert(offsetof(psync_collection_counters, size) == 0, "size first");

/* An "old header" buffer: old bytes, then canaries up to the new size + 16. */
static uint8_t *
old_struct(size_t old_size, size_t new_size)
{
	uint8_t    *b = malloc(new_size + 16);

	memset(b, CANARY, new_size + 16);
	(void) old_size;
	return b;
}

static bool
canaries_intact(const uint8_t *b, size_t old_size, size_t new_size)
{
	for (size_t i = old_size; i < new_size + 16; i++)
		if (b[i] != CANARY)
			return false;
	return true;
}

/* The old struct alone, in a buffer of exactly its size (freed at exit). */
static void *
exact_copy(const uint8_t *b, size_t old_size)
{
	static void *last;

	free(last);
	last = malloc(old_size);
	memcpy(last, b, old_size);
	return last;
}

static size_t
size_member(const void *b)
{
	size_t		s;

	memcpy(&s, b, sizeof(s));
	return s;
}

/* ---- the header: every options/counters/meta struct has size first ---- */

static bool
sized_name(const char *name)
{
	return strstr(name, "_options") != NULL || strstr(name, "_counters") != NULL ||
		strstr(name, "_meta") != NULL;
}

/* Structs the application never allocates for the library to fill or read
 * past, or that are frozen within an ABI version (see the ABI policy). */
static bool
unsized_allowed(const char *name)
{
	return strcmp(name, "psync_event") == 0 || strcmp(name, "psync_schema") == 0 ||
		strcmp(name, "psync_raw_value") == 0;
}

static void
header_structs_carry_size(void)
{
	FILE	   *f = fopen("include/para_sync/client.h", "r");
	char		line[512];
	char		name[128] = "";
	int			state = 0;		/* 0: outside; 1: saw "typedef struct X"; 2: in body */
	int			sized = 0;

	CHECK(f != NULL);
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL)
	{
		char	   *p = line + strspn(line, " \t");

		if (state == 0)
		{
			if (sscanf(p, "typedef struct %127s", name) == 1 &&
				strchr(p, ';') == NULL)
				state = 1;
			continue;
		}
		if (state == 1)
		{
			state = strncmp(p, "{", 1) == 0 ? 2 : 0;
			continue;
		}
		/* state 2: the first line of the body that is not a comment */
		if (*p == '\n' || strncmp(p, "/*", 2) == 0 || *p == '*')
			continue;
		if (sized_name(name))
		{
			bool		ok = strncmp(p, "size_t", 6) == 0 &&
				strncmp(p + 6 + strspn(p + 6, " \t"), "size;", 5) == 0;

			if (!ok)
				fprintf(stderr, "  %s: first member is not size_t size: %s", name, p);
			CHECK(ok);
			sized++;
		}
		else
		{
			if (!unsized_allowed(name))
				fprintf(stderr, "  %s: a public struct without a size (name it "
						"*_options/_counters/_meta with size_t size first)\n", name);
			CHECK(unsized_allowed(name));
		}
		state = 0;
	}
	fclose(f);
	CHECK_EQ_INT(sized, 6);
}

static psync_status
empty_load(void *ctx, const char *table, const char *after_key, int max_rows,
		   psync_page_row_fn row, void *row_ctx, char *error, size_t error_size)
{
	(void) ctx, (void) table, (void) after_key, (void) max_rows;
	(void) row, (void) row_ctx, (void) error, (void) error_size;
	return PSYNC_OK;
}

/* ---- options: init and new read only the caller's bytes ---- */

static void
old_replica_options(void)
{
	size_t		old = offsetof(psync_replica_options, max_buffered);
	size_t		full = sizeof(psync_replica_options);
	uint8_t    *b = old_struct(old, full);
	psync_replica_options *o = (psync_replica_options *) b;
	psync_transport *t = NULL;
	psync_replica *r = NULL;
	test_buf	seed;
	psync_envelope env = test_envelope("users:1", 1, "ada");
	psync_replica_metadata m;

	psync_replica_options_init_sized(o, old);
	CHECK(canaries_intact(b, old, full));
	CHECK_EQ_INT(size_member(b), old);
	CHECK_EQ_INT(psync_inprocess_transport_new(&t), PSYNC_OK);
	seed = test_encode(&env);
	o->key = "users:1";
	psync_schema_raw(&o->schema);
	o->transport = t;
	o->seed = seed.data;
	o->seed_len = seed.len;
	CHECK_EQ_INT(psync_replica_new(exact_copy(b, old), &r), PSYNC_OK);
	psync_replica_meta(r, &m);
	CHECK_EQ_INT(m.sequence, 1);
	CHECK_EQ_INT(m.size, sizeof(m));
	CHECK(canaries_intact(b, old, full));
	psync_replica_destroy(r);
	psync_transport_destroy(t);
	free(seed.data);
	free(b);
}

static void
old_collection_options(void)
{
	size_t		old = offsetof(psync_collection_options, layout_check_ms);
	size_t		full = sizeof(psync_collection_options);
	uint8_t    *b = old_struct(old, full);
	psync_collection_options *o = (psync_collection_options *) b;
	psync_transport *t = NULL;
	psync_collection *c = NULL;

	psync_collection_options_init_sized(o, old);
	CHECK(canaries_intact(b, old, full));
	CHECK_EQ_INT(size_member(b), old);
	/* its members are the defaults, as with the full struct */
	CHECK_EQ_INT(((psync_collection_options *) b)->page_size, 10000);
	CHECK_EQ_INT(((psync_collection_options *) b)->max_tombstones, 4096);
	CHECK_EQ_INT(psync_inprocess_transport_new(&t), PSYNC_OK);
	o->table = "users";
	psync_schema_raw(&o->schema);
	o->transport = t;
	o->load_page = empty_load;
	CHECK_EQ_INT(psync_collection_new(exact_copy(b, old), &c), PSYNC_OK);
	CHECK_EQ_INT(psync_collection_get_state(c), PSYNC_COLLECTION_LIVE);
	psync_collection_destroy(c);
	psync_transport_destroy(t);
	free(b);
}

static void
old_nats_options(void)
{
	size_t		old = offsetof(psync_nats_options, table_layout);
	size_t		full = sizeof(psync_nats_options);
	uint8_t    *b = old_struct(old, full);
	psync_nats_options *o = (psync_nats_options *) b;
	psync_transport *t = NULL;

	psync_nats_options_init_sized(o, old);
	CHECK(canaries_intact(b, old, full));
	CHECK_EQ_INT(o->connect_timeout_ms, 2000);
	/*
	 * table_layout is beyond the caller's struct (garbage here): reading it
	 * would crash or refuse the options; nothing listens on port 1, so the
	 * connect fails cleanly with PSYNC_ERR_NATS.
	 */
	o->url = "nats://127.0.0.1:1";
	o->max_reconnect = 0;
	CHECK_EQ_INT(psync_nats_transport_connect(exact_copy(b, old), &t), PSYNC_ERR_NATS);
	CHECK(t == NULL);
	free(b);
}

/* An options struct never initialised (size 0) is refused, not guessed at. */
static void
uninitialised_options_refused(void)
{
	psync_replica_options ro;
	psync_collection_options co;
	psync_nats_options no;
	psync_transport *t = NULL;
	psync_transport *nt = NULL;
	psync_replica *r = NULL;
	psync_collection *c = NULL;

	CHECK_EQ_INT(psync_inprocess_transport_new(&t), PSYNC_OK);
	memset(&ro, 0, sizeof(ro));
	ro.key = "users:1";
	psync_schema_raw(&ro.schema);
	ro.transport = t;
	CHECK_EQ_INT(psync_replica_new(&ro, &r), PSYNC_ERR_INVALID_ARGUMENT);
	memset(&co, 0, sizeof(co));
	co.table = "users";
	psync_schema_raw(&co.schema);
	co.transport = t;
	co.load_page = psync_pq_load_page_fn();
	CHECK_EQ_INT(psync_collection_new(&co, &c), PSYNC_ERR_INVALID_ARGUMENT);
	memset(&no, 0, sizeof(no));
	no.url = "nats://127.0.0.1:1";
	CHECK_EQ_INT(psync_nats_transport_connect(&no, &nt), PSYNC_ERR_INVALID_ARGUMENT);
	CHECK(nt == NULL);
	psync_transport_destroy(t);
}

/* ---- counters and metadata: the library writes only the caller's bytes ---- */

static void
old_counters_and_meta(void)
{
	psync_transport *t = NULL;
	psync_replica *r = NULL;
	psync_collection *c = NULL;
	psync_replica_options ro;
	psync_collection_options co;
	psync_envelope e1 = test_envelope("users:1", 1, "ada");
	psync_envelope e2 = test_envelope("users:1", 2, "bob");
	test_buf	seed;
	size_t		old, full;
	uint8_t    *b;

	CHECK_EQ_INT(psync_inprocess_transport_new(&t), PSYNC_OK);
	seed = test_encode(&e1);
	psync_replica_options_init(&ro);
	ro.key = "users:1";
	psync_schema_raw(&ro.schema);
	ro.transport = t;
	ro.seed = seed.data;
	ro.seed_len = seed.len;
	CHECK_EQ_INT(psync_replica_new(&ro, &r), PSYNC_OK);
	CHECK_EQ_INT(psync_transport_publish(t, &e2), PSYNC_OK);

	old = offsetof(psync_replica_counters, refetches);
	full = sizeof(psync_replica_counters);
	b = old_struct(old, full);
	psync_replica_stats_sized(r, (psync_replica_counters *) b, old);
	CHECK(canaries_intact(b, old, full));
	CHECK_EQ_INT(size_member(b), old);
	CHECK_EQ_INT(((psync_replica_counters *) b)->applied, 2);
	free(b);

	old = offsetof(psync_replica_metadata, status);
	full = sizeof(psync_replica_metadata);
	b = old_struct(old, full);
	psync_replica_meta_sized(r, (psync_replica_metadata *) b, old);
	CHECK(canaries_intact(b, old, full));
	CHECK_EQ_INT(size_member(b), old);
	CHECK_EQ_INT(((psync_replica_metadata *) b)->sequence, 2);
	free(b);

	psync_collection_options_init(&co);
	co.table = "users";
	psync_schema_raw(&co.schema);
	co.transport = t;
	co.load_page = empty_load;
	CHECK_EQ_INT(psync_collection_new(&co, &c), PSYNC_OK);
	CHECK_EQ_INT(psync_transport_publish(t, &e1), PSYNC_OK);
	old = offsetof(psync_collection_counters, key_slots);
	full = sizeof(psync_collection_counters);
	b = old_struct(old, full);
	psync_collection_stats_sized(c, (psync_collection_counters *) b, old);
	CHECK(canaries_intact(b, old, full));
	CHECK_EQ_INT(size_member(b), old);
	CHECK_EQ_INT(((psync_collection_counters *) b)->loads, 1);
	CHECK_EQ_INT(((psync_collection_counters *) b)->applied, 1);
	free(b);

	/* too small to hold even the size: nothing written */
	b = old_struct(0, sizeof(size_t));
	psync_collection_stats_sized(c, (psync_collection_counters *) b, sizeof(size_t) - 1);
	CHECK(canaries_intact(b, 0, sizeof(size_t)));
	free(b);

	psync_collection_destroy(c);
	psync_replica_destroy(r);
	psync_transport_destroy(t);
	free(seed.data);
}

/* A newer header (one more counter): the library fills its own, zeroes the rest. */
static void
newer_counters(void)
{
	struct newer
	{
		psync_replica_counters known;
		uint64_t	added_later;
	}			n;
	psync_transport *t = NULL;
	psync_replica *r = NULL;
	psync_replica_options ro;

	CHECK_EQ_INT(psync_inprocess_transport_new(&t), PSYNC_OK);
	psync_replica_options_init(&ro);
	ro.key = "users:1";
	psync_schema_raw(&ro.schema);
	ro.transport = t;
	CHECK_EQ_INT(psync_replica_new(&ro, &r), PSYNC_OK);
	memset(&n, CANARY, sizeof(n));
	psync_replica_stats_sized(r, (psync_replica_counters *) &n, sizeof(n));
	CHECK_EQ_INT(n.known.size, sizeof(psync_replica_counters));
	CHECK_EQ_INT(n.added_later, 0);
	CHECK_EQ_INT(n.known.applied, 0);
	psync_replica_destroy(r);
	psync_transport_destroy(t);
}

int
main(void)
{
	RUN(header_structs_carry_size);
	RUN(old_replica_options);
	RUN(old_collection_options);
	RUN(old_nats_options);
	RUN(uninitialised_options_refused);
	RUN(old_counters_and_meta);
	RUN(newer_counters);
	return harness_finish();
}
