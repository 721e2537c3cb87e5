/*
 * replica.c — the client reconciler (psync_replica_*), docs/protocol.md "Client reconciliation".
 *
 * The C twin of the seed's createClientReplica, rule for rule; the rules
 * are decided in reconcile.c (shared with collection members), and this
 * file carries their outcomes out:
 *   - 1, parse gate on every inbound value (hydration, receipt, refetch
 *     result): Err → parse_errors++, status skew, value kept, refetch —
 *     except for a refetch result (no Err→refetch loop);
 *   - 2, baseline (re)seed: hydration, a refetch result, or the first value
 *     ever seen is applied as is;
 *   - 3-5, steady state: apply iff sequence == current + 1; <= current is
 *     ignored as stale; > current + 1 is a gap → refetch;
 *   - no refetch function → stale; failed refetch → stale.
 * Beyond the seed: one refetch in flight at a time (a second reason to
 * refetch is remembered and served after it); receipts that arrive during a
 * refetch are buffered and replayed, in sequence order, after the snapshot
 * (the stale ones are dropped by the ordinary rules); PSYNC_EVENT_LOST
 * (NATS reconnect, slow consumer) and malformed messages refetch too.
 * A replica also follows its table's events (the sync name's own key,
 * docs/protocol.md "Table events"): a reload (column DDL changed every
 * row's snapshot at the same sequence) refetches the key.
 *
 * Threading: one recursive mutex per replica, held while the application's
 * parse and change callbacks run (so they see a consistent replica and may
 * read it).  Every callback runs inside a callback frame (callback.h), so
 * that psync_replica_destroy from the replica's own callback and
 * psync_replica_wait_idle from any callback are refused instead of freeing
 * the replica under its caller or waiting forever.  Any number of observers
 * (psync_replica_observe) are told of each change.  The replica is reference-counted so that a refetch finishing
 * after psync_replica_destroy() lands safely.  The in-order path does not
 * allocate: the displaced value is handed back to parse as "recycled".
 */
#include "para_sync/client.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "callback.h"
#include "client_error.h"
#include "handle.h"
#include "reconcile.h"
#include "refetch_internal.h"
#include "sized.h"
#include "transport_internal.h"
#include "para_sync/key.h"

#define DEFAULT_MAX_BUFFERED 256

typedef enum ingest_source
{
	FROM_HYDRATION,
	FROM_RECEIPT,
	FROM_REFETCH
} ingest_source;

/* A receipt that arrived during a refetch: its own copy of the bytes. */
typedef struct buffered_envelope
{
	uint64_t	sequence;
	psync_op	op;
	bool		has_value;
	bool		has_txid;
	uint64_t	txid;
	size_t		schema_version_len;
	size_t		value_len;
	size_t		scope_len;
	bool		has_scope;
	uint8_t		data[];			/* schema_version, value, then scope */
} buffered_envelope;


typedef struct observer
{
	psync_observer_id id;
	psync_change_fn fn;
	void	   *ctx;
} observer;

struct psync_replica
{
	pthread_mutex_t lock;		/* recursive */
	pthread_cond_t idle;
	atomic_int	refs;
	char	   *key;
	size_t		key_len;
	psync_schema schema;
	psync_transport *transport;
	psync_subscription_id subscription;
	psync_subscription_id table_subscription;	/* the sync name's events */
	uint64_t	last_reload;	/* sequence of the last reload acted on */
	bool		reload_seen;
	psync_refetch_fn refetch;
	void	   *refetch_ctx;
	observer   *observers;		/* in registration order; fn NULL: removed */
	size_t		nobservers;
	size_t		observers_cap;
	int			notifying;		/* depth of notify() on the owning thread */
	psync_observer_id next_observer;

	void	   *value;
	void	   *spare;			/* a displaced value, recycled by parse */
	bool		initialized;
	bool		disposed;
	bool		refused;		/* the NATS server refused its subscription */
	bool		refetching;
	bool		refetch_again;
	psync_replica_metadata meta;
	psync_replica_counters stats;

	buffered_envelope **buffer; /* grown on demand up to max_buffered */
	size_t		nbuffered;
	size_t		buffer_cap;
	size_t		max_buffered;

	char		last_error[PSYNC_ERROR_LEN];
};

static void ingest(psync_replica *r, const psync_envelope *env, ingest_source src);
static void finish_refetch(psync_refetch_request *req, const void *bytes, size_t len,
						   bool ok, const char *error);
static bool envelope_fits(const psync_replica *r, const psync_envelope *env);

/* ---- small helpers ---- */

static void
set_error(psync_replica *r, const char *what, const char *detail)
{
	snprintf(r->last_error, sizeof(r->last_error), "%s%s%s", what,
			 detail != NULL && detail[0] != '\0' ? ": " : "",
			 detail != NULL ? detail : "");
}

/* Drop removed observers; only when no notify() is iterating. */
static void
compact_observers(psync_replica *r)
{
	size_t		n = 0;

	if (r->notifying > 0)
		return;
	for (size_t i = 0; i < r->nobservers; i++)
		if (r->observers[i].fn != NULL)
			r->observers[n++] = r->observers[i];
	r->nobservers = n;
}

/*
 * Tell every observer.  One added during the calls is not called this
 * time; one removed is not called after its removal.
 */
static void
notify(psync_replica *r)
{
	size_t		n = r->nobservers;
	callback_frame frame;

	callback_enter(&frame, r);
	r->notifying++;
	for (size_t i = 0; i < n && !r->disposed; i++)
	{
		observer	o = r->observers[i];

		if (o.fn != NULL)
			o.fn(o.ctx, r, r->value, &r->meta);
	}
	r->notifying--;
	callback_leave(&frame);
	compact_observers(r);
}

static void
set_status(psync_replica *r, psync_replica_status status)
{
	/* refused by the NATS server: nothing arrives, so never "ok" again */
	if (r->refused && status == PSYNC_REPLICA_OK)
		status = PSYNC_REPLICA_STALE;
	r->meta.status = status;
	notify(r);
}

static void
free_value(psync_replica *r, void *value)
{
	if (value != NULL && r->schema.free_value != NULL)
		r->schema.free_value(r->schema.ctx, value);
}

/* Keep value as the spare (the one parse may recycle); free any older one. */
static void
keep_spare(psync_replica *r, void *value)
{
	if (value == r->spare)
		return;
	free_value(r, r->spare);
	r->spare = value;
}

static void
release(psync_replica *r)
{
	if (atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	pthread_cond_destroy(&r->idle);
	pthread_mutex_destroy(&r->lock);
	free(r->observers);
	free(r->key);
	free(r);
}

static void
clear_buffer(psync_replica *r)
{
	for (size_t i = 0; i < r->nbuffered; i++)
		free(r->buffer[i]);
	r->nbuffered = 0;
}

/* ---- refetch ---- */

static void
start_refetch(psync_replica *r)
{
	psync_refetch_request *req;

	if (r->refetch == NULL)
	{
		set_error(r, "a refetch is needed but the replica has no refetch function", NULL);
		set_status(r, PSYNC_REPLICA_STALE);
		return;
	}
	if (r->refetching)
	{
		r->refetch_again = true;
		return;
	}
	req = malloc(sizeof(*req));
	if (req == NULL || (req->key = strdup(r->key)) == NULL)
	{
		free(req);
		set_error(r, "refetch failed", "out of memory");
		set_status(r, PSYNC_REPLICA_STALE);
		return;
	}
	req->owner = r;
	req->finish = finish_refetch;
	atomic_fetch_add(&r->refs, 1);
	r->stats.refetches++;
	r->refetching = true;
	set_status(r, PSYNC_REPLICA_REFETCHING);
	{
		callback_frame frame;

		callback_enter(&frame, r);
		r->refetch(r->refetch_ctx, req->key, req);	/* may complete at once */
		callback_leave(&frame);
	}
}

static void
parse_failed(psync_replica *r, ingest_source src, const char *error)
{
	set_error(r, src == FROM_REFETCH ? "refetched value rejected" : "value rejected",
			  error);
	r->stats.parse_errors++;
	set_status(r, PSYNC_REPLICA_SKEW);
	if (src != FROM_REFETCH)
		start_refetch(r);
}

/* ---- buffering during a refetch ---- */

static void
buffer_receipt(psync_replica *r, const psync_envelope *env)
{
	size_t		sv_len = env->schema_version_len;
	size_t		v_len = env->has_value ? env->value_len : 0;
	size_t		sc_len = env->scope != NULL ? env->scope_len : 0;
	buffered_envelope *b;
	size_t		slot = r->nbuffered;

	if (!envelope_fits(r, env))
	{
		r->stats.parse_errors++;	/* as ingest would; look again after */
		r->refetch_again = true;
		return;
	}
	if (r->nbuffered == r->buffer_cap && r->buffer_cap < r->max_buffered)
	{
		/* grow geometrically, never past max_buffered nor SIZE_MAX bytes */
		size_t		cap = r->buffer_cap == 0 ? 16 : r->buffer_cap * 2;
		buffered_envelope **grown;

		if (cap > r->max_buffered || cap < r->buffer_cap)
			cap = r->max_buffered;
		if (cap > SIZE_MAX / sizeof(*r->buffer))
			cap = SIZE_MAX / sizeof(*r->buffer);
		grown = cap > r->buffer_cap ? realloc(r->buffer, cap * sizeof(*r->buffer)) : NULL;
		if (grown != NULL)
		{
			r->buffer = grown;
			r->buffer_cap = cap;
		}
	}
	if (r->nbuffered == r->buffer_cap)
	{
		/* full: the lowest sequence makes room (a gap → refetch later) */
		slot = 0;
		for (size_t i = 1; i < r->nbuffered; i++)
			if (r->buffer[i]->sequence < r->buffer[slot]->sequence)
				slot = i;
		if (r->nbuffered == 0 || env->sequence <= r->buffer[slot]->sequence)
		{
			r->refetch_again = true;
			return;
		}
	}
	b = malloc(sizeof(*b) + sv_len + v_len + sc_len);
	if (b == NULL)
	{
		r->refetch_again = true;	/* lost it: look again afterwards */
		return;
	}
	b->sequence = env->sequence;
	b->op = env->op;
	b->has_value = env->has_value;
	b->has_txid = env->has_txid;
	b->txid = env->txid;
	b->schema_version_len = sv_len;
	b->value_len = v_len;
	if (sv_len > 0)
		memcpy(b->data, env->schema_version, sv_len);
	if (v_len > 0)
		memcpy(b->data + sv_len, env->value, v_len);
	/* the parse gate is shown the whole envelope, replayed or not */
	b->has_scope = env->scope != NULL;
	b->scope_len = sc_len;
	if (sc_len > 0)
		memcpy(b->data + sv_len + v_len, env->scope, sc_len);
	if (slot < r->nbuffered)
		free(r->buffer[slot]);
	else
		r->nbuffered++;
	r->buffer[slot] = b;
}

static int
compare_sequence(const void *a, const void *b)
{
	const buffered_envelope *x = *(buffered_envelope *const *) a;
	const buffered_envelope *y = *(buffered_envelope *const *) b;

	return (x->sequence > y->sequence) - (x->sequence < y->sequence);
}

/* Feed what arrived during the refetch through the ordinary receipt rules. */
static void
replay_buffer(psync_replica *r)
{
	size_t		n = r->nbuffered;
	buffered_envelope **items;

	if (n == 0)
		return;
	items = malloc(n * sizeof(*items));
	if (items == NULL)
	{
		clear_buffer(r);
		r->refetch_again = true;
		return;
	}
	memcpy(items, r->buffer, n * sizeof(*items));
	r->nbuffered = 0;
	qsort(items, n, sizeof(*items), compare_sequence);
	for (size_t i = 0; i < n; i++)
	{
		buffered_envelope *b = items[i];
		psync_envelope env = {
			.key = r->key,
			.key_len = r->key_len,
			.value = b->has_value ? b->data + b->schema_version_len : NULL,
			.value_len = b->value_len,
			.has_value = b->has_value,
			.schema_version = (const char *) b->data,
			.schema_version_len = b->schema_version_len,
			.sequence = b->sequence,
			.op = b->op,
			.has_txid = b->has_txid,
			.txid = b->txid,
			.scope = b->has_scope ? (const char *) b->data + b->schema_version_len + b->value_len : NULL,
			.scope_len = b->scope_len,
		};

		if (r->refetching)
			buffer_receipt(r, &env);	/* a new refetch started meanwhile */
		else
			ingest(r, &env, FROM_RECEIPT);
		free(b);
	}
	free(items);
}

/* ---- the reconcile rules ---- */

static void
commit(psync_replica *r, void *parsed, const psync_envelope *env)
{
	size_t		sv_len = env->schema_version ? env->schema_version_len : 0;

	if (sv_len > PSYNC_MAX_SCHEMA_VERSION_LEN)
		sv_len = PSYNC_MAX_SCHEMA_VERSION_LEN;
	if (r->value != NULL)
		keep_spare(r, r->value);
	r->value = parsed;
	r->initialized = true;
	if (sv_len > 0)
		memcpy(r->meta.schema_version, env->schema_version, sv_len);
	r->meta.schema_version[sv_len] = '\0';
	r->meta.has_schema_version = env->schema_version != NULL;
	r->meta.sequence = (int64_t) env->sequence;
	r->meta.status = PSYNC_REPLICA_OK;
	r->stats.applied++;
	notify(r);
}

/* Addressed to this replica's key (rule 7 otherwise). */
static bool
for_this_key(const psync_replica *r, const psync_envelope *env)
{
	return env->key_len == r->key_len && memcmp(env->key, r->key, r->key_len) == 0;
}

/* Worth buffering during a refetch (rule 7 otherwise, counted at once). */
static bool
envelope_fits(const psync_replica *r, const psync_envelope *env)
{
	return for_this_key(r, env) && reconcile_well_formed(env);
}

/* The parse gate (rule 1) as reconcile_decide calls it. */
typedef struct gate
{
	psync_replica *r;
	void	   *parsed;
	const char *error;
} gate;

static bool
gate_parse(void *ctx, const psync_envelope *env)
{
	static const uint8_t nil = 0xc0;
	gate	   *g = ctx;
	psync_replica *r = g->r;
	callback_frame frame;
	bool		ok;

	callback_enter(&frame, r);
	ok = r->schema.parse(r->schema.ctx, env->has_value ? env->value : &nil,
						 env->has_value ? env->value_len : 1, env, r->spare,
						 &g->parsed, &g->error);
	callback_leave(&frame);
	if (!ok)
		return false;
	if (g->parsed != r->spare)
		free_value(r, r->spare);
	r->spare = NULL;			/* parse took it, or it is gone */
	return true;
}

static reconcile_source
source_of(ingest_source src)
{
	return src == FROM_HYDRATION ? RECONCILE_SEED :
		src == FROM_RECEIPT ? RECONCILE_RECEIPT : RECONCILE_REFETCH;
}

/* One inbound envelope through the rules (reconcile.h), numbered as there. */
static void
ingest(psync_replica *r, const psync_envelope *env, ingest_source src)
{
	reconcile_state s = {r->initialized, r->meta.sequence};
	gate		g = {r, NULL, NULL};

	if (r->disposed)
		return;
	switch (reconcile_decide(&s, env, source_of(src), for_this_key(r, env), gate_parse, &g))
	{
		case RECONCILE_BAD_MESSAGE:
			parse_failed(r, src, env->op == PSYNC_OP_RELOAD && for_this_key(r, env) &&
						 reconcile_well_formed(env) ?
						 "a table event is not an envelope of this key" :
						 "not an envelope for this key");
			break;
		case RECONCILE_PARSE_ERROR:
			parse_failed(r, src, env->op == PSYNC_OP_REFETCH ?
						 "a snapshot must carry a value" : g.error);
			break;
		case RECONCILE_REFETCH_NOTICE:
			start_refetch(r);	/* too large for the bus: go and get it */
			break;
		case RECONCILE_BASELINE:
		case RECONCILE_NEXT:
			commit(r, g.parsed, env);
			break;
		case RECONCILE_STALE:
			r->stats.ignored_stale++;
			if (env->op != PSYNC_OP_REFETCH)
				keep_spare(r, g.parsed);
			break;
		case RECONCILE_GAP:
			r->stats.gaps++;
			keep_spare(r, g.parsed);
			start_refetch(r);
			break;
	}
}

/* ---- transport events ---- */

static void
on_event(void *ctx, const psync_event *event)
{
	psync_replica *r = ctx;

	pthread_mutex_lock(&r->lock);
	if (r->disposed)
		;
	else if (event->kind == PSYNC_EVENT_ENVELOPE)
	{
		if (r->refetching)
			buffer_receipt(r, event->envelope);
		else
			ingest(r, event->envelope, FROM_RECEIPT);
	}
	else if (event->kind == PSYNC_EVENT_MALFORMED)
	{
		r->stats.parse_errors++;
		if (r->refetching)
			r->refetch_again = true;
		else
		{
			set_status(r, PSYNC_REPLICA_SKEW);
			start_refetch(r);
		}
	}
	else if (event->kind == PSYNC_EVENT_REFUSED)
	{
		r->refused = true;
		set_error(r, "the NATS server refused the key's subscription", event->detail);
		set_status(r, PSYNC_REPLICA_STALE);
	}
	else
		start_refetch(r);		/* LOST; remembered if one is in flight */
	pthread_mutex_unlock(&r->lock);
}

/*
 * The table's events (subscription to the sync name).  A reload means the
 * key's snapshot may have changed at the same sequence: refetch, unless it
 * is a resend of one already acted on.  LOST also reaches the key's own
 * subscription, which refetches: nothing to do here.
 */
static void
on_table_event(void *ctx, const psync_event *event)
{
	psync_replica *r = ctx;

	pthread_mutex_lock(&r->lock);
	if (r->disposed || event->kind == PSYNC_EVENT_LOST)
		;
	else if (event->kind == PSYNC_EVENT_REFUSED)
	{
		r->refused = true;
		set_error(r, "the NATS server refused the table events' subscription", event->detail);
		set_status(r, PSYNC_REPLICA_STALE);
	}
	else if (event->kind == PSYNC_EVENT_ENVELOPE &&
			 event->envelope->op == PSYNC_OP_RELOAD)
	{
		if (r->reload_seen && event->envelope->sequence <= r->last_reload)
			r->stats.ignored_stale++;
		else
		{
			r->reload_seen = true;
			r->last_reload = event->envelope->sequence;
			start_refetch(r);
		}
	}
	else
	{
		/* a malformed or unknown table event: look at the key again */
		r->stats.parse_errors++;
		start_refetch(r);
	}
	pthread_mutex_unlock(&r->lock);
}

/* ---- refetch completion (any thread) ---- */

static void
finish_refetch(psync_refetch_request *req, const void *bytes, size_t len,
			   bool ok, const char *error)
{
	psync_replica *r = req->owner;
	psync_envelope env;
	bool		again;

	pthread_mutex_lock(&r->lock);
	r->refetching = false;
	if (!r->disposed)
	{
		again = r->refetch_again;
		r->refetch_again = false;
		if (!ok)
		{
			set_error(r, "refetch failed", error != NULL ? error : "no snapshot");
			set_status(r, PSYNC_REPLICA_STALE);
		}
		else if (psync_envelope_decode(bytes, len, &env) != PSYNC_DECODE_OK)
			parse_failed(r, FROM_REFETCH, "the snapshot is not a valid envelope");
		else
			ingest(r, &env, FROM_REFETCH);
		replay_buffer(r);
		if (again)
			start_refetch(r);
	}
	pthread_cond_broadcast(&r->idle);
	pthread_mutex_unlock(&r->lock);
	free(req->key);
	free(req);
	release(r);
}

void
psync_refetch_complete(psync_refetch_request *req, const void *envelope, size_t len)
{
	if (req != NULL)
		req->finish(req, envelope, len, envelope != NULL, NULL);
}

void
psync_refetch_fail(psync_refetch_request *req, const char *error)
{
	if (req != NULL)
		req->finish(req, NULL, 0, false, error);
}

const char *
psync_refetch_key(const psync_refetch_request *req)
{
	return req != NULL ? req->key : NULL;
}

/* ---- the raw schema ---- */

static bool
raw_parse(void *ctx, const uint8_t *msgpack, size_t len,
		  const psync_envelope *env, void *recycled, void **out,
		  const char **error)
{
	psync_raw_value *v = recycled;

	(void) ctx;
	(void) env;
	if (v == NULL || v->capacity < len)
	{
		size_t		cap = len < 128 ? 128 : len;

		v = malloc(sizeof(*v) + cap);
		if (v == NULL)
		{
			*error = "out of memory";
			return false;
		}
		v->capacity = cap;
	}
	memcpy(v->data, msgpack, len);
	v->len = len;
	*out = v;
	return true;
}

static void
raw_free(void *ctx, void *value)
{
	(void) ctx;
	free(value);
}

void
psync_schema_raw(psync_schema *schema)
{
	schema->parse = raw_parse;
	schema->free_value = raw_free;
	schema->ctx = NULL;
}

/* ---- lifecycle and accessors ---- */

static void
replica_options_defaults(psync_replica_options *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->size = sizeof(*opts);
	opts->max_buffered = DEFAULT_MAX_BUFFERED;
}

void
psync_replica_options_init_sized(psync_replica_options *opts, size_t size)
{
	psync_replica_options d;

	replica_options_defaults(&d);
	sized_init(opts, size, &d, sizeof(d));
}

static psync_status
init_sync(psync_replica *r)
{
	pthread_mutexattr_t ma;
	pthread_condattr_t ca;
	int			rc;

	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
	rc = pthread_mutex_init(&r->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	if (rc != 0)
		return PSYNC_ERR_SYSTEM;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	rc = pthread_cond_init(&r->idle, &ca);
	pthread_condattr_destroy(&ca);
	if (rc != 0)
	{
		pthread_mutex_destroy(&r->lock);
		return PSYNC_ERR_SYSTEM;
	}
	return PSYNC_OK;
}

static psync_replica *
replica_alloc(const psync_replica_options *opts)
{
	psync_replica *r = calloc(1, sizeof(*r));
	size_t		max = opts->max_buffered ? opts->max_buffered : DEFAULT_MAX_BUFFERED;

	if (r == NULL)
		return NULL;
	r->key = strdup(opts->key);
	if (opts->on_change != NULL)
	{
		r->observers = malloc(sizeof(*r->observers));
		if (r->observers != NULL)
		{
			r->observers[0] = (observer) {1, opts->on_change, opts->on_change_ctx};
			r->nobservers = r->observers_cap = 1;
		}
	}
	if (r->key == NULL || (opts->on_change != NULL && r->observers == NULL) ||
		init_sync(r) != PSYNC_OK)
	{
		free(r->key);
		free(r->observers);
		free(r);
		return NULL;
	}
	r->next_observer = 2;
	atomic_init(&r->refs, 1);
	r->key_len = strlen(r->key);
	r->max_buffered = max;
	r->schema = opts->schema;
	r->transport = opts->transport;
	r->refetch = opts->refetch;
	r->refetch_ctx = opts->refetch_ctx;
	r->meta.size = sizeof(r->meta);
	r->stats.size = sizeof(r->stats);
	r->meta.sequence = -1;
	r->meta.status = PSYNC_REPLICA_STALE;
	return r;
}

static void
hydrate(psync_replica *r, const psync_replica_options *opts)
{
	psync_envelope env;

	pthread_mutex_lock(&r->lock);
	if (opts->seed != NULL)
	{
		if (psync_envelope_decode(opts->seed, opts->seed_len, &env) == PSYNC_DECODE_OK)
			ingest(r, &env, FROM_HYDRATION);
		else
			parse_failed(r, FROM_HYDRATION, "the seed is not a valid envelope");
	}
	else if (opts->initial_refetch)
		start_refetch(r);
	pthread_mutex_unlock(&r->lock);
}

psync_status
psync_replica_new(const psync_replica_options *caller_opts, psync_replica **out)
{
	psync_replica_options o;
	const psync_replica_options *opts = &o;
	psync_replica *r;
	size_t		table_len;
	psync_status st;

	if (out == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	*out = NULL;
	replica_options_defaults(&o);
	if (caller_opts == NULL || !sized_read(&o, sizeof(o), caller_opts) || opts->key == NULL || opts->schema.parse == NULL ||
		opts->transport == NULL ||
		!transport_key_is_subscribable(opts->key, strlen(opts->key)) ||
		transport_key_is_pattern(opts->key, strlen(opts->key), &table_len))
		return PSYNC_ERR_INVALID_ARGUMENT;
	if ((r = replica_alloc(opts)) == NULL)
		return PSYNC_ERR_NO_MEMORY;
	st = psync_transport_subscribe(r->transport, r->key, on_event, r,
								   &r->subscription);
	table_len = transport_table_len(r->key, r->key_len);
	if (st == PSYNC_OK && table_len < r->key_len &&
		psync_sync_name_is_valid(r->key, table_len))
	{
		/* the table's events, before any refetch: none can be missed */
		char		table[PSYNC_MAX_KEY_LEN + 1];

		memcpy(table, r->key, table_len);
		table[table_len] = '\0';
		st = transport_subscribe_table(r->transport, table, on_table_event, r,
									   &r->table_subscription);
		if (st != PSYNC_OK)
			psync_transport_unsubscribe(r->transport, r->subscription);
	}
	if (st != PSYNC_OK)
	{
		char		text[PSYNC_ERROR_LEN];

		psync_transport_last_error(r->transport, text, sizeof(text));
		client_error_thread("could not subscribe to %s: %s", r->key, text);
		release(r);
		return st;
	}
	hydrate(r, opts);
	*out = r;
	return PSYNC_OK;
}

void
psync_replica_get(psync_replica *r, psync_value_fn fn, void *ctx)
{
	if (r == NULL || fn == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	{
		callback_frame frame;

		callback_enter(&frame, r);
		fn(ctx, r->value, &r->meta);
		callback_leave(&frame);
	}
	pthread_mutex_unlock(&r->lock);
}

void
psync_replica_meta_sized(psync_replica *r, psync_replica_metadata *out, size_t size)
{
	if (r == NULL || out == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	sized_write(out, size, &r->meta, sizeof(r->meta));
	pthread_mutex_unlock(&r->lock);
}

void
psync_replica_stats_sized(psync_replica *r, psync_replica_counters *out, size_t size)
{
	if (r == NULL || out == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	sized_write(out, size, &r->stats, sizeof(r->stats));
	pthread_mutex_unlock(&r->lock);
}

void
psync_replica_resync(psync_replica *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	if (!r->disposed)
		start_refetch(r);
	pthread_mutex_unlock(&r->lock);
}

/* A refetch is in flight (handle_wait_idle's question). */
static bool
replica_busy(const void *handle)
{
	return ((const psync_replica *) handle)->refetching;
}

psync_status
psync_replica_wait_idle(psync_replica *r, int timeout_ms)
{
	return handle_wait_idle(r, r ? &r->lock : NULL, r ? &r->idle : NULL,
							replica_busy, timeout_ms);
}

psync_status
psync_replica_destroy(psync_replica *r)
{
	if (r == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	/* its caller would return into a freed replica */
	if (callback_running(r))
		return PSYNC_ERR_IN_CALLBACK;
	/* first: no handler runs or will run (it takes r->lock) */
	psync_transport_unsubscribe(r->transport, r->subscription);
	psync_transport_unsubscribe(r->transport, r->table_subscription);
	pthread_mutex_lock(&r->lock);
	r->disposed = true;
	free_value(r, r->value);
	free_value(r, r->spare);
	r->value = r->spare = NULL;
	clear_buffer(r);
	free(r->buffer);
	r->buffer = NULL;
	r->buffer_cap = 0;
	pthread_cond_broadcast(&r->idle);
	pthread_mutex_unlock(&r->lock);
	release(r);
	return PSYNC_OK;
}

psync_status
psync_replica_observe(psync_replica *r, psync_change_fn fn, void *ctx,
					  psync_observer_id *out_id)
{
	psync_status st = PSYNC_OK;

	if (out_id != NULL)
		*out_id = 0;
	if (r == NULL || fn == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	pthread_mutex_lock(&r->lock);
	if (r->nobservers == r->observers_cap)
	{
		size_t		cap = r->observers_cap ? r->observers_cap * 2 : 4;
		observer   *grown = cap < SIZE_MAX / sizeof(*grown) ?
			realloc(r->observers, cap * sizeof(*grown)) : NULL;

		if (grown == NULL)
			st = PSYNC_ERR_NO_MEMORY;
		else
		{
			r->observers = grown;
			r->observers_cap = cap;
		}
	}
	if (st == PSYNC_OK)
	{
		psync_observer_id id = r->next_observer++;

		r->observers[r->nobservers++] = (observer) {id, fn, ctx};
		if (out_id != NULL)
			*out_id = id;
	}
	pthread_mutex_unlock(&r->lock);
	return st;
}

void
psync_replica_unobserve(psync_replica *r, psync_observer_id id)
{
	if (r == NULL || id == 0)
		return;
	/* the lock: an observer running on another thread finishes first */
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->nobservers; i++)
		if (r->observers[i].id == id)
			r->observers[i].fn = NULL;
	compact_observers(r);
	pthread_mutex_unlock(&r->lock);
}

size_t
psync_replica_last_error(psync_replica *r, char *buf, size_t size)
{
	if (r == NULL)
		return client_error_copy("", buf, size);
	return handle_last_error(&r->lock, r->last_error, buf, size);
}
