/*
 * psync_follow.c — test client: follows keys and whole tables with
 * libparasync (NATS transport, libpq refetcher and page loader) and prints
 * what it holds, for the TAP tests to compare with para_sync.snapshot().
 *
 *   psync_follow -u NATS_URL -d CONNINFO [-t SYNC_NAME]... [-S SYNC_NAME]...
 *                KEY|TABLE:*|TABLE@SCOPE:* ...
 *
 *   KEY            a replica of the key (initial refetch)
 *   TABLE:*        a collection of the table
 *   TABLE@SCOPE:*  a collection of one scope of the table
 *   -t             a table in the 'table' subject layout (may repeat)
 *   -S             a table with a scope (may repeat)
 *
 * NATS_URL may carry a user and password (nats://user:pass@host:port).  A
 * replica or collection that cannot be set up ends it with status 1 and
 * "psync_follow: <what>: <status text> (<detail>)" on stderr.
 *
 * Prints "ready" once every replica and collection is set up, then reads
 * commands from stdin, one a line:
 *   dump   waits until no refetch or load is in flight, then prints one
 *          line per replica ("R") and collection member ("C"):
 *            R|C <key> <sequence> <status> <hex envelope>
 *          where the envelope is what the client holds, encoded as a
 *          snapshot (key, value, schema_version, sequence), then "end"
 *   quit   disposes of everything and exits
 * Not part of the extension.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "para_sync/client.h"

#define MAX_FOLLOWED 64
#define IDLE_WAIT_MS 30000

/* What a replica or member holds: the value with its schema_version. */
typedef struct held
{
	char	   *schema_version;
	size_t		len;
	uint8_t		value[];
} held;

static psync_replica *replicas[MAX_FOLLOWED];
static const char *replica_keys[MAX_FOLLOWED];
static int nreplicas;
static psync_collection *collections[MAX_FOLLOWED];
static int ncollections;

static bool
parse_held(void *ctx, const uint8_t *msgpack, size_t len, const psync_envelope *env,
		   void *recycled, void **out, const char **error)
{
	held	   *h = malloc(sizeof(*h) + len);

	(void) ctx;
	(void) recycled;			/* freed by the library when not returned */
	if (h == NULL || (h->schema_version = strndup(env->schema_version ? env->schema_version : "",
												  env->schema_version_len)) == NULL)
	{
		free(h);
		*error = "out of memory";
		return false;
	}
	h->len = len;
	memcpy(h->value, msgpack, len);
	*out = h;
	return true;
}

static void
free_held(void *ctx, void *value)
{
	held	   *h = value;

	(void) ctx;
	free(h->schema_version);
	free(h);
}

static int
write_hex(void *ctx, const char *buf, size_t len)
{
	(void) ctx;
	for (size_t i = 0; i < len; i++)
		printf("%02x", (unsigned char) buf[i]);
	return 0;
}

static void
print_state(char kind, const char *key, size_t key_len, const held *h,
			int64_t sequence, const char *status)
{
	static const uint8_t nil = 0xc0;
	psync_envelope env = {0};

	env.key = key;
	env.key_len = key_len;
	env.has_value = true;
	env.value = h ? h->value : &nil;
	env.value_len = h ? h->len : 1;
	env.schema_version = h ? h->schema_version : "";
	env.schema_version_len = strlen(env.schema_version);
	env.sequence = sequence < 0 ? 0 : (uint64_t) sequence;
	env.op = PSYNC_OP_SNAPSHOT;
	printf("%c %.*s %lld %s ", kind, (int) key_len, key, (long long) sequence, status);
	psync_envelope_encode(&env, write_hex, NULL);
	printf("\n");
}

static void
print_replica(void *ctx, const void *value, const psync_replica_metadata *meta)
{
	print_state('R', ctx, strlen(ctx), value, meta->sequence,
				psync_replica_status_name(meta->status));
}

static void
print_member(void *ctx, const char *key, size_t key_len, const void *value, int64_t sequence)
{
	(void) ctx;
	print_state('C', key, key_len, value, sequence, "ok");
}

static void
dump(void)
{
	for (int i = 0; i < nreplicas; i++)
		psync_replica_wait_idle(replicas[i], IDLE_WAIT_MS);
	for (int i = 0; i < ncollections; i++)
		psync_collection_wait_idle(collections[i], IDLE_WAIT_MS);
	for (int i = 0; i < nreplicas; i++)
		psync_replica_get(replicas[i], print_replica, (void *) replica_keys[i]);
	for (int i = 0; i < ncollections; i++)
		psync_collection_foreach(collections[i], print_member, NULL);
	printf("end\n");
	fflush(stdout);
}

static void
fail(const char *what, psync_status st)
{
	char		detail[512];

	psync_last_error(detail, sizeof(detail));
	fprintf(stderr, "psync_follow: %s: %s (%s)\n", what, psync_status_text(st), detail);
	exit(1);
}

int
main(int argc, char **argv)
{
	const char *url = NULL;
	const char *conninfo = NULL;
	const char *layout[MAX_FOLLOWED + 1] = {NULL};
	int			nlayout = 0;
	const char *scoped[MAX_FOLLOWED + 1] = {NULL};
	int			nscoped = 0;
	psync_nats_options no;
	psync_transport *t;
	psync_refetcher *refetcher;
	psync_pq_loader *loader;
	psync_schema schema = {parse_held, free_held, NULL};
	psync_status st;
	char		line[64];
	int			i;

	for (i = 1; i + 1 < argc && argv[i][0] == '-'; i += 2)
	{
		if (strcmp(argv[i], "-u") == 0)
			url = argv[i + 1];
		else if (strcmp(argv[i], "-d") == 0)
			conninfo = argv[i + 1];
		else if (strcmp(argv[i], "-t") == 0 && nlayout < MAX_FOLLOWED)
			layout[nlayout++] = argv[i + 1];
		else if (strcmp(argv[i], "-S") == 0 && nscoped < MAX_FOLLOWED)
			scoped[nscoped++] = argv[i + 1];
		else
			break;
	}
	if (url == NULL || conninfo == NULL || i >= argc)
	{
		fprintf(stderr, "usage: psync_follow -u NATS_URL -d CONNINFO [-t SYNC_NAME]... "
				"[-S SYNC_NAME]... KEY|TABLE:*|TABLE@SCOPE:* ...\n");
		return 2;
	}
	psync_nats_options_init(&no);
	no.url = url;
	no.table_layout = layout;
	no.scoped_tables = scoped;
	if ((st = psync_nats_transport_connect(&no, &t)) != PSYNC_OK)
		fail("connect", st);
	if ((st = psync_pq_refetcher_new_conninfo(conninfo, &refetcher)) != PSYNC_OK)
		fail("refetcher", st);
	if ((st = psync_pq_loader_new_conninfo(conninfo, &loader)) != PSYNC_OK)
		fail("loader", st);
	for (; i < argc; i++)
	{
		size_t		len = strlen(argv[i]);

		if (len > 2 && strcmp(argv[i] + len - 2, ":*") == 0 && ncollections < MAX_FOLLOWED)
		{
			psync_collection_options o;
			char	   *at;

			psync_collection_options_init(&o);
			o.table = strndup(argv[i], len - 2);
			if ((at = strchr(o.table, '@')) != NULL)
			{
				*at = '\0';		/* TABLE@SCOPE: one scope */
				o.scope = at + 1;
			}
			o.schema = schema;
			o.transport = t;
			o.load_page = psync_pq_load_page_fn();
			o.load_ctx = psync_pq_load_page_ctx(loader);
			o.refetch = psync_pq_refetch_fn();
			o.refetch_ctx = psync_pq_refetch_ctx(refetcher);
			if ((st = psync_collection_new(&o, &collections[ncollections++])) != PSYNC_OK)
				fail(argv[i], st);
		}
		else if (nreplicas < MAX_FOLLOWED)
		{
			psync_replica_options o;

			psync_replica_options_init(&o);
			o.key = argv[i];
			o.schema = schema;
			o.transport = t;
			o.refetch = psync_pq_refetch_fn();
			o.refetch_ctx = psync_pq_refetch_ctx(refetcher);
			o.initial_refetch = true;
			replica_keys[nreplicas] = argv[i];
			if ((st = psync_replica_new(&o, &replicas[nreplicas++])) != PSYNC_OK)
				fail(argv[i], st);
		}
	}
	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin) != NULL)
	{
		if (strncmp(line, "dump", 4) == 0)
			dump();
		else if (strncmp(line, "quit", 4) == 0)
			break;
	}
	for (i = 0; i < nreplicas; i++)
		psync_replica_destroy(replicas[i]);
	for (i = 0; i < ncollections; i++)
		psync_collection_destroy(collections[i]);
	psync_pq_loader_destroy(loader);
	psync_refetcher_destroy(refetcher);
	psync_transport_destroy(t);
	return 0;
}
