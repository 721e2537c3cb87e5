/*
 * test_transport.c — the in-process transport's contract (the seed's
 * InProcessTransport, ported) and the additions: pattern subscriptions,
 * malformed delivery, unsubscribe during delivery, reentrant publish.
 */
#include "harness.h"

typedef struct recorder
{
	char		log[512];
	int			calls;
	psync_transport *t;
	psync_subscription_id *ids;	/* for handlers that (un)subscribe */
	psync_subscription_id added;
	psync_event_kind last_kind;
	psync_decode_error last_error;
	char		last_key[64];
} recorder;

static void
append(recorder *r, const char *tag)
{
	strncat(r->log, tag, sizeof(r->log) - strlen(r->log) - 1);
}

#define DEFINE_TAGGED(name, tag) \
	static void name(void *ctx, const psync_event *ev) \
	{ \
		recorder *r = ctx; \
		r->calls++; \
		r->last_kind = ev->kind; \
		r->last_error = ev->decode_error; \
		snprintf(r->last_key, sizeof(r->last_key), "%.*s", (int) ev->key_len, ev->key); \
		append(r, tag); \
	}
DEFINE_TAGGED(handler_a, "A")
DEFINE_TAGGED(handler_b, "B")
DEFINE_TAGGED(handler_c, "C")

static void
publish_key(psync_transport *t, const char *key, uint64_t seq)
{
	psync_envelope env = test_envelope(key, seq, "x");

	CHECK_EQ_INT(psync_transport_publish(t, &env), PSYNC_OK);
}

static void
publish_without_subscribers_is_a_noop(void)
{
	psync_transport *t;

	CHECK_EQ_INT(psync_inprocess_transport_new(&t), PSYNC_OK);
	publish_key(t, "users:1", 1);
	CHECK_EQ_INT(psync_transport_key_count(t), 0);
	psync_transport_destroy(t);
}

static void
delivers_to_every_subscriber_in_order(void)
{
	psync_transport *t;
	recorder	r = {0};
	psync_subscription_id a, b, c;

	psync_inprocess_transport_new(&t);
	psync_transport_subscribe(t, "users:1", handler_b, &r, &b);
	psync_transport_subscribe(t, "users:1", handler_a, &r, &a);
	psync_transport_subscribe(t, "users:2", handler_c, &r, &c);
	publish_key(t, "users:1", 1);
	CHECK(strcmp(r.log, "BA") == 0);
	CHECK_EQ_INT(r.last_kind, PSYNC_EVENT_ENVELOPE);
	CHECK(strcmp(r.last_key, "users:1") == 0);
	publish_key(t, "users:2", 1);
	CHECK(strcmp(r.log, "BAC") == 0);
	CHECK_EQ_INT(psync_transport_key_count(t), 2);
	CHECK(a != b && b != c && a != 0);
	psync_transport_destroy(t);
}

/* Subscribes handler_c to the same key during delivery. */
static void
subscribing_handler(void *ctx, const psync_event *ev)
{
	recorder   *r = ctx;

	(void) ev;
	append(r, "S");
	if (r->added == 0)
		psync_transport_subscribe(r->t, "users:1", handler_c, r, &r->added);
}

static void
handler_added_during_delivery_misses_that_envelope(void)
{
	psync_transport *t;
	recorder	r = {0};
	psync_subscription_id s;

	psync_inprocess_transport_new(&t);
	r.t = t;
	psync_transport_subscribe(t, "users:1", subscribing_handler, &r, &s);
	publish_key(t, "users:1", 1);
	CHECK(strcmp(r.log, "S") == 0);
	publish_key(t, "users:1", 2);
	CHECK(strcmp(r.log, "SSC") == 0);
	psync_transport_destroy(t);
}

/* Unsubscribes r->ids[0] (a later handler) during delivery. */
static void
unsubscribing_handler(void *ctx, const psync_event *ev)
{
	recorder   *r = ctx;

	(void) ev;
	append(r, "U");
	psync_transport_unsubscribe(r->t, r->ids[0]);
}

static void
handler_removed_during_delivery_is_not_called(void)
{
	psync_transport *t;
	recorder	r = {0};
	psync_subscription_id u, victim;

	psync_inprocess_transport_new(&t);
	r.t = t;
	r.ids = &victim;
	psync_transport_subscribe(t, "users:1", unsubscribing_handler, &r, &u);
	psync_transport_subscribe(t, "users:1", handler_a, &r, &victim);
	publish_key(t, "users:1", 1);
	CHECK(strcmp(r.log, "U") == 0);	/* a C caller may free A's ctx now */
	CHECK_EQ_INT(psync_transport_key_count(t), 1);
	psync_transport_destroy(t);
}

static void
handler_unsubscribing_itself(void)
{
	psync_transport *t;
	recorder	r = {0};
	psync_subscription_id self, other;

	psync_inprocess_transport_new(&t);
	r.t = t;
	r.ids = &self;
	psync_transport_subscribe(t, "users:1", unsubscribing_handler, &r, &self);
	psync_transport_subscribe(t, "users:1", handler_b, &r, &other);
	publish_key(t, "users:1", 1);
	publish_key(t, "users:1", 2);
	CHECK(strcmp(r.log, "UBB") == 0);
	psync_transport_unsubscribe(t, other);
	CHECK_EQ_INT(psync_transport_key_count(t), 0);
	psync_transport_destroy(t);
}

static void
unsubscribe_is_idempotent_and_spares_resubscriptions(void)
{
	psync_transport *t;
	recorder	r = {0};
	psync_subscription_id first, second;

	psync_inprocess_transport_new(&t);
	psync_transport_subscribe(t, "users:1", handler_a, &r, &first);
	psync_transport_unsubscribe(t, first);
	psync_transport_subscribe(t, "users:1", handler_a, &r, &second);	/* same fn, ctx */
	CHECK(second != first);
	psync_transport_unsubscribe(t, first);	/* again: must not remove the new one */
	psync_transport_unsubscribe(t, first);
	psync_transport_unsubscribe(t, 0);
	psync_transport_unsubscribe(t, 0xdeadbeef12345678ULL);
	publish_key(t, "users:1", 1);
	CHECK(strcmp(r.log, "A") == 0);
	CHECK_EQ_INT(psync_transport_key_count(t), 1);
	psync_transport_unsubscribe(t, second);
	psync_transport_unsubscribe(t, second);
	publish_key(t, "users:1", 2);
	CHECK(strcmp(r.log, "A") == 0);
	psync_transport_destroy(t);
}

static void
empty_keys_are_collected(void)
{
	psync_transport *t;
	recorder	r = {0};
	psync_subscription_id ids[100];
	char		key[32];

	psync_inprocess_transport_new(&t);
	for (int i = 0; i < 100; i++)
	{
		snprintf(key, sizeof(key), "users:%d", i % 10);
		CHECK_EQ_INT(psync_transport_subscribe(t, key, handler_a, &r, &ids[i]), PSYNC_OK);
	}
	CHECK_EQ_INT(psync_transport_key_count(t), 10);
	for (int i = 0; i < 90; i++)
		psync_transport_unsubscribe(t, ids[i]);
	CHECK_EQ_INT(psync_transport_key_count(t), 10);
	for (int i = 90; i < 95; i++)
		psync_transport_unsubscribe(t, ids[i]);
	CHECK_EQ_INT(psync_transport_key_count(t), 5);
	for (int i = 95; i < 100; i++)
		psync_transport_unsubscribe(t, ids[i]);
	CHECK_EQ_INT(psync_transport_key_count(t), 0);
	psync_transport_destroy(t);
}

static void
table_pattern_gets_every_key_of_the_table(void)
{
	psync_transport *t;
	recorder	r = {0},
				exact = {0};
	psync_subscription_id p, e;

	psync_inprocess_transport_new(&t);
	CHECK_EQ_INT(psync_transport_subscribe(t, "users:*", handler_a, &r, &p), PSYNC_OK);
	CHECK_EQ_INT(psync_transport_subscribe(t, "users:1", handler_b, &exact, &e), PSYNC_OK);
	CHECK_EQ_INT(psync_transport_key_count(t), 2);
	publish_key(t, "users:1", 1);
	publish_key(t, "users:2", 1);
	publish_key(t, "users2:1", 1);
	publish_key(t, "orders:1:2", 1);
	CHECK_EQ_INT(r.calls, 2);
	CHECK(strcmp(r.last_key, "users:2") == 0);
	CHECK_EQ_INT(exact.calls, 1);
	psync_transport_unsubscribe(t, p);
	publish_key(t, "users:3", 1);
	CHECK_EQ_INT(r.calls, 2);
	psync_transport_unsubscribe(t, e);
	CHECK_EQ_INT(psync_transport_key_count(t), 0);
	psync_transport_destroy(t);
}

static void
invalid_keys_are_refused(void)
{
	static const char *const bad[] = {"", "users.1", "users:>", "a b", "*", "users:1*",
	"bad.table:*", ":*", "caf\xc3\xa9:1"};
	psync_transport *t;
	recorder	r = {0};
	psync_subscription_id id = 7;
	psync_envelope env = test_envelope("users.1", 1, "x");

	psync_inprocess_transport_new(&t);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_EQ_INT(psync_transport_subscribe(t, bad[i], handler_a, &r, &id), PSYNC_ERR_INVALID_ARGUMENT);
	CHECK_EQ_INT(psync_transport_subscribe(t, "users:1", NULL, &r, &id), PSYNC_ERR_INVALID_ARGUMENT);
	CHECK_EQ_INT(psync_transport_publish(t, &env), PSYNC_ERR_INVALID_ARGUMENT);
	CHECK_EQ_INT(psync_transport_publish_raw(t, "users>", "", 0), PSYNC_ERR_INVALID_ARGUMENT);
	CHECK_EQ_INT(psync_transport_key_count(t), 0);
	psync_transport_destroy(t);
}

static void
malformed_bytes_arrive_as_malformed(void)
{
	psync_transport *t;
	recorder	r = {0};
	psync_subscription_id id;
	psync_envelope env = test_envelope("users:1", 3, "x");
	test_buf	b = test_encode(&env);

	psync_inprocess_transport_new(&t);
	psync_transport_subscribe(t, "users:1", handler_a, &r, &id);
	psync_transport_publish_raw(t, "users:1", b.data, b.len - 1);
	CHECK_EQ_INT(r.last_kind, PSYNC_EVENT_MALFORMED);
	CHECK_EQ_INT(r.last_error, PSYNC_DECODE_TRUNCATED);
	CHECK(strcmp(r.last_key, "users:1") == 0);
	psync_transport_publish_raw(t, "users:1", b.data, b.len);
	CHECK_EQ_INT(r.last_kind, PSYNC_EVENT_ENVELOPE);
	CHECK_EQ_INT(r.calls, 2);
	free(b.data);
	psync_transport_destroy(t);
}

/* Publishes a follow-up on another key from inside delivery. */
static void
republishing_handler(void *ctx, const psync_event *ev)
{
	recorder   *r = ctx;

	append(r, "R");
	if (ev->envelope->sequence == 1)
		publish_key(r->t, "users:2", 2);
}

static void
publish_from_a_handler(void)
{
	psync_transport *t;
	recorder	r = {0};
	psync_subscription_id a, b;

	psync_inprocess_transport_new(&t);
	r.t = t;
	psync_transport_subscribe(t, "users:1", republishing_handler, &r, &a);
	psync_transport_subscribe(t, "users:2", handler_b, &r, &b);
	publish_key(t, "users:1", 1);
	CHECK(strcmp(r.log, "RB") == 0);
	psync_transport_destroy(t);
}

static void
many_subscribers_on_one_key(void)
{
	psync_transport *t;
	recorder	r = {0};
	psync_subscription_id ids[100];

	psync_inprocess_transport_new(&t);
	for (int i = 0; i < 100; i++)
		psync_transport_subscribe(t, "users:1", handler_a, &r, &ids[i]);
	publish_key(t, "users:1", 1);
	CHECK_EQ_INT(r.calls, 100);	/* beyond the on-stack snapshot */
	CHECK_EQ_INT(psync_transport_key_count(t), 1);
	psync_transport_destroy(t);		/* with live subscribers */
}

int
main(void)
{
	RUN(publish_without_subscribers_is_a_noop);
	RUN(delivers_to_every_subscriber_in_order);
	RUN(handler_added_during_delivery_misses_that_envelope);
	RUN(handler_removed_during_delivery_is_not_called);
	RUN(handler_unsubscribing_itself);
	RUN(unsubscribe_is_idempotent_and_spares_resubscriptions);
	RUN(empty_keys_are_collected);
	RUN(table_pattern_gets_every_key_of_the_table);
	RUN(invalid_keys_are_refused);
	RUN(malformed_bytes_arrive_as_malformed);
	RUN(publish_from_a_handler);
	RUN(many_subscribers_on_one_key);
	return harness_finish();
}
