/*
 * test_nats.c — the NATS transport against a real nats-server (started here
 * on free loopback ports): subject mapping, one NATS subscription per key
 * shared and torn down with the last subscriber, decode once / fan out,
 * malformed payloads, table patterns, subject prefixes, the 'table'
 * subject layout, LOST after a
 * reconnect and after a slow-consumer error, and subscriptions coming and
 * going on several threads while messages for them keep arriving.
 */
#include <pthread.h>
#include <stdatomic.h>

#include <nats/nats.h>

#include "harness.h"
#include "live.h"

static int	nats_port,
			monitor_port;
static pid_t nats_pid;
static char nats_url[64];

static psync_transport *
connect_transport(const char *prefix)
{
	psync_nats_options o;
	psync_transport *t = NULL;

	psync_nats_options_init(&o);
	o.url = nats_url;
	o.reconnect_wait_ms = 50;
	if (prefix != NULL)
		o.subject_prefix = prefix;
	CHECK_EQ_INT(psync_nats_transport_connect(&o, &t), PSYNC_OK);
	return t;
}

typedef struct inbox
{
	atomic_int	envelopes;
	atomic_int	malformed;
	atomic_int	lost;
	atomic_uint_fast64_t last_sequence;
	const psync_envelope *_Atomic last_envelope;
	char		last_key[64];
	pthread_mutex_t lock;
	pthread_cond_t release;
	atomic_bool block;			/* first handler call waits for release */
	atomic_bool blocked;
} inbox;

static void
inbox_init(inbox *in)
{
	memset(in, 0, sizeof(*in));
	pthread_mutex_init(&in->lock, NULL);
	pthread_cond_init(&in->release, NULL);
}

static void
inbox_handler(void *ctx, const psync_event *ev)
{
	inbox	   *in = ctx;

	if (ev->kind == PSYNC_EVENT_LOST)
	{
		atomic_fetch_add(&in->lost, 1);
		return;
	}
	pthread_mutex_lock(&in->lock);
	snprintf(in->last_key, sizeof(in->last_key), "%.*s", (int) ev->key_len, ev->key);
	pthread_mutex_unlock(&in->lock);
	if (ev->kind == PSYNC_EVENT_MALFORMED)
		atomic_fetch_add(&in->malformed, 1);
	else
	{
		atomic_store(&in->last_sequence, ev->envelope->sequence);
		atomic_store(&in->last_envelope, ev->envelope);
		atomic_fetch_add(&in->envelopes, 1);
	}
	if (atomic_exchange(&in->block, false))
	{
		pthread_mutex_lock(&in->lock);
		atomic_store(&in->blocked, true);
		pthread_cond_wait(&in->release, &in->lock);
		pthread_mutex_unlock(&in->lock);
	}
}

static void
publish(psync_transport *t, const char *key, uint64_t seq)
{
	psync_envelope env = test_envelope(key, seq, "x");

	CHECK_EQ_INT(psync_transport_publish(t, &env), PSYNC_OK);
}

static void
envelopes_cross_between_connections(void)
{
	psync_transport *pub = connect_transport(NULL),
			   *sub = connect_transport(NULL);
	inbox		in;
	psync_subscription_id id;

	inbox_init(&in);
	CHECK_EQ_INT(psync_transport_subscribe(sub, "users:1", inbox_handler, &in, &id), PSYNC_OK);
	CHECK_EQ_INT(psync_transport_flush(sub, 5000), PSYNC_OK);
	for (uint64_t s = 1; s <= 100; s++)
		publish(pub, "users:1", s);
	publish(pub, "users:2", 1);	/* another subject: not delivered */
	CHECK_EQ_INT(psync_transport_flush(pub, 5000), PSYNC_OK);
	CHECK(LIVE_WAIT_FOR(atomic_load(&in.envelopes) == 100, 10));
	CHECK_EQ_INT(atomic_load(&in.last_sequence), 100);
	CHECK(strcmp(in.last_key, "users:1") == 0);
	psync_transport_unsubscribe(sub, id);
	psync_transport_destroy(sub);
	psync_transport_destroy(pub);
}

static void
one_nats_subscription_per_key(void)
{
	psync_transport *t = connect_transport(NULL);
	inbox		a,
				b;
	psync_subscription_id ids[3];
	long		base = live_nats_subscriptions(monitor_port);

	inbox_init(&a);
	inbox_init(&b);
	CHECK(base >= 0);
	psync_transport_subscribe(t, "users:1", inbox_handler, &a, &ids[0]);
	psync_transport_subscribe(t, "users:1", inbox_handler, &b, &ids[1]);
	psync_transport_subscribe(t, "users:1", inbox_handler, &b, &ids[2]);
	psync_transport_flush(t, 5000);
	CHECK_EQ_INT(live_nats_subscriptions(monitor_port), base + 1);
	CHECK_EQ_INT(psync_transport_key_count(t), 1);

	/* decode once, fan out: every local handler sees the same envelope */
	publish(t, "users:1", 7);
	psync_transport_flush(t, 5000);
	CHECK(LIVE_WAIT_FOR(atomic_load(&a.envelopes) == 1 && atomic_load(&b.envelopes) == 2, 10));
	CHECK(atomic_load(&a.last_envelope) == atomic_load(&b.last_envelope));

	psync_transport_unsubscribe(t, ids[0]);
	psync_transport_unsubscribe(t, ids[1]);
	psync_transport_flush(t, 5000);
	CHECK_EQ_INT(live_nats_subscriptions(monitor_port), base + 1);
	psync_transport_unsubscribe(t, ids[2]);	/* the last one: the NATS sub goes */
	psync_transport_flush(t, 5000);
	CHECK(LIVE_WAIT_FOR(live_nats_subscriptions(monitor_port) == base, 5));
	CHECK_EQ_INT(psync_transport_key_count(t), 0);
	psync_transport_unsubscribe(t, ids[2]);	/* idempotent */
	psync_transport_destroy(t);
}

static void
malformed_payload_is_delivered_as_malformed(void)
{
	psync_transport *t = connect_transport(NULL);
	inbox		in;
	psync_subscription_id id;

	inbox_init(&in);
	psync_transport_subscribe(t, "users:1", inbox_handler, &in, &id);
	psync_transport_flush(t, 5000);
	CHECK_EQ_INT(psync_transport_publish_raw(t, "users:1", "\xde\xff\xff", 3), PSYNC_OK);
	CHECK_EQ_INT(psync_transport_publish_raw(t, "users:1", "", 0), PSYNC_OK);
	psync_transport_flush(t, 5000);
	CHECK(LIVE_WAIT_FOR(atomic_load(&in.malformed) == 2, 10));
	CHECK_EQ_INT(atomic_load(&in.envelopes), 0);
	psync_transport_destroy(t);	/* with a live subscription */
}

static void
table_pattern_filters_on_the_subject(void)
{
	psync_transport *t = connect_transport(NULL);
	inbox		in;
	psync_subscription_id id;
	long		base = live_nats_subscriptions(monitor_port);

	inbox_init(&in);
	CHECK_EQ_INT(psync_transport_subscribe(t, "users:*", inbox_handler, &in, &id), PSYNC_OK);
	psync_transport_flush(t, 5000);
	CHECK_EQ_INT(live_nats_subscriptions(monitor_port), base + 1);
	publish(t, "orders:1", 1);
	publish(t, "users2:1", 1);
	publish(t, "users:1", 1);
	publish(t, "users:2", 5);
	psync_transport_flush(t, 5000);
	CHECK(LIVE_WAIT_FOR(atomic_load(&in.envelopes) == 2, 10));
	CHECK(strcmp(in.last_key, "users:2") == 0);
	CHECK_EQ_INT(atomic_load(&in.last_sequence), 5);
	/* "users:" (primary key '': one empty part) is a key of the table too */
	publish(t, "users:", 7);
	psync_transport_flush(t, 5000);
	CHECK(LIVE_WAIT_FOR(atomic_load(&in.envelopes) == 3, 10));
	CHECK(strcmp(in.last_key, "users:") == 0);
	psync_transport_unsubscribe(t, id);
	psync_transport_flush(t, 5000);
	CHECK(LIVE_WAIT_FOR(live_nats_subscriptions(monitor_port) == base, 5));
	psync_transport_destroy(t);
}

static void
subject_prefix_is_honoured(void)
{
	psync_transport *app = connect_transport("app.synced"),
			   *dflt = connect_transport(NULL);
	natsConnection *raw = NULL;
	natsSubscription *rawsub = NULL;
	natsMsg    *msg = NULL;
	inbox		in_app,
				in_dflt;
	psync_subscription_id a,
				d;
	psync_transport *bad = NULL;
	psync_nats_options o;

	inbox_init(&in_app);
	inbox_init(&in_dflt);
	CHECK_EQ_INT(natsConnection_ConnectTo(&raw, nats_url), NATS_OK);
	CHECK_EQ_INT(natsConnection_SubscribeSync(&rawsub, raw, "app.synced.users:1"), NATS_OK);
	natsConnection_Flush(raw);
	psync_transport_subscribe(app, "users:1", inbox_handler, &in_app, &a);
	psync_transport_subscribe(dflt, "users:1", inbox_handler, &in_dflt, &d);
	psync_transport_flush(app, 5000);
	psync_transport_flush(dflt, 5000);
	publish(app, "users:1", 3);
	psync_transport_flush(app, 5000);
	CHECK(LIVE_WAIT_FOR(atomic_load(&in_app.envelopes) == 1, 10));
	CHECK_EQ_INT(natsSubscription_NextMsg(&msg, rawsub, 5000), NATS_OK);
	natsMsg_Destroy(msg);
	psync_transport_flush(dflt, 5000);
	CHECK_EQ_INT(atomic_load(&in_dflt.envelopes), 0);
	psync_nats_options_init(&o);
	o.url = nats_url;
	o.subject_prefix = "bad.*";
	CHECK_EQ_INT(psync_nats_transport_connect(&o, &bad), PSYNC_ERR_INVALID_ARGUMENT);
	natsSubscription_Destroy(rawsub);
	natsConnection_Destroy(raw);
	psync_transport_destroy(app);
	psync_transport_destroy(dflt);
}

/* Publish an encoded envelope for key on subject from a plain connection. */
static void
raw_publish(natsConnection *raw, const char *subject, const char *key)
{
	psync_envelope e = test_envelope(key, 1, "x");
	test_buf	b = test_encode(&e);

	CHECK_EQ_INT(natsConnection_Publish(raw, subject, b.data, (int) b.len), NATS_OK);
	free(b.data);
}

/* Is subject one of the server's subscriptions (/connz?subs=1)? */
static bool
server_has_subscription(const char *subject)
{
	static char buf[1 << 16];
	char		quoted[256];
	size_t		n = 0;
	const char *body = live_http_get(monitor_port, "/connz?subs=1", buf, sizeof(buf));

	/* as the JSON writes it, '>' escaped */
	quoted[n++] = '"';
	for (const char *c = subject; *c != '\0' && n < sizeof(quoted) - 8; c++)
	{
		if (*c == '>')
		{
			memcpy(quoted + n, "\\u003e", 6);
			n += 6;
		}
		else
			quoted[n++] = *c;
	}
	quoted[n++] = '"';
	quoted[n] = '\0';
	return body != NULL && strstr(body, quoted) != NULL;
}

/*
 * Tables in the 'table' subject layout (the table_layout option): keys and
 * patterns subscribe to "<prefix>.<table>.<key>" / "<prefix>.<table>.>",
 * so the server, not the client, selects the table; other tables keep the
 * default layout; publish uses the same subjects; bad names are refused.
 */
static void
table_layout_subscribes_on_the_server(void)
{
	static const char *const layout[] = {"orders", NULL};
	static const char *const bad_layout[] = {"orders", "no.dots", NULL};
	psync_nats_options o;
	psync_transport *t = NULL,
			   *bad = NULL;
	natsConnection *raw = NULL;
	natsSubscription *rawsub = NULL;
	natsMsg    *msg = NULL;
	inbox		in_orders,
				in_order1,
				in_users;
	psync_subscription_id a,
				b,
				c;

	inbox_init(&in_orders);
	inbox_init(&in_order1);
	inbox_init(&in_users);
	psync_nats_options_init(&o);
	o.url = nats_url;
	o.table_layout = layout;
	CHECK_EQ_INT(psync_nats_transport_connect(&o, &t), PSYNC_OK);
	if (t == NULL)
		return;
	CHECK_EQ_INT(psync_transport_subscribe(t, "orders:*", inbox_handler, &in_orders, &a), PSYNC_OK);
	CHECK_EQ_INT(psync_transport_subscribe(t, "orders:1", inbox_handler, &in_order1, &b), PSYNC_OK);
	CHECK_EQ_INT(psync_transport_subscribe(t, "users:*", inbox_handler, &in_users, &c), PSYNC_OK);
	psync_transport_flush(t, 5000);
	CHECK(server_has_subscription("synced.orders.>"));
	CHECK(server_has_subscription("synced.orders.orders:1"));
	CHECK(server_has_subscription("synced.*"));	/* users: default layout */

	/* what the publisher sends, from a plain NATS connection */
	CHECK_EQ_INT(natsConnection_ConnectTo(&raw, nats_url), NATS_OK);
	raw_publish(raw, "synced.orders.orders:1", "orders:1");
	raw_publish(raw, "synced.orders.orders:2", "orders:2");
	raw_publish(raw, "synced.users:1", "users:1");
	/* orders in the key layout: not this transport's subject for orders */
	raw_publish(raw, "synced.orders:3", "orders:3");
	natsConnection_Flush(raw);
	CHECK(LIVE_WAIT_FOR(atomic_load(&in_orders.envelopes) == 2 &&
						atomic_load(&in_order1.envelopes) == 1 &&
						atomic_load(&in_users.envelopes) == 1, 10));
	psync_transport_flush(t, 5000);
	usleep(100 * 1000);
	CHECK_EQ_INT(atomic_load(&in_orders.envelopes), 2);
	CHECK_EQ_INT(atomic_load(&in_users.envelopes), 1);
	CHECK(strcmp(in_order1.last_key, "orders:1") == 0);
	CHECK(strcmp(in_users.last_key, "users:1") == 0);

	/* publish goes to the table's subject */
	CHECK_EQ_INT(natsConnection_SubscribeSync(&rawsub, raw, "synced.orders.orders:9"), NATS_OK);
	natsConnection_Flush(raw);
	publish(t, "orders:9", 4);
	psync_transport_flush(t, 5000);
	CHECK_EQ_INT(natsSubscription_NextMsg(&msg, rawsub, 5000), NATS_OK);
	natsMsg_Destroy(msg);
	CHECK(LIVE_WAIT_FOR(atomic_load(&in_orders.envelopes) == 3, 10));

	psync_transport_unsubscribe(t, a);
	psync_transport_unsubscribe(t, b);
	psync_transport_unsubscribe(t, c);
	psync_nats_options_init(&o);
	o.url = nats_url;
	o.table_layout = bad_layout;
	CHECK_EQ_INT(psync_nats_transport_connect(&o, &bad), PSYNC_ERR_INVALID_ARGUMENT);
	natsSubscription_Destroy(rawsub);
	natsConnection_Destroy(raw);
	psync_transport_destroy(t);
}

static void
connect_failure_is_reported(void)
{
	psync_nats_options o;
	psync_transport *t = (psync_transport *) 1;
	char		url[64];

	psync_nats_options_init(&o);
	snprintf(url, sizeof(url), "nats://127.0.0.1:%d", live_free_port());
	o.url = url;
	o.connect_timeout_ms = 500;
	CHECK_EQ_INT(psync_nats_transport_connect(&o, &t), PSYNC_ERR_NATS);
	CHECK(t == NULL);
}

/* ---- LOST: reconnect, slow consumer ---- */

static atomic_int refetches;

static void
counting_refetch(void *ctx, const char *key, psync_refetch_request *req)
{
	(void) ctx;
	(void) key;
	atomic_fetch_add(&refetches, 1);
	psync_refetch_fail(req, "test: no database");
}

static void
reconnect_makes_every_replica_refetch(void)
{
	psync_transport *t = connect_transport(NULL);
	psync_replica *r[2];
	psync_replica_options o;
	inbox		in;
	psync_subscription_id id;

	inbox_init(&in);
	for (int i = 0; i < 2; i++)
	{
		psync_replica_options_init(&o);
		o.key = i == 0 ? "users:1" : "orders:9";
		psync_schema_raw(&o.schema);
		o.transport = t;
		o.refetch = counting_refetch;
		CHECK_EQ_INT(psync_replica_new(&o, &r[i]), PSYNC_OK);
	}
	psync_transport_subscribe(t, "users:*", inbox_handler, &in, &id);
	psync_transport_flush(t, 5000);
	atomic_store(&refetches, 0);

	live_stop(nats_pid);
	nats_pid = live_start_nats(nats_port, monitor_port);
	CHECK(nats_pid > 0);
	CHECK(LIVE_WAIT_FOR(atomic_load(&refetches) == 2, 20));
	CHECK_EQ_INT(atomic_load(&in.lost), 1);
	/* and the subscriptions came back with the connection */
	publish(t, "users:1", 1);
	psync_transport_flush(t, 5000);
	CHECK(LIVE_WAIT_FOR(atomic_load(&in.envelopes) == 1, 10));
	for (int i = 0; i < 2; i++)
		psync_replica_destroy(r[i]);
	psync_transport_destroy(t);
}

static void
slow_consumer_makes_subscribers_resync(void)
{
	psync_transport *pub = connect_transport(NULL),
			   *sub = connect_transport(NULL);
	inbox		slow,
				other;
	psync_subscription_id s,
				o;
	psync_envelope env = test_envelope("users:1", 1, "x");
	test_buf	b = test_encode(&env);

	inbox_init(&slow);
	inbox_init(&other);
	atomic_store(&slow.block, true);
	psync_transport_subscribe(sub, "users:1", inbox_handler, &slow, &s);
	psync_transport_subscribe(sub, "orders:1", inbox_handler, &other, &o);
	psync_transport_flush(sub, 5000);
	publish(pub, "users:1", 1);
	psync_transport_flush(pub, 5000);
	CHECK(LIVE_WAIT_FOR(atomic_load(&slow.blocked), 10));
	/* nats.c's default pending limit is 65536 messages per subscription */
	for (int i = 0; i < 70000; i++)
		psync_transport_publish_raw(pub, "users:1", b.data, b.len);
	psync_transport_flush(pub, 20000);
	CHECK(LIVE_WAIT_FOR(atomic_load(&other.lost) >= 1, 20));
	pthread_mutex_lock(&slow.lock);
	pthread_cond_broadcast(&slow.release);
	pthread_mutex_unlock(&slow.lock);
	free(b.data);
	psync_transport_destroy(sub);
	psync_transport_destroy(pub);
}

/* ---- churn: subscriptions come and go while traffic flows ---- */

typedef struct churn_ctx
{
	psync_transport *t;
	atomic_bool stop;
	int			seed;
} churn_ctx;

static void *
churn_publisher(void *arg)
{
	churn_ctx  *c = arg;
	uint64_t	seq = 0;
	char		key[32];

	while (!atomic_load(&c->stop))
	{
		snprintf(key, sizeof(key), "churn:%d", (int) (seq % 8));
		publish(c->t, key, ++seq);
	}
	return NULL;
}

static void *
churn_subscriber(void *arg)
{
	churn_ctx  *c = arg;
	unsigned	rnd = (unsigned) c->seed;
	inbox		in;

	inbox_init(&in);
	for (int i = 0; i < 150; i++)
	{
		psync_subscription_id id;
		char		key[32];

		rnd = rnd * 1103515245u + 12345u;
		snprintf(key, sizeof(key), "churn:%u", (rnd >> 16) % 8);
		if (psync_transport_subscribe(c->t, key, inbox_handler, &in, &id) == PSYNC_OK)
			psync_transport_unsubscribe(c->t, id);
	}
	return NULL;
}

static void
subscription_churn_under_traffic(void)
{
	churn_ctx	pubc = {0},
				subc[3];
	pthread_t	pub,
				subs[3];
	long		base = live_nats_subscriptions(monitor_port);
	psync_transport *t = connect_transport(NULL);

	pubc.t = connect_transport(NULL);
	pthread_create(&pub, NULL, churn_publisher, &pubc);
	for (int i = 0; i < 3; i++)
	{
		subc[i] = (churn_ctx) {.t = t, .seed = i + 1};
		pthread_create(&subs[i], NULL, churn_subscriber, &subc[i]);
	}
	for (int i = 0; i < 3; i++)
		pthread_join(subs[i], NULL);
	atomic_store(&pubc.stop, true);
	pthread_join(pub, NULL);
	CHECK_EQ_INT(psync_transport_key_count(t), 0);
	psync_transport_flush(t, 5000);
	CHECK(LIVE_WAIT_FOR(live_nats_subscriptions(monitor_port) == base, 5));
	psync_transport_destroy(t);
	psync_transport_destroy(pubc.t);
}

int
main(void)
{
	nats_port = live_free_port();
	monitor_port = live_free_port();
	nats_pid = live_start_nats(nats_port, monitor_port);
	if (nats_pid <= 0)
	{
		printf("not ok - nats-server could not be started (%s)\n", live_nats_server_path());
		return 1;
	}
	snprintf(nats_url, sizeof(nats_url), "nats://127.0.0.1:%d", nats_port);
	RUN(envelopes_cross_between_connections);
	RUN(one_nats_subscription_per_key);
	RUN(malformed_payload_is_delivered_as_malformed);
	RUN(table_pattern_filters_on_the_subject);
	RUN(subject_prefix_is_honoured);
	RUN(table_layout_subscribes_on_the_server);
	RUN(connect_failure_is_reported);
	RUN(reconnect_makes_every_replica_refetch);
	RUN(slow_consumer_makes_subscribers_resync);
	RUN(subscription_churn_under_traffic);
	live_stop(nats_pid);
	return harness_finish();
}
