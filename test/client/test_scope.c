/*
 * test_scope.c — scoped streams in libparasync (docs/protocol.md "Scopes"),
 * without a server: the envelope's scope field and the scope grammar, the
 * codec's forms for programs built before the field existed, scope
 * patterns ("<table>@<scope>:*") on the in-process transport, and
 * collections of one scope against an in-memory table whose rows move
 * between scopes the way the server captures a move (a delete in the old
 * scope, then an upsert in the new one, each with its own sequence).
 */
#include <stddef.h>

#include "harness.h"
#include "transport_internal.h"

/* ---- the field and the grammar ---- */

static void
scope_grammar(void)
{
	char		long_scope[PSYNC_MAX_SCOPE_LEN + 2];
	const char *valid[] = {"acme", "42", "acme:7", "%00", "%", "%00:x", ":x", "x:",
	"a%2Eb", "caf%C3%A9", "-_"};
	const char *invalid[] = {"", "a.b", "a*", "a>", "a b", "%2e", "%41", "%0", "%%",
	"%:x", "x:%", "%000", "a@b"};

	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
	{
		if (!psync_scope_is_valid(valid[i], strlen(valid[i])))
			fprintf(stderr, "  \"%s\" should be a scope\n", valid[i]);
		CHECK(psync_scope_is_valid(valid[i], strlen(valid[i])));
	}
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
	{
		if (psync_scope_is_valid(invalid[i], strlen(invalid[i])))
			fprintf(stderr, "  \"%s\" should not be a scope\n", invalid[i]);
		CHECK(!psync_scope_is_valid(invalid[i], strlen(invalid[i])));
	}
	memset(long_scope, 'a', sizeof(long_scope));
	CHECK(psync_scope_is_valid(long_scope, PSYNC_MAX_SCOPE_LEN));
	CHECK(!psync_scope_is_valid(long_scope, PSYNC_MAX_SCOPE_LEN + 1));
	CHECK(!psync_scope_is_valid(NULL, 0));
}

/* An upsert of key in scope, encoded. */
static test_buf
scoped_bytes(const char *key, uint64_t seq, const char *name, const char *scope)
{
	psync_envelope env = test_envelope(key, seq, name);

	env.scope = scope;
	env.scope_len = scope ? strlen(scope) : 0;
	return test_encode(&env);
}

static void
scope_round_trip(void)
{
	test_buf	b = scoped_bytes("orders:42", 7, "ada", "acme:7");
	test_buf	plain = scoped_bytes("orders:42", 7, "ada", NULL);
	psync_envelope env;

	CHECK(b.data != NULL);
	CHECK_EQ_INT(psync_envelope_decode(b.data, b.len, &env), PSYNC_DECODE_OK);
	CHECK(env.scope != NULL && env.scope_len == 6 && memcmp(env.scope, "acme:7", 6) == 0);
	CHECK_EQ_INT(env.sequence, 7);
	/* scope is the last field: the bytes end with it */
	CHECK(b.len > 13 && memcmp(b.data + b.len - 13, "\xa5scope\xa6" "acme:7", 13) == 0);
	/* no scope: the bytes of a table without one, unchanged */
	CHECK_EQ_INT(psync_envelope_decode(plain.data, plain.len, &env), PSYNC_DECODE_OK);
	CHECK(env.scope == NULL && env.scope_len == 0);
	CHECK_EQ_INT(b.len, plain.len + 13);
	CHECK(memcmp(b.data + 1, plain.data + 1, plain.len - 1) == 0);
	free(b.data);
	free(plain.data);
	/* the encoder refuses a scope outside the grammar */
	b = scoped_bytes("orders:42", 7, "ada", "a.b");
	CHECK(b.data == NULL);
}

/* A hand-made envelope with a scope field of its own. */
static psync_decode_error
decode_with_scope(void (*pack_scope) (msgpack_packer *pk), int scopes)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	psync_envelope env;
	psync_decode_error e;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 5 + scopes);
	msgpack_pack_str_with_body(&pk, "key", 3);
	msgpack_pack_str_with_body(&pk, "orders:1", 8);
	msgpack_pack_str_with_body(&pk, "value", 5);
	msgpack_pack_nil(&pk);
	msgpack_pack_str_with_body(&pk, "schema_version", 14);
	msgpack_pack_str_with_body(&pk, "1", 1);
	msgpack_pack_str_with_body(&pk, "sequence", 8);
	msgpack_pack_uint64(&pk, 3);
	msgpack_pack_str_with_body(&pk, "op", 2);
	msgpack_pack_str_with_body(&pk, "delete", 6);
	for (int i = 0; i < scopes; i++)
	{
		msgpack_pack_str_with_body(&pk, "scope", 5);
		pack_scope(&pk);
	}
	e = psync_envelope_decode(sb.data, sb.size, &env);
	msgpack_sbuffer_destroy(&sb);
	return e;
}

static void pack_good(msgpack_packer *pk) { msgpack_pack_str_with_body(pk, "acme", 4); }
static void pack_int(msgpack_packer *pk) { msgpack_pack_int(pk, 42); }
static void pack_bad(msgpack_packer *pk) { msgpack_pack_str_with_body(pk, "ac.me", 5); }
static void pack_empty(msgpack_packer *pk) { msgpack_pack_str_with_body(pk, "", 0); }

static void
scope_field_checked(void)
{
	CHECK_EQ_INT(decode_with_scope(pack_good, 1), PSYNC_DECODE_OK);
	CHECK_EQ_INT(decode_with_scope(pack_good, 0), PSYNC_DECODE_OK);
	CHECK_EQ_INT(decode_with_scope(pack_good, 2), PSYNC_DECODE_DUPLICATE_FIELD);
	CHECK_EQ_INT(decode_with_scope(pack_int, 1), PSYNC_DECODE_WRONG_TYPE);
	CHECK_EQ_INT(decode_with_scope(pack_bad, 1), PSYNC_DECODE_BAD_SCOPE);
	CHECK_EQ_INT(decode_with_scope(pack_empty, 1), PSYNC_DECODE_BAD_SCOPE);
	CHECK(strcmp(psync_decode_error_text(PSYNC_DECODE_BAD_SCOPE), "unknown decode error") != 0);
	CHECK(strcmp(psync_status_text(PSYNC_ERR_PERMISSION), "unknown status") != 0);
}

static void
count_envelopes(void *ctx, const psync_event *ev)
{
	if (ev->kind == PSYNC_EVENT_ENVELOPE)
		(*(int *) ctx)++;
}

/*
 * A program built before the scope members: it calls the exported
 * functions with the struct that ends before them.  Decoding writes
 * nothing past it; encoding and publishing read nothing past it (garbage
 * there is no scope).
 */
static void
older_programs(void)
{
	size_t		old = offsetof(psync_envelope, scope);
	test_buf	b = scoped_bytes("orders:42", 7, "ada", "acme");
	test_buf	out = {NULL, 0};
	unsigned char buf[sizeof(psync_envelope) + 16];
	psync_envelope *env = (psync_envelope *) buf;
	psync_envelope decoded;

	memset(buf, 0xA5, sizeof(buf));
	CHECK_EQ_INT(psync_envelope_decode_sized(b.data, b.len, env, old), PSYNC_DECODE_OK);
	CHECK_EQ_INT(env->sequence, 7);
	for (size_t i = old; i < sizeof(buf); i++)
		CHECK(buf[i] == 0xA5);
	/* the scope members of an old struct are whatever lies beyond it */
	CHECK_EQ_INT(psync_envelope_encode_sized(env, old, test_buf_write, &out), 0);
	CHECK_EQ_INT(psync_envelope_decode(out.data, out.len, &decoded), PSYNC_DECODE_OK);
	CHECK(decoded.scope == NULL);
	CHECK_EQ_INT(decoded.sequence, 7);
	free(out.data);
	free(b.data);

	/* publishing one: garbage beyond the old struct is no scope */
	{
		psync_transport *t = NULL;
		psync_subscription_id scoped = 0,
					all = 0;
		int			in_scope = 0,
					every = 0;

		CHECK_EQ_INT(psync_inprocess_transport_new(&t), PSYNC_OK);
		CHECK_EQ_INT(psync_transport_subscribe(t, "orders@acme:*", count_envelopes, &in_scope, &scoped), PSYNC_OK);
		CHECK_EQ_INT(psync_transport_subscribe(t, "orders:*", count_envelopes, &every, &all), PSYNC_OK);
		memset(buf, 0xA5, sizeof(buf));
		*env = test_envelope("orders:1", 1, "x");
		memset(buf + old, 0xA5, sizeof(buf) - old);
		CHECK_EQ_INT(psync_transport_publish_sized(t, env, old), PSYNC_OK);
		CHECK_EQ_INT(every, 1);
		CHECK_EQ_INT(in_scope, 0);
		/* and a scope outside the grammar is refused */
		decoded = test_envelope("orders:1", 2, "x");
		decoded.scope = "a.b";
		decoded.scope_len = 3;
		CHECK_EQ_INT(psync_transport_publish(t, &decoded), PSYNC_ERR_INVALID_ARGUMENT);
		decoded.scope = "acme";
		decoded.scope_len = 4;
		CHECK_EQ_INT(psync_transport_publish(t, &decoded), PSYNC_OK);
		CHECK_EQ_INT(in_scope, 1);
		psync_transport_unsubscribe(t, scoped);
		psync_transport_unsubscribe(t, all);
		psync_transport_destroy(t);
	}
}

/* ---- scope patterns on the in-process transport ---- */

typedef struct tally
{
	int			envelopes;
	int			refused;
} tally;

static void
tally_handler(void *ctx, const psync_event *ev)
{
	tally	   *t = ctx;

	if (ev->kind == PSYNC_EVENT_ENVELOPE)
		t->envelopes++;
	else if (ev->kind == PSYNC_EVENT_REFUSED)
		t->refused++;
}

static void
scope_patterns(void)
{
	psync_transport *t = NULL;
	psync_subscription_id acme = 0,
				globex = 0,
				all = 0,
				bad = 0;
	tally		a = {0},
				g = {0},
				every = {0};
	psync_envelope env = test_envelope("orders:1", 1, "x");
	psync_envelope event;
	test_buf	raw = scoped_bytes("orders:2", 1, "y", "globex");

	CHECK_EQ_INT(psync_inprocess_transport_new(&t), PSYNC_OK);
	CHECK_EQ_INT(psync_transport_subscribe(t, "orders@acme:*", tally_handler, &a, &acme), PSYNC_OK);
	CHECK_EQ_INT(psync_transport_subscribe(t, "orders@globex:*", tally_handler, &g, &globex), PSYNC_OK);
	CHECK_EQ_INT(psync_transport_subscribe(t, "orders:*", tally_handler, &every, &all), PSYNC_OK);
	/* not patterns: an empty or malformed scope, a key with '@' */
	CHECK_EQ_INT(psync_transport_subscribe(t, "orders@:*", tally_handler, &a, &bad), PSYNC_ERR_INVALID_ARGUMENT);
	CHECK_EQ_INT(psync_transport_subscribe(t, "orders@a.b:*", tally_handler, &a, &bad), PSYNC_ERR_INVALID_ARGUMENT);
	CHECK_EQ_INT(psync_transport_subscribe(t, "orders:1@a:*", tally_handler, &a, &bad), PSYNC_ERR_INVALID_ARGUMENT);
	CHECK_EQ_INT(psync_transport_subscribe(t, "@a:*", tally_handler, &a, &bad), PSYNC_ERR_INVALID_ARGUMENT);

	env.scope = "acme";
	env.scope_len = 4;
	CHECK_EQ_INT(psync_transport_publish(t, &env), PSYNC_OK);
	CHECK_EQ_INT(psync_transport_publish_raw(t, "orders:2", raw.data, raw.len), PSYNC_OK);
	env.scope = NULL;
	env.scope_len = 0;
	CHECK_EQ_INT(psync_transport_publish(t, &env), PSYNC_OK);	/* no scope: no scope's */
	/* a table event is no scope's: the table pattern only */
	event = test_reload_event("orders", "1");
	CHECK_EQ_INT(psync_transport_publish(t, &event), PSYNC_OK);
	CHECK_EQ_INT(a.envelopes, 1);
	CHECK_EQ_INT(g.envelopes, 1);
	CHECK_EQ_INT(every.envelopes, 4);
	psync_transport_unsubscribe(t, acme);
	psync_transport_unsubscribe(t, globex);
	psync_transport_unsubscribe(t, all);
	CHECK_EQ_INT(psync_transport_key_count(t), 0);
	psync_transport_destroy(t);
	free(raw.data);
}

/* ---- collections of one scope ---- */

#define NROWS 64

typedef struct srow
{
	char		key[32];
	uint64_t	seq;
	char		name[32];
	char		scope[16];
	bool		present;
} srow;

typedef struct sdb
{
	pthread_mutex_t lock;
	srow		rows[NROWS];
	int			nrows;
	int			refetches;
	char		last_table[64];	/* what the loader was asked for */
	bool		stray_row;		/* the loader adds a row of another scope */
	psync_transport *t;
	bool		defer;			/* refetches: answered now, completed later */
	psync_refetch_request *deferred[NROWS];
	test_buf	answers[NROWS];
	int			ndeferred;
	void		(*during_load) (struct sdb *db);	/* before the first page is read */
} sdb;

static void
publish_env(sdb *db, const srow *r, psync_op op)
{
	psync_envelope env = test_envelope(r->key, r->seq, r->name);
	static const uint8_t nil = 0xc0;

	env.op = op;
	env.scope = r->scope;
	env.scope_len = strlen(r->scope);
	if (op == PSYNC_OP_DELETE)
	{
		env.value = &nil;
		env.value_len = 1;
	}
	psync_transport_publish(db->t, &env);
}

static srow *
sdb_row(sdb *db, const char *key)
{
	for (int i = 0; i < db->nrows; i++)
		if (strcmp(db->rows[i].key, key) == 0)
			return &db->rows[i];
	memset(&db->rows[db->nrows], 0, sizeof(srow));
	snprintf(db->rows[db->nrows].key, sizeof(db->rows[0].key), "%s", key);
	return &db->rows[db->nrows++];
}

/* An insert or update of key in scope; a move when the scope changes. */
static void
sdb_write(sdb *db, const char *key, const char *name, const char *scope, bool silent)
{
	srow	   *r;

	pthread_mutex_lock(&db->lock);
	r = sdb_row(db, key);
	if (r->present && strcmp(r->scope, scope) != 0)
	{
		/* a move: a delete in the old scope, then the upsert in the new one */
		r->seq++;
		if (!silent)
			publish_env(db, r, PSYNC_OP_DELETE);
	}
	r->seq++;
	r->present = true;
	snprintf(r->name, sizeof(r->name), "%s", name);
	snprintf(r->scope, sizeof(r->scope), "%s", scope);
	pthread_mutex_unlock(&db->lock);
	if (!silent)
		publish_env(db, r, PSYNC_OP_UPSERT);
}

static void
sdb_delete(sdb *db, const char *key)
{
	srow	   *r;

	pthread_mutex_lock(&db->lock);
	r = sdb_row(db, key);
	r->seq++;
	r->present = false;
	pthread_mutex_unlock(&db->lock);
	publish_env(db, r, PSYNC_OP_DELETE);
}

static void
emit(const srow *r, psync_page_row_fn fn, void *ctx)
{
	psync_envelope env = test_envelope(r->key, r->seq, r->name);
	test_buf	b;

	env.op = PSYNC_OP_SNAPSHOT;
	env.has_txid = false;
	env.scope = r->scope;
	env.scope_len = strlen(r->scope);
	b = test_encode(&env);
	fn(ctx, b.data, b.len);
	free(b.data);
}

/* One page with every row (of the scope, for "<table>@<scope>"). */
static psync_status
sdb_load(void *ctx, const char *table, const char *after, int max_rows,
		 psync_page_row_fn fn, void *fn_ctx, char *error, size_t error_size)
{
	sdb		   *db = ctx;
	const char *at = strchr(table, '@');

	(void) max_rows;
	(void) error;
	(void) error_size;
	if (after != NULL)
		return PSYNC_OK;
	if (db->during_load != NULL)
	{
		void		(*hook) (sdb *) = db->during_load;

		db->during_load = NULL;
		hook(db);
	}
	pthread_mutex_lock(&db->lock);
	snprintf(db->last_table, sizeof(db->last_table), "%s", table);
	for (int i = 0; i < db->nrows; i++)
		if (db->rows[i].present && (at == NULL || strcmp(db->rows[i].scope, at + 1) == 0))
			emit(&db->rows[i], fn, fn_ctx);
	if (db->stray_row && at != NULL)
	{
		srow		stray = {"orders:999", 1, "stray", "elsewhere", true};

		emit(&stray, fn, fn_ctx);
	}
	pthread_mutex_unlock(&db->lock);
	return PSYNC_OK;
}

/* snapshot(key): the row with its scope now; nil (no scope) when deleted. */
static void
sdb_refetch(void *ctx, const char *key, psync_refetch_request *req)
{
	sdb		   *db = ctx;
	srow	   *r;
	psync_envelope env;
	test_buf	b;
	static const uint8_t nil = 0xc0;

	pthread_mutex_lock(&db->lock);
	db->refetches++;
	r = sdb_row(db, key);
	env = test_envelope(key, r->seq, r->name);
	env.op = PSYNC_OP_SNAPSHOT;
	env.has_txid = false;
	if (r->present)
	{
		env.scope = r->scope;
		env.scope_len = strlen(r->scope);
	}
	else
	{
		env.value = &nil;
		env.value_len = 1;
	}
	b = test_encode(&env);
	if (db->defer && db->ndeferred < NROWS)
	{
		/* the snapshot is read now; its answer arrives when the test says */
		db->deferred[db->ndeferred] = req;
		db->answers[db->ndeferred++] = b;
		pthread_mutex_unlock(&db->lock);
		return;
	}
	pthread_mutex_unlock(&db->lock);
	psync_refetch_complete(req, b.data, b.len);
	free(b.data);
}

/* Complete every deferred refetch, in the order they were asked. */
static void
sdb_answer(sdb *db)
{
	pthread_mutex_lock(&db->lock);
	for (int i = 0; i < db->ndeferred; i++)
	{
		psync_refetch_request *req = db->deferred[i];
		test_buf	b = db->answers[i];

		pthread_mutex_unlock(&db->lock);
		psync_refetch_complete(req, b.data, b.len);
		free(b.data);
		pthread_mutex_lock(&db->lock);
	}
	db->ndeferred = 0;
	pthread_mutex_unlock(&db->lock);
}

/* A collection of the table's rows in scope (NULL: every row), values by schema. */
static psync_status
open_scope_with(sdb *db, const char *scope, psync_schema schema, psync_collection **out)
{
	psync_collection_options o;

	psync_collection_options_init(&o);
	o.table = "orders";
	o.scope = scope;
	o.schema = schema;
	o.transport = db->t;
	o.load_page = sdb_load;
	o.load_ctx = db;
	o.refetch = sdb_refetch;
	o.refetch_ctx = db;
	return psync_collection_new(&o, out);
}

static psync_status
open_scope(sdb *db, const char *scope, psync_collection **out)
{
	return open_scope_with(db, scope, (psync_schema) {test_name_parse, test_free_value, NULL}, out);
}

typedef struct smatch
{
	sdb		   *db;
	const char *scope;
	int			seen;
	int			wrong;
} smatch;

static void
check_smember(void *ctx, const char *key, size_t key_len, const void *value, int64_t seq)
{
	smatch	   *m = ctx;
	srow	   *r = NULL;

	for (int i = 0; i < m->db->nrows; i++)
		if (strlen(m->db->rows[i].key) == key_len &&
			memcmp(m->db->rows[i].key, key, key_len) == 0)
			r = &m->db->rows[i];
	m->seen++;
	if (r == NULL || !r->present || (uint64_t) seq != r->seq ||
		strcmp(value, r->name) != 0 || (m->scope && strcmp(r->scope, m->scope) != 0))
	{
		fprintf(stderr, "  [%s] member %.*s seq=%lld value=%s vs table: %s seq=%llu in %s\n",
				m->scope ? m->scope : "*", (int) key_len, key, (long long) seq,
				(const char *) value, r ? (r->present ? r->name : "(deleted)") : "(none)",
				r ? (unsigned long long) r->seq : 0ULL, r ? r->scope : "-");
		m->wrong++;
	}
}

/* The collection holds exactly the table's rows of scope (NULL: every row). */
static void
check_scope(psync_collection *c, sdb *db, const char *scope)
{
	smatch		m = {db, scope, 0, 0};
	int			expected = 0;

	for (int i = 0; i < db->nrows; i++)
		expected += db->rows[i].present &&
			(scope == NULL || strcmp(db->rows[i].scope, scope) == 0);
	CHECK_EQ_INT(psync_collection_wait_idle(c, 5000), PSYNC_OK);
	psync_collection_foreach(c, check_smember, &m);
	CHECK_EQ_INT(m.wrong, 0);
	CHECK_EQ_INT(m.seen, expected);
	CHECK_EQ_INT(psync_collection_count(c), expected);
}

static void
sdb_init(sdb *db)
{
	memset(db, 0, sizeof(*db));
	pthread_mutex_init(&db->lock, NULL);
	CHECK_EQ_INT(psync_inprocess_transport_new(&db->t), PSYNC_OK);
}

static void
sdb_free(sdb *db)
{
	psync_transport_destroy(db->t);
	pthread_mutex_destroy(&db->lock);
}

/* Rows move in and out; three collections — S, T, every scope — stay exact. */
static void
moves_keep_three_collections_exact(void)
{
	sdb			db;
	psync_collection *s = NULL,
			   *t = NULL,
			   *all = NULL;
	psync_collection_counters cs;
	char		key[32];

	sdb_init(&db);
	for (int i = 0; i < 20; i++)
	{
		snprintf(key, sizeof(key), "orders:%d", i);
		sdb_write(&db, key, "a", i % 2 ? "acme" : "globex", true);
	}
	CHECK_EQ_INT(open_scope(&db, "acme", &s), PSYNC_OK);
	CHECK_EQ_INT(open_scope(&db, "globex", &t), PSYNC_OK);
	CHECK_EQ_INT(open_scope(&db, NULL, &all), PSYNC_OK);
	CHECK(strcmp(db.last_table, "orders") == 0);
	check_scope(s, &db, "acme");
	check_scope(t, &db, "globex");
	check_scope(all, &db, NULL);
	CHECK_EQ_INT(psync_collection_count(s), 10);

	/* moves, updates in the new scope, moves back, deletes, inserts */
	for (int round = 0; round < 5; round++)
		for (int i = 0; i < 20; i++)
		{
			char		name[16];

			snprintf(key, sizeof(key), "orders:%d", i);
			snprintf(name, sizeof(name), "r%d", round);
			sdb_write(&db, key, name, (i + round) % 3 ? "acme" : "globex", false);
			if ((i + round) % 4 == 0)
				sdb_write(&db, key, "again", (i + round) % 3 ? "acme" : "globex", false);
		}
	sdb_delete(&db, "orders:3");
	sdb_write(&db, "orders:100", "new", "acme", false);
	check_scope(s, &db, "acme");
	check_scope(t, &db, "globex");
	check_scope(all, &db, NULL);
	/* entering after changes elsewhere is not a gap: nothing was refetched */
	CHECK_EQ_INT(db.refetches, 0);
	psync_collection_stats(s, &cs);
	CHECK_EQ_INT(cs.gaps, 0);
	psync_collection_destroy(s);
	psync_collection_destroy(t);
	psync_collection_destroy(all);
	sdb_free(&db);
}

/* A refetch whose answer is another scope (or none) removes the member. */
static void
refetch_in_another_scope_leaves(void)
{
	sdb			db;
	psync_collection *s = NULL;
	psync_envelope notice;
	srow	   *r;

	sdb_init(&db);
	sdb_write(&db, "orders:1", "a", "acme", true);
	sdb_write(&db, "orders:2", "b", "acme", true);
	CHECK_EQ_INT(open_scope(&db, "acme", &s), PSYNC_OK);
	CHECK_EQ_INT(psync_collection_count(s), 2);
	CHECK(strcmp(db.last_table, "orders@acme") == 0);

	/* orders:1 moved to globex while the move's delete was lost ... */
	sdb_write(&db, "orders:1", "moved", "globex", true);
	/* ... and orders:2 was deleted, also unseen */
	pthread_mutex_lock(&db.lock);
	r = sdb_row(&db, "orders:2");
	r->seq++;
	r->present = false;
	pthread_mutex_unlock(&db.lock);
	/* a refetch stand-in in acme for each makes the collection ask */
	for (int i = 1; i <= 2; i++)
	{
		const char *k = i == 1 ? "orders:1" : "orders:2";

		notice = test_envelope(k, 5, "");
		notice.op = PSYNC_OP_REFETCH;
		notice.has_value = false;
		notice.value = NULL;
		notice.value_len = 0;
		notice.scope = "acme";
		notice.scope_len = 4;
		psync_transport_publish(db.t, &notice);
	}
	check_scope(s, &db, "acme");
	CHECK_EQ_INT(psync_collection_count(s), 0);
	CHECK_EQ_INT(db.refetches, 2);
	/* it comes back: an upsert in acme after the tombstone's sequence */
	sdb_write(&db, "orders:1", "back", "acme", false);
	check_scope(s, &db, "acme");
	CHECK_EQ_INT(psync_collection_count(s), 1);
	psync_collection_destroy(s);
	sdb_free(&db);
}

/* A page row of another scope is skipped and counted; a reload sweeps leavers. */
static void
pages_of_one_scope(void)
{
	sdb			db;
	psync_collection *s = NULL;
	psync_collection_counters cs;
	char		err[256];

	sdb_init(&db);
	sdb_write(&db, "orders:1", "a", "acme", true);
	sdb_write(&db, "orders:2", "b", "acme", true);
	db.stray_row = true;
	CHECK_EQ_INT(open_scope(&db, "acme", &s), PSYNC_OK);
	psync_collection_stats(s, &cs);
	CHECK_EQ_INT(cs.rows_skipped, 1);
	psync_collection_last_error(s, err, sizeof(err));
	CHECK(strstr(err, "another scope") != NULL);
	db.stray_row = false;
	check_scope(s, &db, "acme");
	/* moved away while messages were lost: the reload's sweep removes it */
	sdb_write(&db, "orders:2", "gone", "globex", true);
	psync_collection_resync(s);
	check_scope(s, &db, "acme");
	CHECK_EQ_INT(psync_collection_count(s), 1);
	psync_collection_destroy(s);
	/* a malformed scope is refused */
	CHECK_EQ_INT(open_scope(&db, "a.b", &s), PSYNC_ERR_INVALID_ARGUMENT);
	CHECK_EQ_INT(open_scope(&db, "", &s), PSYNC_ERR_INVALID_ARGUMENT);
	sdb_free(&db);
}


/* An envelope of key with scope (NULL: none) as the NATS backend hands it over. */
static void
deliver_on(sdb *db, const char *pattern, const char *key, uint64_t seq, const char *name,
		   psync_op op, const char *scope)
{
	psync_envelope env = test_envelope(key, seq, name);
	psync_event ev = {.kind = PSYNC_EVENT_ENVELOPE, .envelope = &env,
	.key = key, .key_len = strlen(key)};
	static const uint8_t nil = 0xc0;

	env.op = op;
	env.scope = scope;
	env.scope_len = scope ? strlen(scope) : 0;
	if (op == PSYNC_OP_DELETE)
	{
		env.value = &nil;
		env.value_len = 1;
	}
	transport_deliver(db->t, pattern, strlen(pattern), &ev);
}

/*
 * The NATS backend delivers what arrives on "<prefix>.orders.acme.>" to
 * the pattern "orders@acme:*" whatever the envelope's scope field says: a
 * row of another scope (or of none) must not join, nor change a member;
 * it is counted and said, and a member it names is read again.
 */
static void
scope_field_disagrees_with_subject(void)
{
	sdb			db;
	psync_collection *s = NULL;
	psync_collection_counters before,
				after;
	char		err[256];

	sdb_init(&db);
	sdb_write(&db, "orders:1", "a", "acme", true);
	sdb_write(&db, "orders:2", "g", "globex", true);
	CHECK_EQ_INT(open_scope(&db, "acme", &s), PSYNC_OK);
	check_scope(s, &db, "acme");
	psync_collection_stats(s, &before);
	/* another scope's row, a row with no scope, and a held row "moved" */
	deliver_on(&db, "orders@acme:*", "orders:2", 2, "intruder", PSYNC_OP_UPSERT, "globex");
	deliver_on(&db, "orders@acme:*", "orders:3", 1, "noscope", PSYNC_OP_UPSERT, NULL);
	deliver_on(&db, "orders@acme:*", "orders:1", 2, "hijack", PSYNC_OP_UPSERT, "globex");
	deliver_on(&db, "orders@acme:*", "orders:1", 2, "", PSYNC_OP_DELETE, "globex");
	check_scope(s, &db, "acme");
	CHECK(!psync_collection_get(s, "orders:2", NULL, NULL));
	CHECK(!psync_collection_get(s, "orders:3", NULL, NULL));
	CHECK(psync_collection_get(s, "orders:1", NULL, NULL));
	psync_collection_stats(s, &after);
	CHECK(after.parse_errors >= before.parse_errors + 4);
	psync_collection_last_error(s, err, sizeof(err));
	CHECK(strstr(err, "scope") != NULL);
	psync_collection_destroy(s);
	sdb_free(&db);
}

/* During the first load: envelopes of keys whose page is still to come. */
static void
moves_while_loading(sdb *db)
{
	/* orders:1 leaves acme and comes back; orders:2 enters (a newer row
	 * than its page will show: no, the page is read after, it shows it) */
	sdb_write(db, "orders:1", "away", "globex", false);
	sdb_write(db, "orders:1", "back", "acme", false);
	sdb_write(db, "orders:2", "in", "acme", false);
	sdb_write(db, "orders:3", "out", "globex", false);
	sdb_delete(db, "orders:4");
	/* and one of another scope on acme's subject, held like the rest */
	deliver_on(db, "orders@acme:*", "orders:5", 9, "intruder", PSYNC_OP_UPSERT, "globex");
}

static void
moves_during_the_load(void)
{
	sdb			db;
	psync_collection *s = NULL;

	sdb_init(&db);
	sdb_write(&db, "orders:1", "a", "acme", true);
	sdb_write(&db, "orders:2", "b", "globex", true);
	sdb_write(&db, "orders:3", "c", "acme", true);
	sdb_write(&db, "orders:4", "d", "acme", true);
	sdb_write(&db, "orders:5", "e", "globex", true);
	db.during_load = moves_while_loading;
	CHECK_EQ_INT(open_scope(&db, "acme", &s), PSYNC_OK);
	check_scope(s, &db, "acme");
	CHECK(!psync_collection_get(s, "orders:5", NULL, NULL));
	psync_collection_destroy(s);
	sdb_free(&db);
}

/*
 * A row refetch whose answer (the row in globex at n+2) races the row's
 * move back (its upsert at n+4 in acme, queued meanwhile): the member
 * leaves, then comes back with the queued upsert.
 */
static void
refetch_answer_races_a_move(void)
{
	sdb			db;
	psync_collection *s = NULL;

	sdb_init(&db);
	sdb_write(&db, "orders:1", "a", "acme", true);
	sdb_write(&db, "orders:2", "b", "acme", true);
	CHECK_EQ_INT(open_scope(&db, "acme", &s), PSYNC_OK);
	db.defer = true;
	/* orders:1 moves to globex unseen; a gap makes the collection ask */
	sdb_write(&db, "orders:1", "there", "globex", true);	/* seq 2, 3 */
	deliver_on(&db, "orders@acme:*", "orders:1", 3, "x", PSYNC_OP_REFETCH, "acme");
	CHECK_EQ_INT(db.ndeferred, 1);		/* answer: globex at 3 */
	/* it comes back (delete 4 in globex, upsert 5 in acme): queued */
	sdb_write(&db, "orders:1", "home", "acme", false);
	/* and orders:2 is refetched too, then the collection is updated in acme */
	deliver_on(&db, "orders@acme:*", "orders:2", 3, "x", PSYNC_OP_REFETCH, "acme");
	sdb_write(&db, "orders:2", "b2", "acme", false);	/* seq 2: stale once 2 is in */
	sdb_answer(&db);
	db.defer = false;
	check_scope(s, &db, "acme");
	CHECK_EQ_INT(psync_collection_count(s), 2);
	psync_collection_destroy(s);
	sdb_free(&db);
}

/* Destroy with row refetches in flight: their answers land after it. */
static void
destroy_with_refetches_in_flight(void)
{
	sdb			db;
	psync_collection *s = NULL;
	char		key[32];

	sdb_init(&db);
	for (int i = 0; i < 8; i++)
	{
		snprintf(key, sizeof(key), "orders:%d", i);
		sdb_write(&db, key, "a", i % 2 ? "acme" : "globex", true);
	}
	CHECK_EQ_INT(open_scope(&db, "acme", &s), PSYNC_OK);
	db.defer = true;
	for (int i = 0; i < 8; i++)
	{
		snprintf(key, sizeof(key), "orders:%d", i);
		sdb_write(&db, key, "moved", i % 2 ? "globex" : "acme", true);
		deliver_on(&db, "orders@acme:*", key, 9, "x", PSYNC_OP_REFETCH, "acme");
		deliver_on(&db, "orders@acme:*", key, 10, "y", PSYNC_OP_UPSERT, "acme");
	}
	CHECK_EQ_INT(db.ndeferred, 8);
	CHECK_EQ_INT(psync_collection_destroy(s), PSYNC_OK);
	sdb_answer(&db);			/* after destroy: nothing to touch, no leak */
	sdb_free(&db);
}

/* A reload (the table's event) while members are held, rows moving meanwhile. */
static void
moves_around_a_reload(sdb *db)
{
	sdb_write(db, "orders:2", "back", "acme", false);
	sdb_write(db, "orders:3", "away", "globex", false);
	sdb_write(db, "orders:6", "new", "acme", false);
}

static void
reload_while_members_held(void)
{
	sdb			db;
	psync_collection *s = NULL;
	psync_envelope event;
	char		key[32];

	sdb_init(&db);
	for (int i = 1; i <= 5; i++)
	{
		snprintf(key, sizeof(key), "orders:%d", i);
		sdb_write(&db, key, "a", "acme", true);
	}
	CHECK_EQ_INT(open_scope(&db, "acme", &s), PSYNC_OK);
	/* unseen: orders:1 and orders:2 leave, orders:4 changes */
	sdb_write(&db, "orders:1", "gone", "globex", true);
	sdb_write(&db, "orders:2", "gone", "globex", true);
	sdb_write(&db, "orders:4", "b", "acme", true);
	db.during_load = moves_around_a_reload;
	event = test_reload_event("orders", "2");
	CHECK_EQ_INT(psync_transport_publish(db.t, &event), PSYNC_OK);
	CHECK_EQ_INT(psync_collection_wait_idle(s, 5000), PSYNC_OK);
	CHECK(db.during_load == NULL);	/* the reload ran */
	check_scope(s, &db, "acme");
	CHECK_EQ_INT(psync_collection_count(s), 4);
	psync_collection_destroy(s);
	sdb_free(&db);
}

typedef struct rseen
{
	char		name[32];
	bool		has;
} rseen;

static void
replica_value(void *ctx, const void *value, const psync_replica_metadata *meta)
{
	rseen	   *r = ctx;

	(void) meta;
	r->has = value != NULL;
	snprintf(r->name, sizeof(r->name), "%s", value ? (const char *) value : "");
}

/* A replica of orders:1 reading the table, values by schema. */
static psync_status
open_replica(sdb *db, psync_schema schema, psync_replica **out)
{
	psync_replica_options o;

	psync_replica_options_init(&o);
	o.key = "orders:1";
	o.schema = schema;
	o.transport = db->t;
	o.refetch = sdb_refetch;
	o.refetch_ctx = db;
	o.initial_refetch = true;
	return psync_replica_new(&o, out);
}

/* A replica of one key follows its row through many moves, pairs reordered and repeated. */
static void
replica_follows_many_moves(void)
{
	sdb			db;
	psync_replica *r = NULL;
	psync_replica_metadata meta;
	rseen		seen;
	srow	   *row;

	sdb_init(&db);
	sdb_write(&db, "orders:1", "a", "acme", true);
	CHECK_EQ_INT(open_replica(&db, (psync_schema) {test_name_parse, test_free_value, NULL}, &r), PSYNC_OK);
	CHECK_EQ_INT(psync_replica_wait_idle(r, 5000), PSYNC_OK);
	for (int i = 0; i < 40; i++)
	{
		const char *to = i % 3 == 0 ? "acme" : i % 3 == 1 ? "globex" : "initech";
		char		name[16];

		snprintf(name, sizeof(name), "m%d", i);
		if (i % 5 == 4)
		{
			/* the move's pair delivered upsert first, each twice */
			uint64_t	n;

			pthread_mutex_lock(&db.lock);
			row = sdb_row(&db, "orders:1");
			n = row->seq;
			pthread_mutex_unlock(&db.lock);
			sdb_write(&db, "orders:1", name, strcmp(row->scope, to) ? to : "umbrella", true);
			deliver_on(&db, "orders:1", "orders:1", n + 2, name, PSYNC_OP_UPSERT, row->scope);
			deliver_on(&db, "orders:1", "orders:1", n + 1, "", PSYNC_OP_DELETE, "old");
			deliver_on(&db, "orders:1", "orders:1", n + 2, name, PSYNC_OP_UPSERT, row->scope);
			deliver_on(&db, "orders:1", "orders:1", n + 1, "", PSYNC_OP_DELETE, "old");
		}
		else
			sdb_write(&db, "orders:1", name, to, false);
		CHECK_EQ_INT(psync_replica_wait_idle(r, 5000), PSYNC_OK);
		psync_replica_get(r, replica_value, &seen);
		psync_replica_meta(r, &meta);
		row = sdb_row(&db, "orders:1");
		CHECK(seen.has && strcmp(seen.name, row->name) == 0);
		CHECK_EQ_INT(meta.sequence, (int64_t) row->seq);
	}
	sdb_delete(&db, "orders:1");
	psync_replica_meta(r, &meta);
	CHECK_EQ_INT(meta.sequence, (int64_t) sdb_row(&db, "orders:1")->seq);
	psync_replica_destroy(r);
	sdb_free(&db);
}

/* A parser that counts the envelopes it is shown without their scope. */
static bool
scope_seen_parse(void *ctx, const uint8_t *mp, size_t len, const psync_envelope *env,
				 void *recycled, void **out, const char **error)
{
	int		   *unscoped = ctx;

	if (env->scope == NULL)
		(*unscoped)++;
	return test_name_parse(NULL, mp, len, env, recycled, out, error);
}

/*
 * The parse gate is shown "the whole envelope" (para_sync/client.h): an
 * envelope kept during a refetch and replayed after it is still the one
 * that arrived, its scope included, for a replica as for a collection.
 */
static void
replayed_envelopes_keep_their_scope(void)
{
	sdb			db;
	psync_replica *r = NULL;
	psync_collection *s = NULL;
	psync_replica_metadata meta;
	int			unscoped_r = 0,
				unscoped_c = 0;

	sdb_init(&db);
	sdb_write(&db, "orders:1", "a", "acme", true);
	CHECK_EQ_INT(open_replica(&db, (psync_schema) {scope_seen_parse, test_free_value, &unscoped_r}, &r), PSYNC_OK);
	CHECK_EQ_INT(psync_replica_wait_idle(r, 5000), PSYNC_OK);
	CHECK_EQ_INT(open_scope_with(&db, "acme", (psync_schema) {scope_seen_parse, test_free_value, &unscoped_c}, &s),
				 PSYNC_OK);
	/* a gap on both makes them refetch; meanwhile the row changes twice */
	db.defer = true;
	sdb_write(&db, "orders:1", "b", "acme", true);	/* 2, unseen */
	sdb_write(&db, "orders:1", "c", "acme", false);	/* 3: a gap */
	CHECK_EQ_INT(db.ndeferred, 2);
	sdb_write(&db, "orders:1", "d", "acme", false);	/* 4: kept */
	sdb_write(&db, "orders:1", "e", "acme", false);	/* 5: kept */
	sdb_answer(&db);			/* snapshots at 3; then 4 and 5 replayed */
	db.defer = false;
	CHECK_EQ_INT(psync_replica_wait_idle(r, 5000), PSYNC_OK);
	psync_replica_meta(r, &meta);
	CHECK_EQ_INT(meta.sequence, 5);
	check_scope(s, &db, "acme");
	CHECK_EQ_INT(unscoped_r, 0);
	CHECK_EQ_INT(unscoped_c, 0);
	psync_collection_destroy(s);
	psync_replica_destroy(r);
	sdb_free(&db);
}

/*
 * Envelopes that arrive before the page holding their key, the page read
 * from an older snapshot than they (it still shows the row where it was)
 * or a newer one; and a delete in acme of a key the collection never
 * held.  The table is set to what the envelopes say after the load.
 */
static void
entering_before_the_page(sdb *db)
{
	/* orders:1: in globex at 1 in the page; entered acme at 3 meanwhile */
	deliver_on(db, "orders@acme:*", "orders:1", 3, "in", PSYNC_OP_UPSERT, "acme");
	/* orders:2: in acme at 1 in the page; left at 2, came back at 4 */
	deliver_on(db, "orders@acme:*", "orders:2", 4, "back", PSYNC_OP_UPSERT, "acme");
	deliver_on(db, "orders@acme:*", "orders:2", 2, "", PSYNC_OP_DELETE, "acme");
	/* orders:3: entered acme at 3; the page (newer) shows it at 5 */
	deliver_on(db, "orders@acme:*", "orders:3", 3, "old", PSYNC_OP_UPSERT, "acme");
	pthread_mutex_lock(&db->lock);
	db->rows[2].seq = 5;
	snprintf(db->rows[2].name, sizeof(db->rows[2].name), "newer");
	snprintf(db->rows[2].scope, sizeof(db->rows[2].scope), "acme");
	pthread_mutex_unlock(&db->lock);
	/* orders:4: never in acme; a delete there (out of order, say) */
	deliver_on(db, "orders@acme:*", "orders:4", 7, "", PSYNC_OP_DELETE, "acme");
}

static void
envelopes_before_their_page(void)
{
	sdb			db;
	psync_collection *s = NULL;
	psync_collection_counters cs;

	sdb_init(&db);
	sdb_write(&db, "orders:1", "a", "globex", true);
	sdb_write(&db, "orders:2", "b", "acme", true);
	sdb_write(&db, "orders:3", "c", "globex", true);
	sdb_write(&db, "orders:4", "d", "globex", true);
	db.during_load = entering_before_the_page;
	CHECK_EQ_INT(open_scope(&db, "acme", &s), PSYNC_OK);
	/* what the envelopes said is the table now */
	pthread_mutex_lock(&db.lock);
	db.rows[0].seq = 3;
	snprintf(db.rows[0].name, sizeof(db.rows[0].name), "in");
	snprintf(db.rows[0].scope, sizeof(db.rows[0].scope), "acme");
	db.rows[1].seq = 4;
	snprintf(db.rows[1].name, sizeof(db.rows[1].name), "back");
	pthread_mutex_unlock(&db.lock);
	check_scope(s, &db, "acme");
	CHECK_EQ_INT(psync_collection_count(s), 3);
	CHECK(!psync_collection_get(s, "orders:4", NULL, NULL));
	CHECK_EQ_INT(db.refetches, 0);
	psync_collection_stats(s, &cs);
	CHECK_EQ_INT(cs.gaps, 0);
	psync_collection_destroy(s);
	sdb_free(&db);
}

/*
 * A row enters acme and leaves it again (upsert 3, delete 4 there) and
 * the two arrive the other way round, or repeated: the delete is the
 * first thing the collection learns of the key — a baseline, as for a
 * replica (Client reconciliation rule 2) — so the older upsert after it
 * is stale, not a row entering the scope.
 */
static void
enter_and_leave_out_of_order(void)
{
	sdb			db;
	psync_collection *s = NULL;

	sdb_init(&db);
	sdb_write(&db, "orders:1", "a", "acme", true);
	sdb_write(&db, "orders:9", "g", "globex", true);
	CHECK_EQ_INT(open_scope(&db, "acme", &s), PSYNC_OK);
	sdb_write(&db, "orders:9", "in", "acme", true);	/* 2, 3 */
	sdb_write(&db, "orders:9", "out", "globex", true);	/* 4, 5 */
	deliver_on(&db, "orders@acme:*", "orders:9", 4, "", PSYNC_OP_DELETE, "acme");
	deliver_on(&db, "orders@acme:*", "orders:9", 3, "in", PSYNC_OP_UPSERT, "acme");
	deliver_on(&db, "orders@acme:*", "orders:9", 3, "in", PSYNC_OP_UPSERT, "acme");
	check_scope(s, &db, "acme");
	CHECK(!psync_collection_get(s, "orders:9", NULL, NULL));
	/* it comes back later: an upsert after the delete joins at once */
	sdb_write(&db, "orders:9", "home", "acme", false);	/* 6, 7 */
	check_scope(s, &db, "acme");
	CHECK(psync_collection_get(s, "orders:9", NULL, NULL));
	psync_collection_destroy(s);
	sdb_free(&db);
}

int
main(void)
{
	RUN(scope_grammar);
	RUN(scope_round_trip);
	RUN(scope_field_checked);
	RUN(older_programs);
	RUN(scope_patterns);
	RUN(moves_keep_three_collections_exact);
	RUN(refetch_in_another_scope_leaves);
	RUN(pages_of_one_scope);
	RUN(scope_field_disagrees_with_subject);
	RUN(moves_during_the_load);
	RUN(refetch_answer_races_a_move);
	RUN(destroy_with_refetches_in_flight);
	RUN(reload_while_members_held);
	RUN(replica_follows_many_moves);
	RUN(replayed_envelopes_keep_their_scope);
	RUN(envelopes_before_their_page);
	RUN(enter_and_leave_out_of_order);
	return harness_finish();
}
