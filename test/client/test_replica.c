/*
 * test_replica.c — every reconcile rule of the seed's createClientReplica,
 * ported, plus the ones libparasync adds (single refetch in flight,
 * buffering during a refetch, LOST → refetch, malformed → refetch,
 * recycling on the in-order path, dispose while a refetch is in flight).
 *
 * Refetches are held by a manual refetcher so each test decides when and
 * how they finish.
 */
#include <pthread.h>
#include <unistd.h>

#include "harness.h"

/* ---- a schema that records what it saw; Err on names starting "BAD" ---- */

typedef struct parsed_value
{
	char		name[32];
	uint64_t	sequence;
} parsed_value;

typedef struct schema_log
{
	int			parses;
	int			allocations;
	int			recycled_offers;
	int			frees;
} schema_log;

static bool
test_parse(void *ctx, const uint8_t *msgpack, size_t len,
		   const psync_envelope *env, void *recycled, void **out,
		   const char **error)
{
	schema_log *log = ctx;
	parsed_value *v = recycled;
	char		name[32];

	log->parses++;
	if (recycled != NULL)
		log->recycled_offers++;
	test_value_name(msgpack, len, name, sizeof(name));
	if (strncmp(name, "BAD", 3) == 0)
	{
		*error = "schema says no";
		return false;
	}
	if (v == NULL)
	{
		v = malloc(sizeof(*v));
		log->allocations++;
	}
	snprintf(v->name, sizeof(v->name), "%s", len == 1 && msgpack[0] == 0xc0 ? "<nil>" : name);
	v->sequence = env->sequence;
	*out = v;
	return true;
}

static void
test_free(void *ctx, void *value)
{
	((schema_log *) ctx)->frees++;
	free(value);
}

/* ---- a manual refetcher: requests wait in a list ---- */

typedef struct manual_refetcher
{
	pthread_mutex_t lock;
	psync_refetch_request *pending[16];
	int			npending;
	int			calls;
} manual_refetcher;

static void
manual_refetch(void *ctx, const char *key, psync_refetch_request *req)
{
	manual_refetcher *m = ctx;

	(void) key;
	pthread_mutex_lock(&m->lock);
	m->calls++;
	m->pending[m->npending++] = req;
	pthread_mutex_unlock(&m->lock);
}

static psync_refetch_request *
manual_take(manual_refetcher *m)
{
	psync_refetch_request *req = NULL;

	pthread_mutex_lock(&m->lock);
	if (m->npending > 0)
	{
		req = m->pending[0];
		memmove(&m->pending[0], &m->pending[1], (size_t) (m->npending - 1) * sizeof(req));
		m->npending--;
	}
	pthread_mutex_unlock(&m->lock);
	return req;
}

/* Finish the oldest pending refetch with a snapshot (seq, name). */
static bool
manual_complete(manual_refetcher *m, const char *key, uint64_t seq, const char *name)
{
	psync_refetch_request *req = manual_take(m);
	psync_envelope env = test_envelope(key, seq, name);
	test_buf	b;

	if (req == NULL)
		return false;
	env.op = PSYNC_OP_SNAPSHOT;
	env.has_txid = false;
	b = test_encode(&env);
	psync_refetch_complete(req, b.data, b.len);
	free(b.data);
	return true;
}

/* ---- a fixture: transport + replica + logs ---- */

typedef struct fixture
{
	psync_transport *t;
	psync_replica *r;
	schema_log log;
	manual_refetcher m;
	int			changes;
	psync_replica_status last_status;
	char		last_name[32];
} fixture;

static void
on_change(void *ctx, psync_replica *r, const void *value, const psync_replica_metadata *meta)
{
	fixture    *f = ctx;

	(void) r;
	f->changes++;
	f->last_status = meta->status;
	snprintf(f->last_name, sizeof(f->last_name), "%s", value ? ((const parsed_value *) value)->name : "");
}

typedef struct fixture_opts
{
	bool		refetch;
	bool		initial_refetch;
	const psync_envelope *seed;
	const void *seed_bytes;
	size_t		seed_len;
	size_t		max_buffered;
} fixture_opts;

static void
fixture_init(fixture *f, fixture_opts o)
{
	psync_replica_options opts;
	test_buf	seed = {NULL, 0};

	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->m.lock, NULL);
	CHECK_EQ_INT(psync_inprocess_transport_new(&f->t), PSYNC_OK);
	psync_replica_options_init(&opts);
	opts.key = "users:1";
	opts.schema.parse = test_parse;
	opts.schema.free_value = test_free;
	opts.schema.ctx = &f->log;
	opts.transport = f->t;
	if (o.refetch)
	{
		opts.refetch = manual_refetch;
		opts.refetch_ctx = &f->m;
	}
	opts.initial_refetch = o.initial_refetch;
	opts.on_change = on_change;
	opts.on_change_ctx = f;
	if (o.max_buffered)
		opts.max_buffered = o.max_buffered;
	if (o.seed != NULL)
	{
		seed = test_encode(o.seed);
		opts.seed = seed.data;
		opts.seed_len = seed.len;
	}
	else if (o.seed_bytes != NULL)
	{
		opts.seed = o.seed_bytes;
		opts.seed_len = o.seed_len;
	}
	CHECK_EQ_INT(psync_replica_new(&opts, &f->r), PSYNC_OK);
	free(seed.data);
}

static void
fixture_done(fixture *f)
{
	psync_refetch_request *left[16];
	int			nleft = 0;

	while (nleft < 16 && (left[nleft] = manual_take(&f->m)) != NULL)
		nleft++;
	psync_replica_destroy(f->r);
	for (int i = 0; i < nleft; i++)
		psync_refetch_fail(left[i], "test over");	/* after dispose: harmless */
	CHECK_EQ_INT(psync_transport_key_count(f->t), 0);
	psync_transport_destroy(f->t);
	CHECK_EQ_INT(f->log.allocations, f->log.frees);	/* nothing leaked */
	pthread_mutex_destroy(&f->m.lock);
}

static void
publish(fixture *f, uint64_t seq, const char *name)
{
	psync_envelope env = test_envelope("users:1", seq, name);

	CHECK_EQ_INT(psync_transport_publish(f->t, &env), PSYNC_OK);
}

typedef struct seen
{
	char		name[32];
	bool		has_value;
} seen;

static void
read_value(void *ctx, const void *value, const psync_replica_metadata *meta)
{
	seen	   *s = ctx;

	(void) meta;
	s->has_value = value != NULL;
	snprintf(s->name, sizeof(s->name), "%s", value ? ((const parsed_value *) value)->name : "");
}

static seen
current(fixture *f)
{
	seen		s;

	psync_replica_get(f->r, read_value, &s);
	return s;
}

static psync_replica_metadata
meta_of(fixture *f)
{
	psync_replica_metadata m;

	psync_replica_meta(f->r, &m);
	return m;
}

static psync_replica_counters
stats_of(fixture *f)
{
	psync_replica_counters s;

	psync_replica_stats(f->r, &s);
	return s;
}

/* ---- the seed's rules ---- */

static void
starts_stale_and_uninitialised(void)
{
	fixture		f;

	fixture_init(&f, (fixture_opts) {.refetch = true});
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_STALE);
	CHECK_EQ_INT(meta_of(&f).sequence, -1);
	CHECK(!meta_of(&f).has_schema_version);
	CHECK(!current(&f).has_value);
	CHECK_EQ_INT(f.m.calls, 0);	/* no seed, no initial_refetch: waits */
	/* its key, and its table's events ("users") */
	CHECK_EQ_INT(psync_transport_key_count(f.t), 2);
	fixture_done(&f);
}

static void
seed_is_hydrated_through_the_parse_gate(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 10, "ada");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_OK);
	CHECK_EQ_INT(meta_of(&f).sequence, 10);
	CHECK(strcmp(meta_of(&f).schema_version, "1") == 0);
	CHECK(strcmp(current(&f).name, "ada") == 0);
	CHECK_EQ_INT(stats_of(&f).applied, 1);
	CHECK_EQ_INT(f.log.parses, 1);
	CHECK_EQ_INT(f.changes, 1);
	CHECK(strcmp(f.last_name, "ada") == 0);
	fixture_done(&f);
}

static void
bad_seed_is_skew_and_refetches(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 10, "BAD seed");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	CHECK_EQ_INT(stats_of(&f).parse_errors, 1);
	CHECK_EQ_INT(f.m.calls, 1);
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_REFETCHING);
	CHECK(manual_complete(&f.m, "users:1", 11, "fixed"));
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_OK);
	CHECK(strcmp(current(&f).name, "fixed") == 0);
	fixture_done(&f);
}

static void
malformed_seed_bytes_are_a_parse_error(void)
{
	fixture		f;

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed_bytes = "\x81\xa3key", .seed_len = 5});
	CHECK_EQ_INT(stats_of(&f).parse_errors, 1);
	CHECK_EQ_INT(f.m.calls, 1);
	fixture_done(&f);
}

static void
first_value_ever_seen_is_the_baseline(void)
{
	fixture		f;

	fixture_init(&f, (fixture_opts) {.refetch = true});
	publish(&f, 57, "first");	/* no current + 1 rule before a baseline */
	CHECK_EQ_INT(meta_of(&f).sequence, 57);
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_OK);
	CHECK_EQ_INT(stats_of(&f).gaps, 0);
	CHECK_EQ_INT(f.m.calls, 0);
	fixture_done(&f);
}

static void
applies_in_order(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 1, "v1");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	publish(&f, 2, "v2");
	publish(&f, 3, "v3");
	CHECK_EQ_INT(meta_of(&f).sequence, 3);
	CHECK(strcmp(current(&f).name, "v3") == 0);
	CHECK_EQ_INT(stats_of(&f).applied, 3);
	CHECK_EQ_INT(f.changes, 3);
	fixture_done(&f);
}

static void
stale_and_duplicates_are_ignored(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	publish(&f, 5, "dup");
	publish(&f, 3, "old");
	publish(&f, 0, "zero");
	CHECK_EQ_INT(stats_of(&f).ignored_stale, 3);
	CHECK_EQ_INT(meta_of(&f).sequence, 5);
	CHECK(strcmp(current(&f).name, "v5") == 0);
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_OK);
	CHECK_EQ_INT(f.m.calls, 0);
	CHECK_EQ_INT(f.log.parses, 4);	/* the gate runs before the sequence check */
	fixture_done(&f);
}

static void
gap_refetches_and_the_result_is_the_new_baseline(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	publish(&f, 7, "v7");
	CHECK_EQ_INT(stats_of(&f).gaps, 1);
	CHECK_EQ_INT(stats_of(&f).refetches, 1);
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_REFETCHING);
	CHECK(strcmp(current(&f).name, "v5") == 0);	/* gapped value not applied */
	CHECK(manual_complete(&f.m, "users:1", 7, "snap7"));
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_OK);
	CHECK_EQ_INT(meta_of(&f).sequence, 7);
	CHECK(strcmp(current(&f).name, "snap7") == 0);
	publish(&f, 8, "v8");
	CHECK_EQ_INT(meta_of(&f).sequence, 8);
	fixture_done(&f);
}

static void
refetch_result_reseeds_even_when_older(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	psync_replica_resync(f.r);
	CHECK(manual_complete(&f.m, "users:1", 3, "older"));
	CHECK_EQ_INT(meta_of(&f).sequence, 3);	/* the seed's rule: accepted as is */
	CHECK(strcmp(current(&f).name, "older") == 0);
	fixture_done(&f);
}

static void
gap_without_refetch_goes_stale(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");

	fixture_init(&f, (fixture_opts) {.refetch = false, .seed = &seed});
	publish(&f, 9, "v9");
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_STALE);
	CHECK_EQ_INT(stats_of(&f).gaps, 1);
	CHECK_EQ_INT(stats_of(&f).refetches, 0);
	CHECK(strcmp(current(&f).name, "v5") == 0);
	publish(&f, 6, "v6");		/* in order again: applies, ok */
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_OK);
	CHECK_EQ_INT(meta_of(&f).sequence, 6);
	fixture_done(&f);
}

static void
parse_error_on_receipt_is_skew_keeps_value_and_refetches(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	f.changes = 0;
	publish(&f, 6, "BAD shape");
	CHECK_EQ_INT(stats_of(&f).parse_errors, 1);
	CHECK(strcmp(current(&f).name, "v5") == 0);
	CHECK_EQ_INT(meta_of(&f).sequence, 5);
	CHECK_EQ_INT(f.m.calls, 1);
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_REFETCHING);
	CHECK(f.changes >= 2);		/* skew, then refetching */
	fixture_done(&f);
}

static void
parse_error_without_refetch_ends_stale(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");

	fixture_init(&f, (fixture_opts) {.refetch = false, .seed = &seed});
	publish(&f, 6, "BAD");
	/* seed: setMeta(skew) then startRefetch() without refetch → stale */
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_STALE);
	CHECK_EQ_INT(stats_of(&f).parse_errors, 1);
	CHECK(strcmp(current(&f).name, "v5") == 0);
	fixture_done(&f);
}

static void
parse_error_on_refetch_result_does_not_loop(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	publish(&f, 9, "gap");
	CHECK(manual_complete(&f.m, "users:1", 9, "BAD snapshot"));
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_SKEW);
	CHECK_EQ_INT(stats_of(&f).parse_errors, 1);
	CHECK_EQ_INT(stats_of(&f).refetches, 1);
	CHECK_EQ_INT(f.m.calls, 1);
	CHECK(strcmp(current(&f).name, "v5") == 0);
	fixture_done(&f);
}

static void
malformed_refetch_bytes_do_not_loop(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	psync_replica_resync(f.r);
	psync_refetch_complete(manual_take(&f.m), "\x81\xa1k", 3);
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_SKEW);
	CHECK_EQ_INT(f.m.calls, 1);
	/* a snapshot of another key is malformed too */
	psync_replica_resync(f.r);
	manual_complete(&f.m, "users:2", 6, "wrong key");
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_SKEW);
	CHECK_EQ_INT(stats_of(&f).parse_errors, 2);
	CHECK_EQ_INT(meta_of(&f).sequence, 5);
	fixture_done(&f);
}

static void
failed_refetch_goes_stale(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	publish(&f, 8, "gap");
	psync_refetch_fail(manual_take(&f.m), "database down");
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_STALE);
	CHECK(strcmp(current(&f).name, "v5") == 0);
	CHECK_EQ_INT(psync_replica_wait_idle(f.r, 0), PSYNC_OK);
	fixture_done(&f);
}

static void
delete_applies_nil(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");
	psync_envelope del = test_envelope("users:1", 6, "");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	del.op = PSYNC_OP_DELETE;
	del.value = (const uint8_t *) "\xc0";
	del.value_len = 1;
	psync_transport_publish(f.t, &del);
	CHECK_EQ_INT(meta_of(&f).sequence, 6);
	CHECK(strcmp(current(&f).name, "<nil>") == 0);
	fixture_done(&f);
}

/* ---- beyond the seed ---- */

static void
one_refetch_in_flight_and_lost_is_remembered(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	publish(&f, 8, "gap");
	publish(&f, 12, "gap again");	/* buffered, not a second refetch */
	psync_replica_resync(f.r);	/* like a NATS reconnect: remembered */
	CHECK_EQ_INT(f.m.calls, 1);
	CHECK(manual_complete(&f.m, "users:1", 12, "s12"));
	/* 8 started the refetch; buffered 12 is <= 12: stale; then the
	 * remembered refetch */
	CHECK_EQ_INT(stats_of(&f).ignored_stale, 1);
	CHECK_EQ_INT(f.m.calls, 2);
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_REFETCHING);
	CHECK(manual_complete(&f.m, "users:1", 12, "s12b"));
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_OK);
	CHECK_EQ_INT(stats_of(&f).refetches, 2);
	fixture_done(&f);
}

static void
envelopes_during_refetch_are_applied_after_it(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	publish(&f, 7, "gap");
	publish(&f, 10, "v10");		/* out of order on purpose */
	publish(&f, 8, "v8");
	publish(&f, 9, "v9");
	CHECK(strcmp(current(&f).name, "v5") == 0);
	CHECK(manual_complete(&f.m, "users:1", 8, "s8"));
	/* 7 started the refetch; buffered 8 is stale against the snapshot;
	 * 9, 10 applied in order */
	CHECK_EQ_INT(meta_of(&f).sequence, 10);
	CHECK(strcmp(current(&f).name, "v10") == 0);
	CHECK_EQ_INT(stats_of(&f).ignored_stale, 1);
	CHECK_EQ_INT(stats_of(&f).applied, 4);	/* seed, snapshot, 9, 10 */
	CHECK_EQ_INT(f.m.calls, 1);
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_OK);
	fixture_done(&f);
}

static void
buffered_gap_after_snapshot_refetches_again(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	publish(&f, 7, "gap");
	publish(&f, 11, "v11");
	CHECK(manual_complete(&f.m, "users:1", 8, "s8"));
	CHECK_EQ_INT(f.m.calls, 2);
	CHECK_EQ_INT(stats_of(&f).gaps, 2);
	CHECK(manual_complete(&f.m, "users:1", 11, "s11"));
	CHECK_EQ_INT(meta_of(&f).sequence, 11);
	fixture_done(&f);
}

static void
buffer_overflow_keeps_newest_and_recovers(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed, .max_buffered = 2});
	publish(&f, 7, "gap");
	publish(&f, 8, "v8");
	publish(&f, 9, "v9");
	publish(&f, 10, "v10");
	CHECK(manual_complete(&f.m, "users:1", 8, "s8"));
	/* 8 was pushed out by 10; 9, 10 kept and applied */
	CHECK_EQ_INT(meta_of(&f).sequence, 10);
	fixture_done(&f);
}

static void
malformed_message_counts_and_refetches(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	CHECK_EQ_INT(psync_transport_publish_raw(f.t, "users:1", "\x93\x01", 2), PSYNC_OK);
	CHECK_EQ_INT(stats_of(&f).parse_errors, 1);
	CHECK_EQ_INT(f.m.calls, 1);
	CHECK(strcmp(current(&f).name, "v5") == 0);
	/* another key's envelope on this key's channel is malformed too */
	CHECK(manual_complete(&f.m, "users:1", 5, "s5"));
	{
		psync_envelope other = test_envelope("users:2", 6, "intruder");
		test_buf	b = test_encode(&other);

		psync_transport_publish_raw(f.t, "users:1", b.data, b.len);
		free(b.data);
	}
	CHECK_EQ_INT(stats_of(&f).parse_errors, 2);
	CHECK(strcmp(current(&f).name, "s5") == 0);
	fixture_done(&f);
}

static void
unfit_envelope_during_refetch(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");
	psync_envelope broken = test_envelope("users:1", 7, "x");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	psync_replica_resync(f.r);
	broken.value = NULL;		/* in-process envelopes are not decoded */
	psync_transport_publish(f.t, &broken);
	CHECK_EQ_INT(stats_of(&f).parse_errors, 1);
	CHECK(manual_complete(&f.m, "users:1", 6, "s6"));
	CHECK_EQ_INT(f.m.calls, 2);	/* looked again after the snapshot */
	fixture_done(&f);
}

static void
refetch_notice_on_the_bus(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");
	psync_envelope notice = test_envelope("users:1", 6, "");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	notice.op = PSYNC_OP_REFETCH;
	notice.has_value = false;
	notice.sequence = 4;
	psync_transport_publish(f.t, &notice);
	CHECK_EQ_INT(stats_of(&f).ignored_stale, 1);
	CHECK_EQ_INT(f.m.calls, 0);
	notice.sequence = 6;
	psync_transport_publish(f.t, &notice);
	CHECK_EQ_INT(f.m.calls, 1);
	CHECK(manual_complete(&f.m, "users:1", 6, "big"));
	CHECK(strcmp(current(&f).name, "big") == 0);
	fixture_done(&f);
}

/* A table event: op reload on the sync name's key, no value. */
static void
publish_reload(fixture *f, const char *table, uint64_t seq)
{
	psync_envelope ev = test_envelope(table, seq, "");

	ev.op = PSYNC_OP_RELOAD;
	ev.has_value = false;
	ev.schema_version = "1+1";
	ev.schema_version_len = 3;
	CHECK_EQ_INT(psync_transport_publish(f->t, &ev), PSYNC_OK);
}

static void
table_reload_refetches_at_the_same_sequence(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "old");
	psync_envelope env;
	test_buf	b;
	psync_refetch_request *req;

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	publish_reload(&f, "orders", 1);	/* another table: nothing */
	CHECK_EQ_INT(f.m.calls, 0);
	publish_reload(&f, "users", 1);
	CHECK_EQ_INT(f.m.calls, 1);
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_REFETCHING);
	/* the snapshot: same sequence, rewritten value, the new version */
	env = test_envelope("users:1", 5, "new");
	env.op = PSYNC_OP_SNAPSHOT;
	env.has_txid = false;
	env.schema_version = "1+1";
	env.schema_version_len = 3;
	b = test_encode(&env);
	CHECK((req = manual_take(&f.m)) != NULL);
	psync_refetch_complete(req, b.data, b.len);
	free(b.data);
	CHECK(strcmp(current(&f).name, "new") == 0);
	CHECK_EQ_INT(meta_of(&f).sequence, 5);
	CHECK(strcmp(meta_of(&f).schema_version, "1+1") == 0);
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_OK);
	/* a resend of the same event (or an older one) is not acted on again */
	publish_reload(&f, "users", 1);
	CHECK_EQ_INT(f.m.calls, 1);
	CHECK_EQ_INT(stats_of(&f).ignored_stale, 1);
	publish_reload(&f, "users", 2);
	CHECK_EQ_INT(f.m.calls, 2);
	fixture_done(&f);
}

static void
malformed_table_event_refetches(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");
	static const uint8_t junk[] = {0x93, 0x01};

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	CHECK_EQ_INT(psync_transport_publish_raw(f.t, "users", junk, sizeof(junk)), PSYNC_OK);
	CHECK_EQ_INT(f.m.calls, 1);
	CHECK_EQ_INT(stats_of(&f).parse_errors, 1);
	/* a reload notice on the key's own subject is no envelope of the key */
	CHECK(manual_complete(&f.m, "users:1", 5, "v5"));
	{
		psync_envelope ev = test_envelope("users:1", 6, "");

		ev.op = PSYNC_OP_RELOAD;
		ev.has_value = false;
		CHECK_EQ_INT(psync_transport_publish(f.t, &ev), PSYNC_OK);
	}
	CHECK_EQ_INT(f.m.calls, 2);
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_REFETCHING);
	fixture_done(&f);
}

static void
initial_refetch_hydrates_without_seed(void)
{
	fixture		f;

	fixture_init(&f, (fixture_opts) {.refetch = true, .initial_refetch = true});
	CHECK_EQ_INT(f.m.calls, 1);
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_REFETCHING);
	publish(&f, 4, "early");	/* buffered */
	CHECK(manual_complete(&f.m, "users:1", 3, "s3"));
	CHECK_EQ_INT(meta_of(&f).sequence, 4);
	CHECK(strcmp(current(&f).name, "early") == 0);
	fixture_done(&f);
}

static void
lost_without_refetch_goes_stale(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");

	fixture_init(&f, (fixture_opts) {.refetch = false, .seed = &seed});
	psync_replica_resync(f.r);
	CHECK_EQ_INT(meta_of(&f).status, PSYNC_REPLICA_STALE);
	fixture_done(&f);
}

static void
in_order_path_recycles_values(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 1, "v1");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	for (uint64_t s = 2; s <= 100; s++)
		publish(&f, s, "v");
	/* two values alternate: current and the recycled one */
	CHECK_EQ_INT(f.log.allocations, 2);
	CHECK_EQ_INT(f.log.recycled_offers, 98);
	CHECK_EQ_INT(stats_of(&f).applied, 100);
	fixture_done(&f);
}

static void
huge_sequences_compare_correctly(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", PSYNC_MAX_SEQUENCE - 1, "a");
	psync_envelope absurd = test_envelope("users:1", UINT64_MAX, "absurd");

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	publish(&f, PSYNC_MAX_SEQUENCE, "b");
	CHECK_EQ_INT(meta_of(&f).sequence, (int64_t) PSYNC_MAX_SEQUENCE);
	psync_transport_publish(f.t, &absurd);	/* in-process: not decoded */
	CHECK_EQ_INT(stats_of(&f).parse_errors, 1);
	CHECK_EQ_INT(meta_of(&f).sequence, (int64_t) PSYNC_MAX_SEQUENCE);
	fixture_done(&f);
}

static void
dispose_with_refetch_in_flight(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");
	psync_refetch_request *req;
	psync_envelope snap = test_envelope("users:1", 9, "late");
	test_buf	b = test_encode(&snap);

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	publish(&f, 9, "gap");
	publish(&f, 10, "buffered");
	req = manual_take(&f.m);
	CHECK(req != NULL);
	fixture_done(&f);			/* disposes while the request is out */
	psync_refetch_complete(req, b.data, b.len);	/* lands in the void */
	free(b.data);
}

typedef struct completer
{
	manual_refetcher *m;
} completer;

static void *
complete_later(void *arg)
{
	completer  *c = arg;

	usleep(20000);
	manual_complete(c->m, "users:1", 20, "from another thread");
	return NULL;
}

static void
wait_idle_waits_for_refetch(void)
{
	fixture		f;
	psync_envelope seed = test_envelope("users:1", 5, "v5");
	pthread_t	th;
	completer	c = {&f.m};

	fixture_init(&f, (fixture_opts) {.refetch = true, .seed = &seed});
	CHECK_EQ_INT(psync_replica_wait_idle(f.r, 0), PSYNC_OK);
	publish(&f, 9, "gap");
	CHECK_EQ_INT(psync_replica_wait_idle(f.r, 1), PSYNC_ERR_TIMEOUT);
	pthread_create(&th, NULL, complete_later, &c);
	CHECK_EQ_INT(psync_replica_wait_idle(f.r, -1), PSYNC_OK);
	CHECK_EQ_INT(meta_of(&f).sequence, 20);
	pthread_join(th, NULL);
	fixture_done(&f);
}

/* A refetch function that completes at once, inside the call. */
static void
synchronous_refetch(void *ctx, const char *key, psync_refetch_request *req)
{
	psync_envelope env = test_envelope(key, 42, "sync");
	test_buf	b = test_encode(&env);

	(void) ctx;
	psync_refetch_complete(req, b.data, b.len);
	free(b.data);
}

static void
synchronous_refetch_completion(void)
{
	psync_transport *t;
	psync_replica *r;
	psync_replica_options o;
	schema_log	log = {0};
	psync_replica_metadata m;

	psync_inprocess_transport_new(&t);
	psync_replica_options_init(&o);
	o.key = "users:1";
	o.schema = (psync_schema) {test_parse, test_free, &log};
	o.transport = t;
	o.refetch = synchronous_refetch;
	o.initial_refetch = true;
	CHECK_EQ_INT(psync_replica_new(&o, &r), PSYNC_OK);
	psync_replica_meta(r, &m);
	CHECK_EQ_INT(m.sequence, 42);
	CHECK_EQ_INT(m.status, PSYNC_REPLICA_OK);
	psync_replica_destroy(r);
	psync_transport_destroy(t);
	CHECK_EQ_INT(log.allocations, log.frees);
}

static void
visit_raw(void *ctx, const void *value, const psync_replica_metadata *meta)
{
	const psync_raw_value *v = value;

	(void) meta;
	test_value_name(v->data, v->len, ctx, 32);
}

static void
raw_schema_keeps_bytes(void)
{
	psync_transport *t;
	psync_replica *r;
	psync_replica_options o;
	psync_envelope env = test_envelope("users:1", 1, "raw");
	char		name[32] = "";

	psync_inprocess_transport_new(&t);
	psync_replica_options_init(&o);
	o.key = "users:1";
	psync_schema_raw(&o.schema);
	o.transport = t;
	CHECK_EQ_INT(psync_replica_new(&o, &r), PSYNC_OK);
	psync_transport_publish(t, &env);
	psync_replica_get(r, visit_raw, name);
	CHECK(strcmp(name, "raw") == 0);
	psync_replica_destroy(r);
	psync_transport_destroy(t);
}

static void
invalid_options_rejected(void)
{
	psync_transport *t;
	psync_replica *r = (psync_replica *) 1;
	psync_replica_options o;

	psync_inprocess_transport_new(&t);
	psync_replica_options_init(&o);
	o.transport = t;
	psync_schema_raw(&o.schema);
	CHECK_EQ_INT(psync_replica_new(&o, &r), PSYNC_ERR_INVALID_ARGUMENT);	/* no key */
	CHECK(r == NULL);
	o.key = "users:*";
	CHECK_EQ_INT(psync_replica_new(&o, &r), PSYNC_ERR_INVALID_ARGUMENT);
	o.key = "users.1";
	CHECK_EQ_INT(psync_replica_new(&o, &r), PSYNC_ERR_INVALID_ARGUMENT);
	o.key = "users:1";
	o.schema.parse = NULL;
	CHECK_EQ_INT(psync_replica_new(&o, &r), PSYNC_ERR_INVALID_ARGUMENT);
	CHECK_EQ_INT(psync_replica_new(NULL, &r), PSYNC_ERR_INVALID_ARGUMENT);
	CHECK_EQ_INT(psync_transport_key_count(t), 0);
	psync_transport_destroy(t);
	CHECK(strcmp(psync_replica_status_name(PSYNC_REPLICA_REFETCHING), "refetching") == 0);
}

int
main(void)
{
	RUN(starts_stale_and_uninitialised);
	RUN(seed_is_hydrated_through_the_parse_gate);
	RUN(bad_seed_is_skew_and_refetches);
	RUN(malformed_seed_bytes_are_a_parse_error);
	RUN(first_value_ever_seen_is_the_baseline);
	RUN(applies_in_order);
	RUN(stale_and_duplicates_are_ignored);
	RUN(gap_refetches_and_the_result_is_the_new_baseline);
	RUN(refetch_result_reseeds_even_when_older);
	RUN(gap_without_refetch_goes_stale);
	RUN(parse_error_on_receipt_is_skew_keeps_value_and_refetches);
	RUN(parse_error_without_refetch_ends_stale);
	RUN(parse_error_on_refetch_result_does_not_loop);
	RUN(malformed_refetch_bytes_do_not_loop);
	RUN(failed_refetch_goes_stale);
	RUN(delete_applies_nil);
	RUN(one_refetch_in_flight_and_lost_is_remembered);
	RUN(envelopes_during_refetch_are_applied_after_it);
	RUN(buffered_gap_after_snapshot_refetches_again);
	RUN(buffer_overflow_keeps_newest_and_recovers);
	RUN(malformed_message_counts_and_refetches);
	RUN(unfit_envelope_during_refetch);
	RUN(refetch_notice_on_the_bus);
	RUN(table_reload_refetches_at_the_same_sequence);
	RUN(malformed_table_event_refetches);
	RUN(initial_refetch_hydrates_without_seed);
	RUN(lost_without_refetch_goes_stale);
	RUN(in_order_path_recycles_values);
	RUN(huge_sequences_compare_correctly);
	RUN(dispose_with_refetch_in_flight);
	RUN(wait_idle_waits_for_refetch);
	RUN(synchronous_refetch_completion);
	RUN(raw_schema_keeps_bytes);
	RUN(invalid_options_rejected);
	return harness_finish();
}
