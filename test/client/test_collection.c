/*
 * test_collection.c — psync_collection against an in-memory "table": the
 * loader pages it in key order, a refetch function reads one row, and the
 * test changes rows (publishing envelopes on an in-process transport, or
 * silently, as lost messages) before, during and after the load.
 */
#include <pthread.h>

#include "harness.h"
#include "transport_internal.h"

#define MAX_ROWS 256

typedef struct row
{
	char		key[32];
	uint64_t	seq;
	char		name[32];
	bool		present;
} row;

/* The fake database; the loader and refetch read it. */
typedef struct fake_db
{
	pthread_mutex_t lock;
	row			rows[MAX_ROWS];
	int			nrows;
	int			pages;
	int			refetches;
	bool		fail_load;
	const char *schema_version; /* of snapshot rows; NULL: "1" */
	/* called by the loader after each page, unlocked (to race with it) */
	void		(*after_page) (struct fake_db *db, int page);
	psync_transport *t;
} fake_db;

static row *
db_row(fake_db *db, const char *key)
{
	for (int i = 0; i < db->nrows; i++)
		if (strcmp(db->rows[i].key, key) == 0)
			return &db->rows[i];
	if (db->nrows == MAX_ROWS)
		return NULL;
	memset(&db->rows[db->nrows], 0, sizeof(row));
	snprintf(db->rows[db->nrows].key, sizeof(db->rows[0].key), "%s", key);
	return &db->rows[db->nrows++];
}

/* A committed change: the row's next sequence, published unless silent. */
static void
db_write(fake_db *db, const char *key, const char *name, bool silent)
{
	row		   *r;
	psync_envelope env;

	pthread_mutex_lock(&db->lock);
	r = db_row(db, key);
	r->seq++;
	r->present = name != NULL;
	snprintf(r->name, sizeof(r->name), "%s", name ? name : "");
	env = test_envelope(key, r->seq, name ? name : "");
	if (name == NULL)
	{
		/* as the server sends it: value nil (and, every other time, absent) */
		static const uint8_t nil = 0xc0;

		env.has_value = r->seq % 2 == 0;
		env.value = env.has_value ? &nil : NULL;
		env.value_len = env.has_value ? 1 : 0;
		env.op = PSYNC_OP_DELETE;
	}
	pthread_mutex_unlock(&db->lock);
	if (!silent)
		psync_transport_publish(db->t, &env);
}

static void
emit_snapshot(const fake_db *db, const row *r, psync_page_row_fn fn, void *ctx)
{
	psync_envelope env = test_envelope(r->key, r->seq, r->name);
	test_buf	b;

	if (db->schema_version != NULL)
	{
		env.schema_version = db->schema_version;
		env.schema_version_len = strlen(db->schema_version);
	}
	env.op = PSYNC_OP_SNAPSHOT;
	env.has_txid = false;
	b = test_encode(&env);
	fn(ctx, b.data, b.len);
	free(b.data);
}

static psync_status
fake_load(void *ctx, const char *table, const char *after, int max_rows,
		  psync_page_row_fn fn, void *fn_ctx, char *error, size_t error_size)
{
	fake_db    *db = ctx;
	int			sent = 0;
	int			page;

	(void) table;
	pthread_mutex_lock(&db->lock);
	if (db->fail_load)
	{
		pthread_mutex_unlock(&db->lock);
		snprintf(error, error_size, "the fake database is down");
		return PSYNC_ERR_DATABASE;
	}
	page = db->pages++;
	/* rows > after in byte order, smallest first */
	while (sent < max_rows)
	{
		const row  *best = NULL;

		for (int i = 0; i < db->nrows; i++)
		{
			const row  *r = &db->rows[i];

			if (!r->present || (after != NULL && strcmp(r->key, after) <= 0))
				continue;
			if (best == NULL || strcmp(r->key, best->key) < 0)
				best = r;
		}
		if (best == NULL)
			break;
		emit_snapshot(db, best, fn, fn_ctx);
		after = best->key;
		sent++;
	}
	pthread_mutex_unlock(&db->lock);
	if (db->after_page != NULL)
		db->after_page(db, page);
	return PSYNC_OK;
}

static void
fake_refetch(void *ctx, const char *key, psync_refetch_request *req)
{
	fake_db    *db = ctx;
	row		   *r;
	psync_envelope env;
	test_buf	b;

	pthread_mutex_lock(&db->lock);
	db->refetches++;
	r = db_row(db, key);
	env = test_envelope(key, r->seq, r->name);
	env.op = PSYNC_OP_SNAPSHOT;
	env.has_txid = false;
	if (!r->present)
	{
		static const uint8_t nil = 0xc0;

		env.value = &nil;		/* as snapshot() sends a missing row */
		env.value_len = 1;
	}
	b = test_encode(&env);
	pthread_mutex_unlock(&db->lock);
	psync_refetch_complete(req, b.data, b.len);		/* at once, on this thread */
	free(b.data);
}

/* Values: the "name" of the row, as a malloc'd string. */
static bool
name_parse(void *ctx, const uint8_t *mp, size_t len, const psync_envelope *env,
		   void *recycled, void **out, const char **error)
{
	char		name[32];

	(void) ctx;
	(void) env;
	(void) recycled;
	(void) error;
	test_value_name(mp, len, name, sizeof(name));
	*out = strdup(name);
	return *out != NULL;
}

typedef struct events
{
	int			added;
	int			updated;
	int			removed;
} events;

static void
count_change(void *ctx, psync_collection *c, psync_member_change change,
			 const char *key, size_t key_len, const void *value, int64_t seq)
{
	events	   *e = ctx;

	(void) c;
	(void) key;
	(void) key_len;
	(void) value;
	(void) seq;
	if (change == PSYNC_MEMBER_ADDED)
		e->added++;
	else if (change == PSYNC_MEMBER_UPDATED)
		e->updated++;
	else
		e->removed++;
}

static void
db_init(fake_db *db, int n)
{
	memset(db, 0, sizeof(*db));
	pthread_mutex_init(&db->lock, NULL);
	CHECK_EQ_INT(psync_inprocess_transport_new(&db->t), PSYNC_OK);
	for (int i = 1; i <= n; i++)
	{
		char		key[32];

		snprintf(key, sizeof(key), "users:%d", i);
		db_write(db, key, "v", true);
	}
}

static psync_status
open_collection(fake_db *db, events *e, int page_size, bool row_refetch,
				psync_collection **out)
{
	psync_collection_options o;

	psync_collection_options_init(&o);
	o.table = "users";
	o.schema = (psync_schema) {name_parse, test_free_value, NULL};
	o.transport = db->t;
	o.load_page = fake_load;
	o.load_ctx = db;
	if (row_refetch)
	{
		o.refetch = fake_refetch;
		o.refetch_ctx = db;
	}
	o.on_change = count_change;
	o.on_change_ctx = e;
	o.page_size = page_size;
	return psync_collection_new(&o, out);
}

/* Every present row is a member with its sequence and name; no other. */
typedef struct match
{
	fake_db    *db;
	int			seen;
	int			wrong;
} match;

static void
check_member(void *ctx, const char *key, size_t key_len, const void *value, int64_t seq)
{
	match	   *m = ctx;
	row		   *r = NULL;

	for (int i = 0; i < m->db->nrows; i++)
		if (strlen(m->db->rows[i].key) == key_len &&
			memcmp(m->db->rows[i].key, key, key_len) == 0)
			r = &m->db->rows[i];
	m->seen++;
	if (r == NULL || !r->present || (uint64_t) seq != r->seq ||
		strcmp((const char *) value, r->name) != 0)
	{
		fprintf(stderr, "  member %.*s seq=%lld value=%s vs db %s\n", (int) key_len, key,
				(long long) seq, (const char *) value,
				r ? (r->present ? r->name : "(deleted)") : "(none)");
		m->wrong++;
	}
}

static void
check_equals_db(psync_collection *c, fake_db *db)
{
	match		m = {db, 0, 0};
	int			present = 0;

	for (int i = 0; i < db->nrows; i++)
		present += db->rows[i].present;
	psync_collection_foreach(c, check_member, &m);
	CHECK_EQ_INT(m.wrong, 0);
	CHECK_EQ_INT(m.seen, present);
	CHECK_EQ_INT(psync_collection_count(c), present);
}

static void
db_done(fake_db *db)
{
	psync_transport_destroy(db->t);
	pthread_mutex_destroy(&db->lock);
}

/* ---- cases ---- */

static void
loads_every_page(void)
{
	fake_db		db;
	events		e = {0};
	psync_collection *c;
	psync_collection_counters st;

	db_init(&db, 25);
	CHECK_EQ_INT(open_collection(&db, &e, 10, true, &c), PSYNC_OK);
	CHECK_EQ_INT(db.pages, 3);
	CHECK_EQ_INT(e.added, 25);
	check_equals_db(c, &db);
	CHECK(psync_collection_get(c, "users:7", NULL, NULL));
	CHECK(!psync_collection_get(c, "users:99", NULL, NULL));
	psync_collection_stats(c, &st);
	CHECK_EQ_INT(st.loads, 1);
	CHECK_EQ_INT(st.rows_loaded, 25);
	CHECK_EQ_INT(psync_collection_destroy(c), PSYNC_OK);
	CHECK_EQ_INT(psync_transport_key_count(db.t), 0);
	db_done(&db);
}

/* Exactly one page boundary case: a table of page_size rows, and empty. */
static void
page_boundaries(void)
{
	fake_db		db;
	events		e = {0};
	psync_collection *c;

	db_init(&db, 10);
	CHECK_EQ_INT(open_collection(&db, &e, 10, true, &c), PSYNC_OK);
	CHECK_EQ_INT(db.pages, 2);	/* a full page, then an empty one */
	check_equals_db(c, &db);
	psync_collection_destroy(c);
	db_done(&db);

	db_init(&db, 0);
	CHECK_EQ_INT(open_collection(&db, &e, 10, true, &c), PSYNC_OK);
	CHECK_EQ_INT(psync_collection_count(c), 0);
	db_write(&db, "users:1", "late", false);	/* rows that appear later join */
	CHECK_EQ_INT(psync_collection_count(c), 1);
	check_equals_db(c, &db);
	psync_collection_destroy(c);
	db_done(&db);
}

/* Changes while pages load: before and after each row's page. */
static void
race_pages(fake_db *db, int page)
{
	if (page == 0)
	{
		db_write(db, "users:1", "updated after its page", false);	/* loaded */
		db_write(db, "users:30", "updated before its page", false);	/* not yet */
		db_write(db, "users:10", NULL, false);	/* deleted after its page */
		db_write(db, "users:4", NULL, false);	/* deleted before its page */
		db_write(db, "users:100", "inserted in a loaded range", false);
		db_write(db, "users:99", "inserted ahead", false);
		db_write(db, "users:11", "twice", false);
		db_write(db, "users:11", "twice again", false);
	}
	else if (page == 1)
	{
		db_write(db, "users:12", "one", true);	/* lost... */
		db_write(db, "users:12", "two", false);	/* ...so a gap: row refetch */
		db_write(db, "users:4", "re-inserted", false);
	}
}

static void
changes_during_the_load(void)
{
	fake_db		db;
	events		e = {0};
	psync_collection *c;
	psync_collection_counters st;

	db_init(&db, 40);
	db.after_page = race_pages;
	CHECK_EQ_INT(open_collection(&db, &e, 8, true, &c), PSYNC_OK);
	db.after_page = NULL;
	CHECK_EQ_INT(psync_collection_wait_idle(c, 5000), PSYNC_OK);
	check_equals_db(c, &db);
	CHECK(!psync_collection_get(c, "users:10", NULL, NULL));
	CHECK(psync_collection_get(c, "users:100", NULL, NULL));
	psync_collection_stats(c, &st);
	CHECK_EQ_INT(st.loads, 1);
	CHECK_EQ_INT(st.row_refetches, 1);	/* users:12 only */
	CHECK_EQ_INT(db.refetches, 1);
	psync_collection_destroy(c);
	db_done(&db);
}

static void
live_rules(void)
{
	fake_db		db;
	events		e = {0};
	psync_collection *c;
	psync_collection_counters st;
	psync_envelope env;

	db_init(&db, 5);
	CHECK_EQ_INT(open_collection(&db, &e, 100, true, &c), PSYNC_OK);
	db_write(&db, "users:2", "next", false);
	CHECK_EQ_INT(e.updated, 1);
	/* a duplicate of an older envelope: ignored */
	env = test_envelope("users:2", 1, "old");
	psync_transport_publish(db.t, &env);
	/* a gap on one row refetches that row only */
	db_write(&db, "users:3", "lost", true);
	db_write(&db, "users:3", "after the loss", false);
	db_write(&db, "users:5", NULL, false);
	CHECK_EQ_INT(e.removed, 1);
	/* a deleted row does not come back with an old envelope */
	env = test_envelope("users:5", 1, "zombie");
	psync_transport_publish(db.t, &env);
	db_write(&db, "users:6", "new", false);
	CHECK_EQ_INT(psync_collection_wait_idle(c, 5000), PSYNC_OK);
	check_equals_db(c, &db);
	psync_collection_stats(c, &st);
	CHECK_EQ_INT(st.gaps, 1);
	CHECK_EQ_INT(st.row_refetches, 1);
	CHECK_EQ_INT(st.loads, 1);
	CHECK_EQ_INT(st.ignored_stale, 2);
	psync_collection_destroy(c);
	db_done(&db);
}

/* Without a row refetch function a gap reloads the table. */
static void
gap_without_refetch_reloads(void)
{
	fake_db		db;
	events		e = {0};
	psync_collection *c;
	psync_collection_counters st;

	db_init(&db, 5);
	CHECK_EQ_INT(open_collection(&db, &e, 100, false, &c), PSYNC_OK);
	db_write(&db, "users:3", "lost", true);
	db_write(&db, "users:3", "after the loss", false);
	CHECK_EQ_INT(psync_collection_wait_idle(c, 5000), PSYNC_OK);
	check_equals_db(c, &db);
	psync_collection_stats(c, &st);
	CHECK_EQ_INT(st.loads, 2);
	psync_collection_destroy(c);
	db_done(&db);
}

/* LOST: reload without dropping; silent changes are picked up. */
static void
lost_resynchronises(void)
{
	fake_db		db;
	events		e = {0};
	psync_collection *c;
	psync_collection_counters st;
	psync_event lost = {.kind = PSYNC_EVENT_LOST};

	db_init(&db, 30);
	CHECK_EQ_INT(open_collection(&db, &e, 7, true, &c), PSYNC_OK);
	db_write(&db, "users:3", NULL, true);	/* messages lost */
	db_write(&db, "users:4", "silently changed", true);
	db_write(&db, "users:31", "silently added", true);
	e.added = e.removed = e.updated = 0;
	transport_deliver_all(db.t, &lost);
	CHECK_EQ_INT(psync_collection_wait_idle(c, 5000), PSYNC_OK);
	check_equals_db(c, &db);
	CHECK_EQ_INT(e.removed, 1);
	CHECK_EQ_INT(e.updated, 1);
	CHECK_EQ_INT(e.added, 1);
	psync_collection_stats(c, &st);
	CHECK_EQ_INT(st.loads, 2);
	/* and it is live again */
	db_write(&db, "users:5", "after", false);
	check_equals_db(c, &db);
	psync_collection_destroy(c);
	db_done(&db);
}

/*
 * Column DDL: every row's snapshot changed at its own sequence, under a new
 * schema_version, and only the table's reload event says so.
 */
static void
table_reload_rewrites_rows_at_their_sequence(void)
{
	fake_db		db;
	events		e = {0};
	psync_collection *c;
	psync_collection_counters st;
	psync_event lost = {.kind = PSYNC_EVENT_LOST};
	psync_envelope ev = test_envelope("users", 1, "");

	db_init(&db, 10);
	CHECK_EQ_INT(open_collection(&db, &e, 4, true, &c), PSYNC_OK);
	pthread_mutex_lock(&db.lock);
	for (int i = 0; i < db.nrows; i++)
		snprintf(db.rows[i].name, sizeof(db.rows[i].name), "rewritten");
	db.schema_version = "1+1";
	pthread_mutex_unlock(&db.lock);
	e.added = e.removed = e.updated = 0;
	ev.op = PSYNC_OP_RELOAD;
	ev.has_value = false;
	ev.schema_version = "1+1";
	ev.schema_version_len = 3;
	CHECK_EQ_INT(psync_transport_publish(db.t, &ev), PSYNC_OK);
	CHECK_EQ_INT(psync_collection_wait_idle(c, 5000), PSYNC_OK);
	check_equals_db(c, &db);
	CHECK_EQ_INT(e.updated, 10);
	psync_collection_stats(c, &st);
	CHECK_EQ_INT(st.loads, 2);
	/* a resend of the event is not acted on; a reload under the same version changes nothing */
	CHECK_EQ_INT(psync_transport_publish(db.t, &ev), PSYNC_OK);
	transport_deliver_all(db.t, &lost);
	CHECK_EQ_INT(psync_collection_wait_idle(c, 5000), PSYNC_OK);
	psync_collection_stats(c, &st);
	CHECK_EQ_INT(st.loads, 3);
	CHECK_EQ_INT(e.updated, 10);
	/* a client that missed the event converges on its next reload (LOST) */
	pthread_mutex_lock(&db.lock);
	snprintf(db.rows[0].name, sizeof(db.rows[0].name), "again");
	db.schema_version = "1+2";
	pthread_mutex_unlock(&db.lock);
	transport_deliver_all(db.t, &lost);
	CHECK_EQ_INT(psync_collection_wait_idle(c, 5000), PSYNC_OK);
	check_equals_db(c, &db);
	CHECK_EQ_INT(e.updated, 20);
	psync_collection_destroy(c);
	db_done(&db);
}

static void
failed_initial_load(void)
{
	fake_db		db;
	events		e = {0};
	psync_collection *c = (psync_collection *) &db;
	char		buf[256];

	db_init(&db, 3);
	db.fail_load = true;
	CHECK_EQ_INT(open_collection(&db, &e, 10, true, &c), PSYNC_ERR_DATABASE);
	CHECK(c == NULL);
	psync_last_error(buf, sizeof(buf));
	CHECK(strcmp(buf, "load failed: the fake database is down") == 0);
	CHECK_EQ_INT(psync_transport_key_count(db.t), 0);
	db_done(&db);
}

/* ---- callbacks must not destroy or wait ---- */

typedef struct rude
{
	psync_status destroy_rc;
	psync_status wait_rc;
	int			calls;
} rude;

static void
rude_change(void *ctx, psync_collection *c, psync_member_change change,
			const char *key, size_t key_len, const void *value, int64_t seq)
{
	rude	   *r = ctx;

	(void) change;
	(void) key;
	(void) key_len;
	(void) value;
	(void) seq;
	r->calls++;
	r->destroy_rc = psync_collection_destroy(c);
	r->wait_rc = psync_collection_wait_idle(c, -1);
	CHECK(psync_collection_count(c) > 0);	/* reading is fine */
}

static void
destroy_from_callback_is_refused(void)
{
	fake_db		db;
	psync_collection *c;
	psync_collection_options o;
	rude		r = {0};

	db_init(&db, 3);
	psync_collection_options_init(&o);
	o.table = "users";
	o.schema = (psync_schema) {name_parse, test_free_value, NULL};
	o.transport = db.t;
	o.load_page = fake_load;
	o.load_ctx = &db;
	o.on_change = rude_change;
	o.on_change_ctx = &r;
	CHECK_EQ_INT(psync_collection_new(&o, &c), PSYNC_OK);
	db_write(&db, "users:1", "x", false);
	CHECK_EQ_INT(r.calls, 4);
	CHECK_EQ_INT(r.destroy_rc, PSYNC_ERR_IN_CALLBACK);
	CHECK_EQ_INT(r.wait_rc, PSYNC_ERR_IN_CALLBACK);
	check_equals_db(c, &db);
	CHECK_EQ_INT(psync_collection_destroy(c), PSYNC_OK);
	db_done(&db);
}

static void
invalid_options(void)
{
	psync_collection_options o;
	psync_collection *c = NULL;

	psync_collection_options_init(&o);
	CHECK_EQ_INT(psync_collection_new(&o, &c), PSYNC_ERR_INVALID_ARGUMENT);
	o.table = "users:*";
	CHECK_EQ_INT(psync_collection_new(&o, &c), PSYNC_ERR_INVALID_ARGUMENT);
	CHECK_EQ_INT(psync_collection_new(NULL, &c), PSYNC_ERR_INVALID_ARGUMENT);
	CHECK_EQ_INT(psync_collection_destroy(NULL), PSYNC_ERR_INVALID_ARGUMENT);
	CHECK(c == NULL);
}

int
main(void)
{
	RUN(loads_every_page);
	RUN(page_boundaries);
	RUN(changes_during_the_load);
	RUN(live_rules);
	RUN(gap_without_refetch_reloads);
	RUN(lost_resynchronises);
	RUN(table_reload_rewrites_rows_at_their_sequence);
	RUN(failed_initial_load);
	RUN(destroy_from_callback_is_refused);
	RUN(invalid_options);
	return harness_finish();
}
