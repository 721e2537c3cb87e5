/*
 * test_stress.c — many threads against one in-process transport.
 *
 * Publisher threads own disjoint keys and publish in sequence order, but
 * drop some envelopes (never a key's last), so replicas see gaps; a
 * refetcher thread answers snapshots from the "server" state; churn threads
 * create and dispose replicas and subscribe/unsubscribe bare handlers while
 * all this runs.  At the end every replica must hold its key's final
 * sequence and value, and nothing may leak or crash (run under ASan too).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "harness.h"

#define NKEYS 16
#define NPUBLISHERS 4
#define NCHURN 2
#define STEPS 20000
#define REPLICAS_PER_KEY 3

typedef struct server_key
{
	pthread_mutex_t lock;
	uint64_t	sequence;
	char		key[32];
} server_key;

static server_key server[NKEYS];
static psync_transport *transport;

/*
 * ---- refetcher: a queue served by one thread ----
 *
 * The queue grows as needed: a request it refused would leave a replica
 * stale for good once its key's last envelope has gone by, and how many
 * requests pile up depends on how fast the machine runs the churn threads
 * (a fixed 4096 was once exceeded on a loaded CI machine under ASan).
 */

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_cond = PTHREAD_COND_INITIALIZER;
static psync_refetch_request **queue;
static size_t queue_len,
			queue_cap;
static bool queue_stop;
static atomic_int refetch_calls;

static void
queue_refetch(void *ctx, const char *key, psync_refetch_request *req)
{
	(void) ctx;
	(void) key;
	atomic_fetch_add(&refetch_calls, 1);
	pthread_mutex_lock(&queue_lock);
	if (queue_len == queue_cap)
	{
		size_t		cap = queue_cap == 0 ? 1024 : queue_cap * 2;
		psync_refetch_request **grown = realloc(queue, cap * sizeof(*queue));

		if (grown == NULL)
		{
			pthread_mutex_unlock(&queue_lock);
			psync_refetch_fail(req, "out of memory");
			return;
		}
		queue = grown;
		queue_cap = cap;
	}
	queue[queue_len++] = req;
	pthread_cond_signal(&queue_cond);
	pthread_mutex_unlock(&queue_lock);
}

static server_key *
server_of(const char *key)
{
	for (int i = 0; i < NKEYS; i++)
		if (strcmp(server[i].key, key) == 0)
			return &server[i];
	return NULL;
}

static void *
refetcher_main(void *arg)
{
	(void) arg;
	for (;;)
	{
		psync_refetch_request *req;
		server_key *sk;
		psync_envelope env;
		test_buf	b;

		pthread_mutex_lock(&queue_lock);
		while (queue_len == 0 && !queue_stop)
			pthread_cond_wait(&queue_cond, &queue_lock);
		if (queue_len == 0)
		{
			pthread_mutex_unlock(&queue_lock);
			return NULL;
		}
		req = queue[--queue_len];
		pthread_mutex_unlock(&queue_lock);
		sk = server_of(psync_refetch_key(req));
		pthread_mutex_lock(&sk->lock);
		env = test_envelope(sk->key, sk->sequence, "snap");
		env.op = PSYNC_OP_SNAPSHOT;
		env.has_txid = false;
		b = test_encode(&env);
		pthread_mutex_unlock(&sk->lock);
		psync_refetch_complete(req, b.data, b.len);
		free(b.data);
	}
}

/* ---- publishers ---- */

static void *
publisher_main(void *arg)
{
	int			id = (int) (intptr_t) arg;
	unsigned	rnd = (unsigned) id * 7919u + 1;

	for (int step = 0; step < STEPS; step++)
	{
		server_key *sk = &server[(id + NPUBLISHERS * (step % (NKEYS / NPUBLISHERS)))];
		psync_envelope env;
		bool		last = step >= STEPS - NKEYS / NPUBLISHERS;

		pthread_mutex_lock(&sk->lock);
		sk->sequence++;
		env = test_envelope(sk->key, sk->sequence, "live");
		pthread_mutex_unlock(&sk->lock);
		rnd = rnd * 1103515245u + 12345u;
		if (last || (rnd >> 16) % 50 != 0)	/* drop ~2%, never the last */
			psync_transport_publish(transport, &env);
	}
	return NULL;
}

/* ---- churn ---- */

static bool
always_ok(void *ctx, const uint8_t *mp, size_t len, const psync_envelope *env,
		  void *recycled, void **out, const char **error)
{
	(void) ctx;
	(void) mp;
	(void) len;
	(void) env;
	(void) error;
	*out = recycled ? recycled : malloc(1);
	return true;
}

static psync_replica *
new_replica(const char *key)
{
	psync_replica_options o;
	psync_replica *r = NULL;

	psync_replica_options_init(&o);
	o.key = key;
	o.schema = (psync_schema) {always_ok, test_free_value, NULL};
	o.transport = transport;
	o.refetch = queue_refetch;
	o.initial_refetch = true;
	psync_replica_new(&o, &r);
	return r;
}

static atomic_int handler_calls;

static void
count_handler(void *ctx, const psync_event *ev)
{
	(void) ctx;
	(void) ev;
	atomic_fetch_add(&handler_calls, 1);
}

static atomic_bool publishers_done;

static void *
churn_main(void *arg)
{
	unsigned	rnd = (unsigned) (intptr_t) arg * 31u + 5;

	while (!atomic_load(&publishers_done))
	{
		psync_subscription_id id;
		psync_replica *r;

		rnd = rnd * 1103515245u + 12345u;
		r = new_replica(server[(rnd >> 16) % NKEYS].key);
		psync_transport_subscribe(transport, server[(rnd >> 8) % NKEYS].key,
								  count_handler, NULL, &id);
		sched_yield();
		psync_transport_unsubscribe(transport, id);
		psync_replica_destroy(r);
	}
	return NULL;
}

static void
replicas_converge_under_concurrency(void)
{
	pthread_t	pubs[NPUBLISHERS],
				churn[NCHURN],
				refetcher;
	psync_replica *replicas[NKEYS][REPLICAS_PER_KEY];
	int			wrong = 0;

	CHECK_EQ_INT(psync_inprocess_transport_new(&transport), PSYNC_OK);
	for (int k = 0; k < NKEYS; k++)
	{
		pthread_mutex_init(&server[k].lock, NULL);
		snprintf(server[k].key, sizeof(server[k].key), "items:%d", k);
	}
	pthread_create(&refetcher, NULL, refetcher_main, NULL);
	for (int k = 0; k < NKEYS; k++)
		for (int j = 0; j < REPLICAS_PER_KEY; j++)
			CHECK((replicas[k][j] = new_replica(server[k].key)) != NULL);
	for (int i = 0; i < NCHURN; i++)
		pthread_create(&churn[i], NULL, churn_main, (void *) (intptr_t) i);
	for (int i = 0; i < NPUBLISHERS; i++)
		pthread_create(&pubs[i], NULL, publisher_main, (void *) (intptr_t) i);
	for (int i = 0; i < NPUBLISHERS; i++)
		pthread_join(pubs[i], NULL);
	atomic_store(&publishers_done, true);
	for (int i = 0; i < NCHURN; i++)
		pthread_join(churn[i], NULL);

	for (int k = 0; k < NKEYS; k++)
		for (int j = 0; j < REPLICAS_PER_KEY; j++)
		{
			psync_replica_metadata m;

			CHECK_EQ_INT(psync_replica_wait_idle(replicas[k][j], -1), PSYNC_OK);
			psync_replica_meta(replicas[k][j], &m);
			if (m.sequence != (int64_t) server[k].sequence || m.status != PSYNC_REPLICA_OK)
			{
				fprintf(stderr, "  %s: replica at %lld (%s), server at %llu\n", server[k].key,
						(long long) m.sequence, psync_replica_status_name(m.status),
						(unsigned long long) server[k].sequence);
				wrong++;
			}
		}
	CHECK_EQ_INT(wrong, 0);
	CHECK(atomic_load(&refetch_calls) > 0);	/* the drops did cause gaps */

	for (int k = 0; k < NKEYS; k++)
		for (int j = 0; j < REPLICAS_PER_KEY; j++)
			psync_replica_destroy(replicas[k][j]);
	CHECK_EQ_INT(psync_transport_key_count(transport), 0);
	pthread_mutex_lock(&queue_lock);
	queue_stop = true;
	pthread_cond_broadcast(&queue_cond);
	pthread_mutex_unlock(&queue_lock);
	pthread_join(refetcher, NULL);	/* drains: late completions are safe */
	free(queue);
	psync_transport_destroy(transport);
}

int
main(void)
{
	RUN(replicas_converge_under_concurrency);
	return harness_finish();
}
