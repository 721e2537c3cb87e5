/*
 * test_scope_live.c — scoped subjects and subject permissions with a real
 * nats-server (no PostgreSQL): the server runs with an authorization block
 * of three users — a publisher allowed "synced.>", and acme and globex,
 * each allowed to subscribe to its own scope ("synced.*.<scope>.>") and
 * the table's events ("synced.orders.orders") only (docs/publisher.md
 * "Scoped streams").  Envelopes published through the transport go to the
 * scope subjects of docs/protocol.md "Scopes"; a scope pattern receives
 * its scope's only; the server's refusal of another scope, of the whole
 * table and of one key everywhere is reported by subscribe (status and
 * text), by a replica and by a collection; and a refusal that comes later
 * (the server's configuration reloaded without the permission) reaches
 * the subscribers as PSYNC_EVENT_REFUSED.
 */
#include <pthread.h>
#include <stdatomic.h>

#include <nats/nats.h>

#include "harness.h"
#include "live.h"

static int	nats_port;
static pid_t nats_pid;
static char conf_path[64];

static void
write_conf(bool acme_allowed)
{
	FILE	   *f = fopen(conf_path, "w");

	fprintf(f,
			"listen: 127.0.0.1:%d\n"
			"authorization {\n"
			"  users: [\n"
			"    {user: publisher, password: pub, permissions: {publish: [\"synced.>\"], subscribe: [\"synced.>\", \"_INBOX.>\"]}}\n"
			"    {user: acme, password: a, permissions: {publish: [\"_INBOX.>\"], subscribe: [%s \"synced.orders.orders\", \"_INBOX.>\"]}}\n"
			"    {user: globex, password: g, permissions: {publish: [\"_INBOX.>\"], subscribe: [\"synced.*.globex.>\", \"synced.orders.orders\", \"_INBOX.>\"]}}\n"
			"  ]\n"
			"}\n", nats_port, acme_allowed ? "\"synced.*.acme.>\"," : "");
	fclose(f);
}

static pid_t
start_nats_with_conf(void)
{
	pid_t		pid = fork();

	if (pid == 0)
	{
		int			devnull = open("/dev/null", O_WRONLY);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(devnull, 1);
		dup2(devnull, 2);
		execlp(live_nats_server_path(), "nats-server", "-c", conf_path, NULL);
		_exit(127);
	}
	if (pid < 0 || !LIVE_WAIT_FOR(live_port_open(nats_port), 10))
		return -1;
	return pid;
}

static psync_transport *
connect_as(const char *user, const char *password)
{
	static const char *const scoped[] = {"orders", NULL};
	psync_nats_options o;
	psync_transport *t = NULL;
	char		url[128];

	snprintf(url, sizeof(url), "nats://%s:%s@127.0.0.1:%d", user, password, nats_port);
	psync_nats_options_init(&o);
	o.url = url;
	o.scoped_tables = scoped;
	o.max_reconnect = -1;
	CHECK_EQ_INT(psync_nats_transport_connect(&o, &t), PSYNC_OK);
	return t;
}

typedef struct seen
{
	atomic_int	envelopes;
	atomic_int	acme;
	atomic_int	other;
	atomic_int	refused;
	char		detail[256];
} seen;

static void
on_seen(void *ctx, const psync_event *ev)
{
	seen	   *s = ctx;

	if (ev->kind == PSYNC_EVENT_REFUSED)
	{
		snprintf(s->detail, sizeof(s->detail), "%s", ev->detail ? ev->detail : "");
		atomic_fetch_add(&s->refused, 1);
		return;
	}
	if (ev->kind != PSYNC_EVENT_ENVELOPE)
		return;
	atomic_fetch_add(&s->envelopes, 1);
	if (ev->envelope->scope != NULL && ev->envelope->scope_len == 4 &&
		memcmp(ev->envelope->scope, "acme", 4) == 0)
		atomic_fetch_add(&s->acme, 1);
	else
		atomic_fetch_add(&s->other, 1);
}

static void
publish_in(psync_transport *t, const char *key, uint64_t seq, const char *scope)
{
	psync_envelope env = test_envelope(key, seq, "x");

	env.scope = scope;
	env.scope_len = strlen(scope);
	CHECK_EQ_INT(psync_transport_publish(t, &env), PSYNC_OK);
}

/* The subjects a raw subscriber of "synced.>" sees for what the transport publishes. */
typedef struct subjects
{
	pthread_mutex_t lock;
	char		list[1024];
	atomic_int	n;
} subjects;

static void
record_subject(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	subjects   *s = closure;

	(void) nc;
	(void) sub;
	pthread_mutex_lock(&s->lock);
	strncat(s->list, natsMsg_GetSubject(msg), sizeof(s->list) - strlen(s->list) - 2);
	strcat(s->list, " ");
	pthread_mutex_unlock(&s->lock);
	atomic_fetch_add(&s->n, 1);
	natsMsg_Destroy(msg);
}

static void
scoped_subjects_and_filtering(void)
{
	psync_transport *pub = connect_as("publisher", "pub");
	psync_transport *acme = connect_as("acme", "a");
	psync_envelope event;
	natsConnection *raw = NULL;
	natsSubscription *rs = NULL;
	subjects	subj = {PTHREAD_MUTEX_INITIALIZER, "", 0};
	seen		mine = {0};
	psync_subscription_id id = 0;
	char		url[128];

	snprintf(url, sizeof(url), "nats://publisher:pub@127.0.0.1:%d", nats_port);
	CHECK_EQ_INT(natsConnection_ConnectTo(&raw, url), NATS_OK);
	CHECK_EQ_INT(natsConnection_Subscribe(&rs, raw, "synced.>", record_subject, &subj), NATS_OK);
	CHECK_EQ_INT(natsConnection_FlushTimeout(raw, 5000), NATS_OK);
	CHECK_EQ_INT(psync_transport_subscribe(acme, "orders@acme:*", on_seen, &mine, &id), PSYNC_OK);

	publish_in(pub, "orders:1", 1, "acme");
	publish_in(pub, "orders:2", 1, "globex");
	publish_in(pub, "orders:3", 1, "acme");
	event = test_reload_event("orders", "1");
	CHECK_EQ_INT(psync_transport_publish(pub, &event), PSYNC_OK);
	CHECK_EQ_INT(psync_transport_flush(pub, 5000), PSYNC_OK);
	CHECK(LIVE_WAIT_FOR(atomic_load(&subj.n) == 4 && atomic_load(&mine.envelopes) == 2, 10));
	CHECK(strcmp(subj.list, "synced.orders.acme.orders:1 synced.orders.globex.orders:2 "
				 "synced.orders.acme.orders:3 synced.orders.orders ") == 0);
	if (strcmp(subj.list, "synced.orders.acme.orders:1 synced.orders.globex.orders:2 "
			   "synced.orders.acme.orders:3 synced.orders.orders ") != 0)
		fprintf(stderr, "  subjects: %s\n", subj.list);
	CHECK_EQ_INT(atomic_load(&mine.acme), 2);
	CHECK_EQ_INT(atomic_load(&mine.other), 0);
	/* a row of a table with a scope needs its scope to be published */
	{
		psync_envelope bare = test_envelope("orders:9", 1, "x");

		CHECK_EQ_INT(psync_transport_publish(pub, &bare), PSYNC_ERR_INVALID_ARGUMENT);
	}
	psync_transport_unsubscribe(acme, id);
	natsSubscription_Destroy(rs);
	natsConnection_Destroy(raw);
	psync_transport_destroy(acme);
	psync_transport_destroy(pub);
}

static void
refusals_are_reported(void)
{
	psync_transport *acme = connect_as("acme", "a");
	seen		s = {0};
	psync_subscription_id id = 7;
	char		text[512];

	/* another scope, the whole table: refused, with the server's text */
	CHECK_EQ_INT(psync_transport_subscribe(acme, "orders@globex:*", on_seen, &s, &id), PSYNC_ERR_PERMISSION);
	CHECK_EQ_INT(id, 0);
	psync_transport_last_error(acme, text, sizeof(text));
	if (strstr(text, "synced.orders.globex.>") == NULL || strcasestr(text, "permissions violation") == NULL)
		fprintf(stderr, "  last error: %s\n", text);
	CHECK(strstr(text, "synced.orders.globex.>") != NULL);
	CHECK(strcasestr(text, "permissions violation") != NULL);
	CHECK_EQ_INT(psync_transport_subscribe(acme, "orders:*", on_seen, &s, &id), PSYNC_ERR_PERMISSION);
	CHECK_EQ_INT(psync_transport_key_count(acme), 0);
	/* its own scope still works on the same connection */
	CHECK_EQ_INT(psync_transport_subscribe(acme, "orders@acme:*", on_seen, &s, &id), PSYNC_OK);
	psync_transport_unsubscribe(acme, id);

	/* a replica of one key follows it into every scope: not allowed for acme */
	{
		psync_replica_options o;
		psync_replica *r = NULL;

		psync_replica_options_init(&o);
		o.key = "orders:1";
		psync_schema_raw(&o.schema);
		o.transport = acme;
		CHECK_EQ_INT(psync_replica_new(&o, &r), PSYNC_ERR_PERMISSION);
		CHECK(r == NULL);
		psync_last_error(text, sizeof(text));
		CHECK(strstr(text, "synced.orders.*.orders:1") != NULL);
	}
	psync_transport_destroy(acme);
}

static void
later_refusal_is_an_event(void)
{
	psync_transport *acme = connect_as("acme", "a");
	seen		s = {0};
	psync_subscription_id id = 0;

	CHECK_EQ_INT(psync_transport_subscribe(acme, "orders@acme:*", on_seen, &s, &id), PSYNC_OK);
	/* the permission goes away: nats-server reloads its configuration */
	write_conf(false);
	kill(nats_pid, SIGHUP);
	CHECK(LIVE_WAIT_FOR(atomic_load(&s.refused) > 0, 10));
	CHECK(strstr(s.detail, "synced.orders.acme.>") != NULL);
	psync_transport_unsubscribe(acme, id);
	psync_transport_destroy(acme);
	write_conf(true);
	kill(nats_pid, SIGHUP);
}

int
main(void)
{
	nats_port = live_free_port();
	snprintf(conf_path, sizeof(conf_path), "/tmp/psync_scope_live_%d.conf", (int) getpid());
	write_conf(true);
	if ((nats_pid = start_nats_with_conf()) < 0)
	{
		printf("skip - nats-server did not start\n");
		unlink(conf_path);
		return 0;
	}
	RUN(scoped_subjects_and_filtering);
	RUN(refusals_are_reported);
	RUN(later_refusal_is_an_event);
	live_stop(nats_pid);
	unlink(conf_path);
	return harness_finish();
}
