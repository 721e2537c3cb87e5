/*
 * test_collection.c — psync_collection against an in-memory "table": the
 * loader pages it in key order, a refetch function reads one row, and the
 * test changes rows (publishing envelopes on an in-process transport, or
 * silently, as lost messages) before, during and after the load.
 */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

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
	int			fail_pages;		/* this many pages fail, then they load */
	int			fail_refetches; /* this many refetches fail, then they work */
	bool		stuck;			/* every page is the first one again */
	bool		pk_order;		/* pages by the number in the key, as a server does an int key */
	bool		hang;			/* a page blocks until cancelled (or 20 s) */
	bool		hanging;
	bool		cancelled;
	bool		hang_timed_out;
	pthread_cond_t cond;
	const char *layout;			/* what load_layout reports */
	const char *schema_version; /* of snapshot rows; NULL: "1" */
	/* called by the loader after each page, unlocked (to race with it) */
	void		(*after_page) (struct fake_db *db, int page);
	psync_transport *t;
	psync_collection *coll;		/* for after_page */
	psync_status loader_rc;		/* what after_page saw */
	int			seen;			/* what after_page saw */
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

/* The fake server's page order: byte order, or the number after "users:". */
static int
key_order(const fake_db *db, const char *a, const char *b)
{
	if (db->pk_order)
	{
		long		x = atol(strchr(a, ':') + 1);
		long		y = atol(strchr(b, ':') + 1);

		return (x > y) - (x < y);
	}
	return strcmp(a, b);
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
	if (db->fail_load || db->fail_pages > 0)
	{
		if (db->fail_pages > 0)
			db->fail_pages--;
		pthread_mutex_unlock(&db->lock);
		snprintf(error, error_size, "the fake database is down");
		return PSYNC_ERR_DATABASE;
	}
	if (db->hang)
	{
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 20;		/* far beyond what a cancel needs */
		db->hanging = true;
		pthread_cond_broadcast(&db->cond);
		while (!db->cancelled && !db->hang_timed_out)
			db->hang_timed_out =
				pthread_cond_timedwait(&db->cond, &db->lock, &until) != 0;
		db->hanging = false;
		pthread_mutex_unlock(&db->lock);
		snprintf(error, error_size, "canceling statement due to user request");
		return PSYNC_ERR_DATABASE;
	}
	if (db->stuck)
		after = NULL;
	page = db->pages++;
	/* rows > after in byte order (or primary-key order), smallest first */
	while (sent < max_rows)
	{
		const row  *best = NULL;

		for (int i = 0; i < db->nrows; i++)
		{
			const row  *r = &db->rows[i];

			if (!r->present || (after != NULL && key_order(db, r->key, after) <= 0))
				continue;
			if (best == NULL || key_order(db, r->key, best->key) < 0)
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
	if (db->fail_refetches > 0)
	{
		db->fail_refetches--;
		pthread_mutex_unlock(&db->lock);
		psync_refetch_fail(req, "the fake database is down");
		return;
	}
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
	pthread_cond_init(&db->cond, NULL);
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
	o.schema = (psync_schema) {test_name_parse, test_free_value, NULL};
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
	pthread_cond_destroy(&db->cond);
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

/*
 * Pages in primary-key order (users:9 before users:10, as snapshot_page()
 * serves an int key): changes to rows of a page already read but not yet
 * applied, whose keys sort before every key paged in so far as bytes.
 */
static void
race_pk_pages(fake_db *db, int page)
{
	if (page != 1)
		return;
	/* page 1 (users:11 .. users:20) is read, not applied yet */
	db_write(db, "users:15", NULL, false);	/* deleted: must not come back */
	db_write(db, "users:16", "updated", false);
	db_write(db, "users:3", "updated after its page", false);
	db_write(db, "users:26", "inserted ahead", false);
	db_write(db, "users:7", NULL, false);	/* deleted after its page */
}

static void
pages_in_primary_key_order(void)
{
	fake_db		db;
	events		e = {0};
	psync_collection *c;

	db_init(&db, 25);
	db.pk_order = true;
	db.after_page = race_pk_pages;
	CHECK_EQ_INT(open_collection(&db, &e, 10, true, &c), PSYNC_OK);
	db.after_page = NULL;
	CHECK_EQ_INT(psync_collection_wait_idle(c, 5000), PSYNC_OK);
	CHECK_EQ_INT(db.pages, 3);	/* 1..10, 11..20, 21..26 */
	check_equals_db(c, &db);
	CHECK(!psync_collection_get(c, "users:15", NULL, NULL));
	CHECK(!psync_collection_get(c, "users:7", NULL, NULL));
	CHECK(psync_collection_get(c, "users:26", NULL, NULL));
	psync_collection_destroy(c);
	db_done(&db);
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
	o.schema = (psync_schema) {test_name_parse, test_free_value, NULL};
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

/* ---- round 3: reloads, retries, memory, layout, bad rows ---- */

static void
destroy_in_loader(fake_db *db, int page)
{
	(void) page;
	if (db->coll != NULL)
		db->loader_rc = psync_collection_destroy(db->coll);
}

/* The page loader must not destroy its collection (it runs inside it). */
static void
destroy_from_loader_is_refused(void)
{
	fake_db		db;
	events		e = {0};
	psync_collection *c;

	db_init(&db, 5);
	CHECK_EQ_INT(open_collection(&db, &e, 10, true, &c), PSYNC_OK);
	db.loader_rc = PSYNC_OK;
	db.coll = c;
	db.after_page = destroy_in_loader;
	psync_collection_resync(c);
	CHECK_EQ_INT(psync_collection_wait_idle(c, 5000), PSYNC_OK);
	db.after_page = NULL;
	CHECK_EQ_INT(db.loader_rc, PSYNC_ERR_IN_CALLBACK);
	check_equals_db(c, &db);
	CHECK_EQ_INT(psync_collection_destroy(c), PSYNC_OK);
	db_done(&db);
}

typedef struct states
{
	psync_collection_state seen[16];
	int			n;
} states;

static void
record_state(void *ctx, psync_collection *c, psync_collection_state state)
{
	states	   *s = ctx;

	(void) c;
	if (s->n < 16)
		s->seen[s->n++] = state;
}

/* During a reload: rows are written; each change must be visible at once. */
static void
write_during_reload(fake_db *db, int page)
{
	char		name[32];

	if (page != db->pages - 1 || db->coll == NULL)
		return;
	snprintf(name, sizeof(name), "reload page %d", page);
	/* users:1 was paged in already, users:9 (key order) not yet */
	db_write(db, "users:1", name, false);
	db_write(db, "users:9", name, false);
	if (psync_collection_get_state(db->coll) != PSYNC_COLLECTION_RELOADING)
		return;
	/* both are held rows: the envelopes applied at once */
	{
		match		m = {db, 0, 0};

		psync_collection_get(db->coll, "users:1", check_member, &m);
		psync_collection_get(db->coll, "users:9", check_member, &m);
		if (m.seen == 2 && m.wrong == 0)
			db->seen++;
	}
}

static void
rows_stay_live_during_a_reload(void)
{
	fake_db		db;
	events		e = {0};
	states		s = {0};
	psync_collection *c;
	psync_collection_options o;
	psync_collection_counters st;
	int			pages;

	db_init(&db, 30);
	psync_collection_options_init(&o);
	o.table = "users";
	o.schema = (psync_schema) {test_name_parse, test_free_value, NULL};
	o.transport = db.t;
	o.load_page = fake_load;
	o.load_ctx = &db;
	o.refetch = fake_refetch;
	o.refetch_ctx = &db;
	o.on_change = count_change;
	o.on_change_ctx = &e;
	o.on_state = record_state;
	o.on_state_ctx = &s;
	o.page_size = 4;
	CHECK_EQ_INT(psync_collection_new(&o, &c), PSYNC_OK);
	CHECK_EQ_INT(psync_collection_get_state(c), PSYNC_COLLECTION_LIVE);
	pages = db.pages;
	db.coll = c;
	db.after_page = write_during_reload;
	psync_collection_resync(c);
	CHECK_EQ_INT(psync_collection_wait_idle(c, 5000), PSYNC_OK);
	db.after_page = NULL;
	CHECK_EQ_INT(db.pages - pages, 8);	/* 30 rows, 4 a page */
	CHECK_EQ_INT(db.seen, 8);	/* after every page of the reload */
	check_equals_db(c, &db);
	psync_collection_stats(c, &st);
	CHECK_EQ_INT(st.loads, 2);
	CHECK_EQ_INT(st.gaps, 0);
	CHECK_EQ_INT(psync_collection_get_state(c), PSYNC_COLLECTION_LIVE);
	CHECK_EQ_INT(s.n, 3);		/* from the initial "loading" */
	CHECK_EQ_INT(s.seen[0], PSYNC_COLLECTION_LIVE);
	CHECK_EQ_INT(s.seen[1], PSYNC_COLLECTION_RELOADING);
	CHECK_EQ_INT(s.seen[2], PSYNC_COLLECTION_LIVE);
	CHECK(strcmp(psync_collection_state_text(PSYNC_COLLECTION_RELOADING), "reloading") == 0);
	psync_collection_destroy(c);
	db_done(&db);
}

/* A failed row refetch: that row again (with backoff), not the table. */
static void
failed_row_refetch_retries_the_row(void)
{
	fake_db		db;
	events		e = {0};
	psync_collection *c;
	psync_collection_counters st;

	db_init(&db, 20);
	CHECK_EQ_INT(open_collection(&db, &e, 100, true, &c), PSYNC_OK);
	db.fail_refetches = 3;
	db_write(&db, "users:3", "lost", true);
	db_write(&db, "users:3", "after the loss", false);	/* a gap */
	db_write(&db, "users:3", "while refetching", false);
	CHECK_EQ_INT(psync_collection_wait_idle(c, 10000), PSYNC_OK);
	check_equals_db(c, &db);
	psync_collection_stats(c, &st);
	CHECK_EQ_INT(st.loads, 1);	/* no reload */
	CHECK_EQ_INT(st.row_refetch_failures, 3);
	CHECK_EQ_INT(st.row_refetches, 4);
	CHECK_EQ_INT(db.refetches, 4);
	psync_collection_destroy(c);
	db_done(&db);
}

/* Deleted rows: a bounded record; none for keys never held. */
static void
tombstones_are_bounded(void)
{
	fake_db		db;
	events		e = {0};
	psync_collection *c;
	psync_collection_options o;
	psync_collection_counters st;
	psync_envelope env;
	char		key[32];

	db_init(&db, 3);
	psync_collection_options_init(&o);
	o.table = "users";
	o.schema = (psync_schema) {test_name_parse, test_free_value, NULL};
	o.transport = db.t;
	o.load_page = fake_load;
	o.load_ctx = &db;
	o.refetch = fake_refetch;
	o.refetch_ctx = &db;
	o.on_change = count_change;
	o.on_change_ctx = &e;
	o.max_tombstones = 50;
	CHECK_EQ_INT(psync_collection_new(&o, &c), PSYNC_OK);
	/* a queue: 20000 rows come and go */
	for (int i = 0; i < 20000; i++)
	{
		snprintf(key, sizeof(key), "users:q%d", i);
		env = test_envelope(key, 1, "job");
		psync_transport_publish(db.t, &env);
		env = test_envelope(key, 2, "");
		env.has_value = false;
		env.op = PSYNC_OP_DELETE;
		psync_transport_publish(db.t, &env);
	}
	psync_collection_stats(c, &st);
	CHECK_EQ_INT(e.added, 3 + 20000);
	CHECK_EQ_INT(e.removed, 20000);
	CHECK_EQ_INT(st.tombstones, 50);
	CHECK_EQ_INT(st.key_slots, 1024);
	/* the last deletes are still remembered: an old duplicate stays out */
	env = test_envelope("users:q19999", 1, "zombie");
	psync_transport_publish(db.t, &env);
	CHECK(!psync_collection_get(c, "users:q19999", NULL, NULL));
	/* deletes of keys never held: no record */
	for (int i = 0; i < 1000; i++)
	{
		snprintf(key, sizeof(key), "users:never%d", i);
		env = test_envelope(key, 7, "");
		env.has_value = false;
		env.op = PSYNC_OP_DELETE;
		psync_transport_publish(db.t, &env);
	}
	psync_collection_stats(c, &st);
	CHECK_EQ_INT(st.tombstones, 50);
	CHECK_EQ_INT(psync_collection_count(c), 3);
	check_equals_db(c, &db);
	psync_collection_destroy(c);
	db_done(&db);
}

/* The key map gives memory back when the table empties (TRUNCATE). */
static void
key_map_shrinks(void)
{
	fake_db		db;
	events		e = {0};
	psync_collection *c;
	psync_collection_counters st;
	psync_envelope env;
	char		key[32];
	uint64_t	grown;

	db_init(&db, 0);
	CHECK_EQ_INT(open_collection(&db, &e, 100, true, &c), PSYNC_OK);
	for (int i = 0; i < 20000; i++)
	{
		snprintf(key, sizeof(key), "users:%d", i);
		env = test_envelope(key, 1, "row");
		psync_transport_publish(db.t, &env);
	}
	psync_collection_stats(c, &st);
	CHECK_EQ_INT(psync_collection_count(c), 20000);
	CHECK(st.key_slots >= 16384);
	grown = st.key_slots;
	/* every row gone while messages were lost: the reload removes them */
	psync_collection_resync(c);
	CHECK_EQ_INT(psync_collection_wait_idle(c, 10000), PSYNC_OK);
	psync_collection_stats(c, &st);
	CHECK_EQ_INT(psync_collection_count(c), 0);
	CHECK_EQ_INT(e.removed, 20000);
	CHECK_EQ_INT(st.tombstones, 4096);	/* the default bound */
	CHECK(st.key_slots <= grown / 2);
	psync_collection_destroy(c);
	db_done(&db);
}

/* A page that fails is tried again, also on the first load. */
static void
first_load_retries_a_failed_page(void)
{
	fake_db		db;
	events		e = {0};
	psync_collection *c;

	db_init(&db, 25);
	db.fail_pages = 2;
	CHECK_EQ_INT(open_collection(&db, &e, 10, true, &c), PSYNC_OK);
	CHECK_EQ_INT(e.added, 25);
	check_equals_db(c, &db);
	psync_collection_destroy(c);
	db_done(&db);
}

/* A loader that never gets past its first page fails the load. */
static void
loader_that_does_not_advance(void)
{
	fake_db		db;
	events		e = {0};
	psync_collection *c = NULL;
	char		buf[256];

	db_init(&db, 25);
	db.stuck = true;
	CHECK_EQ_INT(open_collection(&db, &e, 10, true, &c), PSYNC_ERR_DATABASE);
	CHECK(c == NULL);
	psync_last_error(buf, sizeof(buf));
	CHECK(strstr(buf, "did not advance past key \"users:18\"") != NULL);
	if (strstr(buf, "did not advance") == NULL)
		fprintf(stderr, "  last error: %s\n", buf);
	CHECK(db.pages <= 2 + 3);	/* the first page, then the same page */
	db_done(&db);
}

static void
fake_cancel(void *ctx)
{
	fake_db    *db = ctx;

	pthread_mutex_lock(&db->lock);
	if (db->hanging)
		db->cancelled = true;
	pthread_cond_broadcast(&db->cond);
	pthread_mutex_unlock(&db->lock);
}

/* destroy cancels a page query that hangs instead of waiting for it. */
static void
destroy_cancels_a_hung_page(void)
{
	fake_db		db;
	events		e = {0};
	psync_collection *c;
	psync_collection_options o;

	db_init(&db, 5);
	psync_collection_options_init(&o);
	o.table = "users";
	o.schema = (psync_schema) {test_name_parse, test_free_value, NULL};
	o.transport = db.t;
	o.load_page = fake_load;
	o.load_ctx = &db;
	o.cancel_load = fake_cancel;
	o.on_change = count_change;
	o.on_change_ctx = &e;
	CHECK_EQ_INT(psync_collection_new(&o, &c), PSYNC_OK);
	pthread_mutex_lock(&db.lock);
	db.hang = true;
	pthread_mutex_unlock(&db.lock);
	psync_collection_resync(c);
	pthread_mutex_lock(&db.lock);
	while (!db.hanging)
		pthread_cond_wait(&db.cond, &db.lock);
	pthread_mutex_unlock(&db.lock);
	CHECK_EQ_INT(psync_collection_get_state(c), PSYNC_COLLECTION_RELOADING);
	CHECK_EQ_INT(psync_collection_destroy(c), PSYNC_OK);
	CHECK(db.cancelled);
	CHECK(!db.hang_timed_out);
	db_done(&db);
}

/* Any number of observers; unobserve stops one. */
static void
several_observers(void)
{
	fake_db		db;
	events		e1 = {0};
	events		e2 = {0};
	psync_collection *c;
	psync_observer_id id = 0;

	db_init(&db, 3);
	CHECK_EQ_INT(open_collection(&db, &e1, 10, true, &c), PSYNC_OK);
	CHECK_EQ_INT(psync_collection_observe(c, count_change, &e2, &id), PSYNC_OK);
	CHECK(id != 0);
	CHECK_EQ_INT(psync_collection_observe(c, NULL, &e2, NULL), PSYNC_ERR_INVALID_ARGUMENT);
	db_write(&db, "users:1", "x", false);
	db_write(&db, "users:4", "y", false);
	CHECK_EQ_INT(e1.updated, 1);
	CHECK_EQ_INT(e2.updated, 1);
	CHECK_EQ_INT(e1.added, 4);
	CHECK_EQ_INT(e2.added, 1);
	psync_collection_unobserve(c, id);
	psync_collection_unobserve(c, id);	/* idempotent */
	db_write(&db, "users:1", NULL, false);
	CHECK_EQ_INT(e1.removed, 1);
	CHECK_EQ_INT(e2.removed, 0);
	psync_collection_destroy(c);
	db_done(&db);
}

/* A row the client rejects is skipped and reported, the rest loads. */
static void
bad_rows_are_skipped(void)
{
	fake_db		db;
	events		e = {0};
	psync_collection *c;
	psync_collection_counters st;
	char		buf[256];

	db_init(&db, 10);
	db_write(&db, "users:%41", "escaped A", true);	/* a plain byte escaped: not a key */
	db_write(&db, "users:a b", "a space", true);	/* not a key at all */
	/* 12 rows, 6 a page: "users:a b" ends the second, full page */
	CHECK_EQ_INT(open_collection(&db, &e, 6, true, &c), PSYNC_OK);
	CHECK_EQ_INT(db.pages, 3);
	CHECK_EQ_INT(psync_collection_count(c), 10);
	CHECK(psync_collection_get(c, "users:10", NULL, NULL));
	psync_collection_stats(c, &st);
	CHECK_EQ_INT(st.rows_skipped, 2);
	CHECK_EQ_INT(st.rows_loaded, 10);
	psync_collection_last_error(c, buf, sizeof(buf));
	CHECK(strncmp(buf, "page row skipped: ", 18) == 0);
	CHECK(strstr(buf, "users:a b") != NULL);
	CHECK_EQ_INT(psync_collection_get_state(c), PSYNC_COLLECTION_LIVE);
	/* and reloads as well */
	psync_collection_resync(c);
	CHECK_EQ_INT(psync_collection_wait_idle(c, 5000), PSYNC_OK);
	psync_collection_stats(c, &st);
	CHECK_EQ_INT(st.loads, 2);
	CHECK_EQ_INT(st.rows_skipped, 4);
	CHECK_EQ_INT(psync_collection_count(c), 10);
	psync_collection_destroy(c);
	db_done(&db);
}

/* ---- layout ---- */

static const char *
key_layout(psync_transport *t, const char *table)
{
	(void) t;
	(void) table;
	return "key";
}

static psync_status
fake_layout(void *ctx, const char *table, char *layout, size_t size, char *error,
			size_t error_size)
{
	fake_db    *db = ctx;

	(void) table;
	(void) error;
	(void) error_size;
	pthread_mutex_lock(&db->lock);
	snprintf(layout, size, "%s", db->layout);
	pthread_mutex_unlock(&db->lock);
	return PSYNC_OK;
}

static void
set_layout(fake_db *db, const char *layout)
{
	pthread_mutex_lock(&db->lock);
	db->layout = layout;
	pthread_mutex_unlock(&db->lock);
}

/* A transport in another subject layout than the server: state ERROR. */
static void
layout_mismatch_is_an_error(void)
{
	static transport_ops ops;
	fake_db		db;
	events		e = {0};
	psync_collection *c = NULL;
	psync_collection_options o;
	char		buf[512];
	int			polls = 0;

	db_init(&db, 3);
	ops = *db.t->ops;			/* an in-process transport in the 'key' layout */
	ops.table_layout = key_layout;
	db.t->ops = &ops;
	psync_collection_options_init(&o);
	o.table = "users";
	o.schema = (psync_schema) {test_name_parse, test_free_value, NULL};
	o.transport = db.t;
	o.load_page = fake_load;
	o.load_ctx = &db;
	o.load_layout = fake_layout;
	o.on_change = count_change;
	o.on_change_ctx = &e;
	o.layout_check_ms = -1;

	/* at start: refused with the reason */
	db.layout = "table";
	CHECK_EQ_INT(psync_collection_new(&o, &c), PSYNC_ERR_LAYOUT);
	CHECK(c == NULL);
	psync_last_error(buf, sizeof(buf));
	CHECK(strstr(buf, "subject layout mismatch: the server publishes table \"users\" "
				 "in the 'table' layout") != NULL);
	CHECK_EQ_INT(db.pages, 0);

	/* switched at run time: found at the next load */
	db.layout = "key";
	CHECK_EQ_INT(psync_collection_new(&o, &c), PSYNC_OK);
	CHECK_EQ_INT(psync_collection_get_state(c), PSYNC_COLLECTION_LIVE);
	set_layout(&db, "table");
	psync_collection_resync(c);
	CHECK_EQ_INT(psync_collection_wait_idle(c, 5000), PSYNC_OK);
	CHECK_EQ_INT(psync_collection_get_state(c), PSYNC_COLLECTION_ERROR);
	psync_collection_last_error(c, buf, sizeof(buf));
	CHECK(strncmp(buf, "subject layout mismatch", 23) == 0);
	psync_collection_destroy(c);

	/* ... and by the periodic check, which also sees it end */
	set_layout(&db, "key");
	o.layout_check_ms = 10;
	CHECK_EQ_INT(psync_collection_new(&o, &c), PSYNC_OK);
	set_layout(&db, "table");
	while (psync_collection_get_state(c) != PSYNC_COLLECTION_ERROR && polls++ < 500)
		usleep(10000);
	CHECK_EQ_INT(psync_collection_get_state(c), PSYNC_COLLECTION_ERROR);
	set_layout(&db, "key");
	polls = 0;
	while (psync_collection_get_state(c) != PSYNC_COLLECTION_LIVE && polls++ < 500)
		usleep(10000);
	CHECK_EQ_INT(psync_collection_get_state(c), PSYNC_COLLECTION_LIVE);
	psync_collection_destroy(c);
	db_done(&db);
}

int
main(void)
{
	RUN(loads_every_page);
	RUN(page_boundaries);
	RUN(changes_during_the_load);
	RUN(pages_in_primary_key_order);
	RUN(live_rules);
	RUN(gap_without_refetch_reloads);
	RUN(lost_resynchronises);
	RUN(table_reload_rewrites_rows_at_their_sequence);
	RUN(failed_initial_load);
	RUN(destroy_from_callback_is_refused);
	RUN(invalid_options);
	RUN(destroy_from_loader_is_refused);
	RUN(rows_stay_live_during_a_reload);
	RUN(failed_row_refetch_retries_the_row);
	RUN(tombstones_are_bounded);
	RUN(key_map_shrinks);
	RUN(first_load_retries_a_failed_page);
	RUN(loader_that_does_not_advance);
	RUN(destroy_cancels_a_hung_page);
	RUN(several_observers);
	RUN(bad_rows_are_skipped);
	RUN(layout_mismatch_is_an_error);
	return harness_finish();
}
