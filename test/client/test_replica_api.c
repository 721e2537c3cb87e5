/*
 * test_replica_api.c — the replica API beyond the reconcile rules: error
 * text (psync_replica_last_error), several observers, what a callback must
 * not do (dispose its own replica, wait for idle) being refused instead of
 * crashing or hanging, and max_buffered up to SIZE_MAX.
 */
#include <pthread.h>
#include <stdint.h>

#include "harness.h"

/* A refetch function that keeps the request for the test to finish. */
typedef struct held
{
	psync_refetch_request *req;
	int			calls;
} held;

static void
hold_refetch(void *ctx, const char *key, psync_refetch_request *req)
{
	held	   *h = ctx;

	(void) key;
	h->calls++;
	h->req = req;
}

/* Parse: Err for names starting with "BAD", else a copy of the name. */
static bool
name_parse(void *ctx, const uint8_t *mp, size_t len, const psync_envelope *env,
		   void *recycled, void **out, const char **error)
{
	char		name[32];

	(void) ctx;
	(void) env;
	test_value_name(mp, len, name, sizeof(name));
	if (strncmp(name, "BAD", 3) == 0)
	{
		*error = "names must not start with BAD";
		return false;
	}
	(void) recycled;			/* the replica frees it: *out is a new value */
	*out = strdup(name);
	return *out != NULL;
}

typedef struct world
{
	psync_transport *t;
	psync_replica *r;
	held		h;
} world;

static void
world_new(world *w, psync_change_fn on_change, void *ctx, size_t max_buffered)
{
	psync_replica_options o;

	memset(w, 0, sizeof(*w));
	CHECK_EQ_INT(psync_inprocess_transport_new(&w->t), PSYNC_OK);
	psync_replica_options_init(&o);
	o.key = "users:1";
	o.schema = (psync_schema) {name_parse, test_free_value, NULL};
	o.transport = w->t;
	o.refetch = hold_refetch;
	o.refetch_ctx = &w->h;
	o.on_change = on_change;
	o.on_change_ctx = ctx;
	if (max_buffered)
		o.max_buffered = max_buffered;
	CHECK_EQ_INT(psync_replica_new(&o, &w->r), PSYNC_OK);
}

static void
world_done(world *w)
{
	psync_refetch_request *left = w->h.req;

	w->h.req = NULL;
	CHECK_EQ_INT(psync_replica_destroy(w->r), PSYNC_OK);
	if (left != NULL)
		psync_refetch_fail(left, "test over");
	psync_transport_destroy(w->t);
}

static void
send_env(world *w, uint64_t seq, const char *name)
{
	psync_envelope env = test_envelope("users:1", seq, name);

	CHECK_EQ_INT(psync_transport_publish(w->t, &env), PSYNC_OK);
}

static void
complete(world *w, uint64_t seq, const char *name)
{
	psync_envelope env = test_envelope("users:1", seq, name);
	psync_refetch_request *req = w->h.req;
	test_buf	b;

	env.op = PSYNC_OP_SNAPSHOT;
	env.has_txid = false;
	b = test_encode(&env);
	w->h.req = NULL;
	CHECK(req != NULL);
	if (req != NULL)
		psync_refetch_complete(req, b.data, b.len);
	free(b.data);
}

static psync_replica_status
status_of(psync_replica *r)
{
	psync_replica_metadata m;

	psync_replica_meta(r, &m);
	return m.status;
}

/* ---- error text ---- */

static void
refetch_failure_text_is_kept(void)
{
	world		w;
	char		buf[128];
	char		tiny[8];

	world_new(&w, NULL, NULL, 0);
	CHECK_EQ_INT(psync_replica_last_error(w.r, buf, sizeof(buf)), 0);
	CHECK(strcmp(buf, "") == 0);
	send_env(&w, 1, "ada");
	send_env(&w, 3, "gap");			/* → refetch */
	CHECK(w.h.req != NULL);
	psync_refetch_fail(w.h.req, "could not connect to server: Connection refused");
	w.h.req = NULL;
	CHECK_EQ_INT(status_of(w.r), PSYNC_REPLICA_STALE);
	CHECK(psync_replica_last_error(w.r, buf, sizeof(buf)) > 0);
	CHECK(strcmp(buf, "refetch failed: could not connect to server: Connection refused") == 0);
	/* truncated like snprintf, full length returned */
	CHECK_EQ_INT(psync_replica_last_error(w.r, tiny, sizeof(tiny)), strlen(buf));
	CHECK(strcmp(tiny, "refetch") == 0);
	CHECK_EQ_INT(psync_replica_last_error(w.r, NULL, 0), strlen(buf));
	/* a failure without text still says what happened */
	psync_replica_resync(w.r);
	psync_refetch_fail(w.h.req, NULL);
	w.h.req = NULL;
	psync_replica_last_error(w.r, buf, sizeof(buf));
	CHECK(strncmp(buf, "refetch failed", 14) == 0);
	world_done(&w);
}

static void
parse_error_text_is_kept(void)
{
	world		w;
	char		buf[128];

	world_new(&w, NULL, NULL, 0);
	send_env(&w, 1, "ada");
	send_env(&w, 2, "BAD value");
	CHECK_EQ_INT(status_of(w.r), PSYNC_REPLICA_REFETCHING);
	psync_replica_last_error(w.r, buf, sizeof(buf));
	CHECK(strcmp(buf, "value rejected: names must not start with BAD") == 0);
	complete(&w, 2, "fine");
	CHECK_EQ_INT(status_of(w.r), PSYNC_REPLICA_OK);
	/* the text stays after recovery */
	psync_replica_last_error(w.r, buf, sizeof(buf));
	CHECK(strcmp(buf, "value rejected: names must not start with BAD") == 0);
	world_done(&w);
}

static void
missing_refetch_function_text(void)
{
	psync_transport *t;
	psync_replica *r;
	psync_replica_options o;
	char		buf[128];

	CHECK_EQ_INT(psync_inprocess_transport_new(&t), PSYNC_OK);
	psync_replica_options_init(&o);
	o.key = "users:1";
	o.schema = (psync_schema) {name_parse, test_free_value, NULL};
	o.transport = t;
	CHECK_EQ_INT(psync_replica_new(&o, &r), PSYNC_OK);
	psync_replica_resync(r);
	psync_replica_last_error(r, buf, sizeof(buf));
	CHECK(strstr(buf, "no refetch function") != NULL);
	psync_replica_destroy(r);
	psync_transport_destroy(t);
}

static void
thread_error_after_failed_connect(void)
{
	psync_nats_options no;
	psync_transport *t = NULL;
	char		buf[256];

	psync_nats_options_init(&no);
	no.url = "nats://127.0.0.1:1";		/* nothing listens there */
	no.max_reconnect = 0;
	no.connect_timeout_ms = 200;
	CHECK_EQ_INT(psync_nats_transport_connect(&no, &t), PSYNC_ERR_NATS);
	CHECK(t == NULL);
	CHECK(psync_last_error(buf, sizeof(buf)) > 0);
	CHECK(strstr(buf, "could not connect to NATS at nats://127.0.0.1:1") != NULL);
	CHECK_EQ_INT(psync_transport_last_error(NULL, buf, sizeof(buf)), 0);
}

/* ---- several observers ---- */

typedef struct watcher
{
	int			calls;
	psync_replica *r;
	psync_observer_id self;
	psync_observer_id to_remove;
	bool		remove_self;
	bool		add_one;
	struct watcher *added;
	char		last[32];
} watcher;

static void
watch(void *ctx, psync_replica *r, const void *value, const psync_replica_metadata *meta)
{
	watcher    *w = ctx;

	(void) meta;
	w->calls++;
	snprintf(w->last, sizeof(w->last), "%s", value ? (const char *) value : "");
	if (w->remove_self)
		psync_replica_unobserve(r, w->self);
	if (w->to_remove)
	{
		psync_replica_unobserve(r, w->to_remove);
		w->to_remove = 0;
	}
	if (w->add_one && w->added != NULL)
	{
		CHECK_EQ_INT(psync_replica_observe(r, watch, w->added, &w->added->self), PSYNC_OK);
		w->add_one = false;
	}
}

static void
several_observers(void)
{
	world		w;
	watcher		first = {0},
				a = {0},
				b = {0},
				c = {0};
	psync_observer_id ida,
				idb,
				idc;

	world_new(&w, watch, &first, 0);
	CHECK_EQ_INT(psync_replica_observe(w.r, watch, &a, &ida), PSYNC_OK);
	CHECK_EQ_INT(psync_replica_observe(w.r, watch, &b, &idb), PSYNC_OK);
	CHECK(ida != 0 && idb != 0 && ida != idb);
	CHECK_EQ_INT(psync_replica_observe(w.r, NULL, &c, &idc), PSYNC_ERR_INVALID_ARGUMENT);
	CHECK_EQ_INT(idc, 0);
	send_env(&w, 1, "ada");
	CHECK_EQ_INT(first.calls, 1);
	CHECK_EQ_INT(a.calls, 1);
	CHECK_EQ_INT(b.calls, 1);
	CHECK(strcmp(b.last, "ada") == 0);

	psync_replica_unobserve(w.r, ida);
	psync_replica_unobserve(w.r, ida);	/* idempotent */
	psync_replica_unobserve(w.r, 0);
	send_env(&w, 2, "bob");
	CHECK_EQ_INT(a.calls, 1);
	CHECK_EQ_INT(b.calls, 2);
	CHECK_EQ_INT(first.calls, 2);

	/* b removes itself, first removes c (registered after it) and adds a */
	b.remove_self = true;
	b.self = idb;
	CHECK_EQ_INT(psync_replica_observe(w.r, watch, &c, &idc), PSYNC_OK);
	first.to_remove = idc;
	first.add_one = true;
	first.added = &a;
	a.calls = 0;
	send_env(&w, 3, "cy");
	CHECK_EQ_INT(first.calls, 3);
	CHECK_EQ_INT(b.calls, 3);	/* called once more, then gone */
	CHECK_EQ_INT(c.calls, 0);	/* removed before its turn */
	CHECK_EQ_INT(a.calls, 0);	/* added during the change: from the next one */
	send_env(&w, 4, "dee");
	CHECK_EQ_INT(b.calls, 3);
	CHECK_EQ_INT(a.calls, 1);
	CHECK_EQ_INT(first.calls, 4);
	world_done(&w);
}

/* ---- refused from callbacks ---- */

typedef struct rude
{
	psync_replica *r;
	int			calls;
	psync_status dispose_rc;
	psync_status wait_rc;
	bool		try_dispose;
	bool		try_wait;
} rude;

static void
rude_change(void *ctx, psync_replica *r, const void *value, const psync_replica_metadata *meta)
{
	rude	   *x = ctx;

	(void) value;
	(void) meta;
	x->calls++;
	if (x->try_dispose)
		x->dispose_rc = psync_replica_destroy(r);
	if (x->try_wait)
		x->wait_rc = psync_replica_wait_idle(r, -1);	/* would hang forever */
}

static void
dispose_from_own_callback_is_refused(void)
{
	world		w;
	rude		x = {0};
	psync_replica_counters st;

	world_new(&w, rude_change, &x, 0);
	x.try_dispose = true;
	send_env(&w, 1, "ada");
	CHECK_EQ_INT(x.dispose_rc, PSYNC_ERR_IN_CALLBACK);
	x.try_dispose = false;
	/* the replica is intact and goes on */
	send_env(&w, 2, "bob");
	psync_replica_stats(w.r, &st);
	CHECK_EQ_INT(st.applied, 2);
	CHECK_EQ_INT(x.calls, 2);
	world_done(&w);
}

static void
wait_idle_from_callback_is_refused(void)
{
	world		w;
	rude		x = {0};

	world_new(&w, rude_change, &x, 0);
	send_env(&w, 1, "ada");
	x.try_wait = true;
	send_env(&w, 5, "gap");			/* status → refetching, observer waits */
	CHECK(w.h.req != NULL);
	CHECK_EQ_INT(x.wait_rc, PSYNC_ERR_IN_CALLBACK);
	x.try_wait = false;
	complete(&w, 5, "gap");
	CHECK_EQ_INT(psync_replica_wait_idle(w.r, 0), PSYNC_OK);	/* outside: fine */
	world_done(&w);
}

/* a value visitor (psync_replica_get) is a callback too */
static void
visit_and_dispose(void *ctx, const void *value, const psync_replica_metadata *meta)
{
	world	   *w = ctx;

	(void) value;
	(void) meta;
	CHECK_EQ_INT(psync_replica_destroy(w->r), PSYNC_ERR_IN_CALLBACK);
	CHECK_EQ_INT(psync_replica_wait_idle(w->r, 1000), PSYNC_ERR_IN_CALLBACK);
}

static void
dispose_from_visitor_is_refused(void)
{
	world		w;

	world_new(&w, NULL, NULL, 0);
	send_env(&w, 1, "ada");
	psync_replica_get(w.r, visit_and_dispose, &w);
	world_done(&w);
}

/* disposing another replica from a callback is allowed */
typedef struct pair
{
	psync_replica *other;
	psync_status rc;
	bool		done;
} pair;

static void
dispose_other(void *ctx, psync_replica *r, const void *value, const psync_replica_metadata *meta)
{
	pair	   *p = ctx;

	(void) r;
	(void) value;
	(void) meta;
	if (!p->done && p->other != NULL)
	{
		p->rc = psync_replica_destroy(p->other);
		p->done = true;
	}
}

static void
dispose_other_replica_from_callback(void)
{
	world		w;
	pair		p = {0};
	psync_replica_options o;

	world_new(&w, dispose_other, &p, 0);
	psync_replica_options_init(&o);
	o.key = "users:2";
	o.schema = (psync_schema) {name_parse, test_free_value, NULL};
	o.transport = w.t;
	CHECK_EQ_INT(psync_replica_new(&o, &p.other), PSYNC_OK);
	send_env(&w, 1, "ada");
	CHECK(p.done);
	CHECK_EQ_INT(p.rc, PSYNC_OK);
	world_done(&w);
}

/* ---- max_buffered ---- */

static void
buffer_with_max(size_t max)
{
	world		w;
	psync_replica_metadata m;
	psync_replica_counters st;

	world_new(&w, NULL, NULL, max);
	send_env(&w, 1, "v1");
	send_env(&w, 3, "gap");			/* refetch in flight: the rest is buffered */
	for (uint64_t s = 4; s <= 200; s++)
		send_env(&w, s, "buffered");
	complete(&w, 3, "snap");
	psync_replica_meta(w.r, &m);
	psync_replica_stats(w.r, &st);
	CHECK_EQ_INT(m.sequence, 200);
	CHECK_EQ_INT(m.status, PSYNC_REPLICA_OK);
	CHECK_EQ_INT(st.refetches, 1);
	world_done(&w);
}

static void
max_buffered_near_size_max(void)
{
	buffer_with_max(SIZE_MAX);
	buffer_with_max(SIZE_MAX / sizeof(void *) + 2);	/* n * 8 wrapped to 8 before */
	buffer_with_max(SIZE_MAX / 2);
	buffer_with_max(1000);
}

static void
small_max_buffered_still_recovers(void)
{
	world		w;
	psync_replica_metadata m;

	world_new(&w, NULL, NULL, 3);
	send_env(&w, 1, "v1");
	send_env(&w, 3, "gap");
	for (uint64_t s = 4; s <= 40; s++)
		send_env(&w, s, "buffered");
	complete(&w, 3, "snap");	/* newest 3 kept: 38..40 → a gap → refetch */
	CHECK(w.h.req != NULL);
	complete(&w, 40, "snap2");
	psync_replica_meta(w.r, &m);
	CHECK_EQ_INT(m.sequence, 40);
	CHECK_EQ_INT(m.status, PSYNC_REPLICA_OK);
	world_done(&w);
}

int
main(void)
{
	RUN(refetch_failure_text_is_kept);
	RUN(parse_error_text_is_kept);
	RUN(missing_refetch_function_text);
	RUN(thread_error_after_failed_connect);
	RUN(several_observers);
	RUN(dispose_from_own_callback_is_refused);
	RUN(wait_idle_from_callback_is_refused);
	RUN(dispose_from_visitor_is_refused);
	RUN(dispose_other_replica_from_callback);
	RUN(max_buffered_near_size_max);
	RUN(small_max_buffered_still_recovers);
	return harness_finish();
}
