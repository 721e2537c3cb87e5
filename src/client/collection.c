/*
 * collection.c — live replicas of whole tables (psync_collection_*): the API
 * and the collection's lifetime, and its transport events.
 *
 * The collection family: collection.c (this file), collection_row.c (the
 * member map, tombstones, held envelopes, row refetch and the receipt rules),
 * collection_load.c (page loading on the collection's thread), and
 * collection_internal.h (what they share).
 *
 * A collection is a hash map key → member {sequence, parsed value}; a
 * member without a value is a tombstone (a deleted row, kept so that an
 * older envelope cannot resurrect it).  The rules, per row (docs/protocol.md,
 * "Loading a whole table", rules 1 to 9):
 *   - loads: it subscribes to "<table>:*" before the first page, so every
 *     change committed after a page was read arrives on the bus.  Pages
 *     come in the server's primary-key order, each starting after the last
 *     key of the one before (the cursor); a client cannot place a key in
 *     that order, so an envelope of a row already held goes through the
 *     receipt rules at once (rows stay live during a reload), and one of an
 *     unknown key is held until a page brings the key, or else until the
 *     last page is in, then replayed in (key, sequence) order.  After the
 *     last page, members that neither the pages nor envelopes confirmed
 *     are removed (they were deleted while messages were lost);
 *   - a page row replaces a member only when its sequence is newer; a row
 *     the client cannot accept is skipped and counted, the load goes on;
 *   - receipt: each row is reconciled by the client reconciliation rules
 *     of docs/protocol.md, decided in reconcile.c as for a replica (parse
 *     gate, then baseline / next / stale / gap); a rule that refetches
 *     refetches that row only (envelopes for it are held meanwhile and
 *     replayed after); a failed row refetch is retried for that row with
 *     backoff, and a row refetch result older than the member is dropped;
 *   - tombstones: needed while a load runs (a page read before a delete
 *     must not bring the row back); after it, only the last max_tombstones
 *     deletes are remembered (a FIFO of their keys); a delete of a key not
 *     held leaves none, but in a collection of one scope (a row entering
 *     and leaving it may arrive reversed).  The key map shrinks when it
 *     empties;
 *   - PSYNC_EVENT_LOST → reload in the background, members stay;
 *   - layout: before each load and every layout_check_ms the subject layout
 *     the server reports (load_layout) is compared with the transport's; a
 *     mismatch is state ERROR (the collection would silently stop updating);
 *   - the table's reload event (key "<table>", docs/protocol.md "Table
 *     events": column DDL changed every row's snapshot at the same
 *     sequence) → the same reload.  Each member remembers the
 *     schema_version its value was read under, so a page row at the
 *     member's own sequence replaces it when the versions differ (the
 *     value was rewritten by DDL), and only then.
 *
 * Threads: loads, layout checks and row refetch retries run on the
 * collection's own thread (pages are fetched without the lock, applied
 * with it); envelopes arrive on transport delivery threads, refetch results
 * on the refetcher's.  One recursive mutex guards everything and is held
 * while application callbacks run, inside callback frames (callback.h) so
 * that destroy/wait from a callback, the page loader included, are refused.
 * Refetch requests hold a reference, so a result that arrives after
 * destroy lands safely.
 */
#include "para_sync/client.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "callback.h"
#include "client_error.h"
#include "collection_internal.h"
#include "handle.h"
#include "reconcile.h"
#include "refetch_internal.h"
#include "sized.h"
#include "transport_internal.h"

#include <msgpack.h>

/* ---- transport events ---- */

/* An event of the table itself (key "<table>"), with the collection locked. */
static void
table_event(psync_collection *c, const psync_envelope *env)
{
	if (env->op != PSYNC_OP_RELOAD)
	{
		c->stats.parse_errors++;
		collection_set_error(c, "an unknown event for the table", psync_op_name(env->op));
		collection_request_reload(c);
	}
	else if (c->reload_seen && env->sequence <= c->last_reload)
		c->stats.ignored_stale++;	/* a resend */
	else
	{
		c->reload_seen = true;
		c->last_reload = env->sequence;
		collection_request_reload(c);		/* rows changed at their sequence: read them again */
	}
}

static void
on_event(void *ctx, const psync_event *event)
{
	psync_collection *c = ctx;

	pthread_mutex_lock(&c->lock);
	collection_apply_enter(c);
	if (c->destroyed || c->stopping)
		;
	else if (event->kind == PSYNC_EVENT_ENVELOPE &&
			 event->envelope->key_len == c->table_len &&
			 memcmp(event->envelope->key, c->table, c->table_len) == 0)
		table_event(c, event->envelope);
	else if (event->kind == PSYNC_EVENT_ENVELOPE)
		collection_receive(c, event->envelope);
	else if (event->kind == PSYNC_EVENT_REFUSED)
	{
		/* nothing will arrive: state ERROR (set by the loader thread) */
		c->refused = true;
		collection_set_error(c, "the NATS server refused the collection's subscription",
							 event->detail);
		collection_request_reload(c);
	}
	else if (event->kind == PSYNC_EVENT_MALFORMED)
	{
		member	   *m = NULL;

		c->stats.parse_errors++;
		collection_set_error(c, "a malformed message for the table", NULL);
		if (event->key != NULL && collection_key_in_table(c, event->key, event->key_len) &&
			(!c->loading || collection_page_passed(c, event->key, event->key_len)))
		{
			m = collection_find(c, event->key, event->key_len);
			if (m == NULL)
				m = collection_insert(c, event->key, event->key_len);
		}
		if (m != NULL)
			collection_refetch_row(c, m);
		else
			collection_request_reload(c);
	}
	else
		collection_request_reload(c);		/* LOST: whatever is in flight, load again */
	collection_apply_leave(c);
	pthread_mutex_unlock(&c->lock);
}

/* ---- the API ---- */

static void
collection_options_defaults(psync_collection_options *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->size = sizeof(*opts);
	opts->page_size = DEFAULT_PAGE_SIZE;
	opts->page_retries = DEFAULT_PAGE_RETRIES;
	opts->max_tombstones = DEFAULT_MAX_TOMBSTONES;
	opts->layout_check_ms = DEFAULT_LAYOUT_CHECK_MS;
}

void
psync_collection_options_init_sized(psync_collection_options *opts, size_t size)
{
	psync_collection_options d;

	collection_options_defaults(&d);
	sized_init(opts, size, &d, sizeof(d));
}

const char *
psync_collection_state_text(psync_collection_state state)
{
	switch (state)
	{
		case PSYNC_COLLECTION_LOADING:
			return "loading";
		case PSYNC_COLLECTION_LIVE:
			return "live";
		case PSYNC_COLLECTION_RELOADING:
			return "reloading";
		case PSYNC_COLLECTION_ERROR:
			return "error";
	}
	return "unknown";
}

static psync_status
init_sync(psync_collection *c)
{
	pthread_mutexattr_t ma;
	pthread_condattr_t ca;
	int			rc;

	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
	rc = pthread_mutex_init(&c->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	if (rc != 0)
		return PSYNC_ERR_SYSTEM;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	rc = pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (rc != 0)
	{
		pthread_mutex_destroy(&c->lock);
		return PSYNC_ERR_SYSTEM;
	}
	return PSYNC_OK;
}

static void
free_members(psync_collection *c)
{
	for (size_t b = 0; b < c->nbuckets; b++)
	{
		member	   *m = c->buckets[b];

		while (m != NULL)
		{
			member	   *next = m->next;

			collection_free_value(c, m->value);
			free(m);
			m = next;
		}
	}
	free(c->buckets);
	c->buckets = NULL;
	c->nbuckets = c->nentries = c->nmembers = 0;
	for (size_t i = 0; i < c->nversions; i++)
		free(c->versions[i]);
	free(c->versions);
	c->versions = NULL;
	c->nversions = 0;
	collection_list_clear(&c->held);
	collection_list_clear(&c->pending);
	collection_free_tombstones(c);
	while (c->retries != NULL)
	{
		row_retry  *r = c->retries;

		c->retries = r->next;
		free(r);
	}
	free(c->cursor);
	c->cursor = NULL;
}

static bool
table_name_is_valid(const char *t)
{
	size_t		len = strlen(t);

	if (len == 0 || len > 63)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') ||
			  (t[i] >= '0' && t[i] <= '9') || t[i] == '_' || t[i] == '-'))
			return false;
	return true;
}

psync_status
psync_collection_new(const psync_collection_options *caller_opts, psync_collection **out)
{
	psync_collection_options o;
	const psync_collection_options *opts = &o;
	psync_collection *c;
	char		pattern[64 + PSYNC_MAX_SCOPE_LEN + 4];
	psync_status st;

	if (out == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	*out = NULL;
	collection_options_defaults(&o);
	if (caller_opts == NULL || !sized_read(&o, sizeof(o), caller_opts) || opts->table == NULL || !table_name_is_valid(opts->table) ||
		opts->schema.parse == NULL || opts->transport == NULL ||
		opts->load_page == NULL || opts->page_size < 0 ||
		(opts->scope != NULL && !psync_scope_is_valid(opts->scope, strlen(opts->scope))))
		return PSYNC_ERR_INVALID_ARGUMENT;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return PSYNC_ERR_NO_MEMORY;
	c->table = strdup(opts->table);
	if (opts->scope != NULL)
		snprintf(pattern, sizeof(pattern), "%s@%s", opts->table, opts->scope);
	else
		snprintf(pattern, sizeof(pattern), "%s", opts->table);
	c->load_name = strdup(pattern);
	if (opts->scope != NULL && (c->scope = strdup(opts->scope)) != NULL)
		c->scope_len = strlen(c->scope);
	c->nbuckets = MIN_BUCKETS;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	if (c->table == NULL || c->buckets == NULL || c->load_name == NULL ||
		(opts->scope != NULL && c->scope == NULL) || init_sync(c) != PSYNC_OK)
	{
		free(c->table);
		free(c->scope);
		free(c->load_name);
		free(c->buckets);
		free(c);
		return PSYNC_ERR_NO_MEMORY;
	}
	atomic_init(&c->refs, 1);
	c->table_len = strlen(c->table);
	c->schema = opts->schema;
	c->transport = opts->transport;
	c->load_page = opts->load_page;
	c->load_ctx = opts->load_ctx;
	c->refetch = opts->refetch;
	c->refetch_ctx = opts->refetch_ctx;
	c->next_observer = 1;
	if (opts->on_change != NULL &&
		psync_collection_observe(c, opts->on_change, opts->on_change_ctx, NULL) != PSYNC_OK)
	{
		free_members(c);
		collection_release(c);
		return PSYNC_ERR_NO_MEMORY;
	}
	c->on_state = opts->on_state;
	c->on_state_ctx = opts->on_state_ctx;
	c->load_layout = opts->load_layout;
	c->cancel_load = opts->cancel_load;
	if (opts->load_page == psync_pq_load_page_fn())
	{
		/* the libpq loader brings its own layout check and cancel */
		if (c->load_layout == NULL)
			c->load_layout = psync_pq_load_layout_fn();
		if (c->cancel_load == NULL)
			c->cancel_load = psync_pq_cancel_load_fn();
	}
	c->page_size = opts->page_size > 0 ? opts->page_size : DEFAULT_PAGE_SIZE;
	/* 0 (a zeroed struct): the default; < 0: none */
	c->page_retries = opts->page_retries == 0 ? DEFAULT_PAGE_RETRIES :
		opts->page_retries > 0 ? opts->page_retries : 0;
	c->max_tombstones = opts->max_tombstones == 0 ? DEFAULT_MAX_TOMBSTONES :
		opts->max_tombstones > 0 ? (size_t) opts->max_tombstones : 0;
	c->layout_check_ms = opts->layout_check_ms == 0 ? DEFAULT_LAYOUT_CHECK_MS :
		opts->layout_check_ms > 0 ? opts->layout_check_ms : -1;
	c->state = PSYNC_COLLECTION_LOADING;
	c->loading = true;			/* hold envelopes until the first load is in */
	c->reload_requested = true;

	/*
	 * subscribe first: every change after a page was read will arrive.
	 * One scope: "<table>@<scope>:*", and the table's events apart (they
	 * are no scope's).
	 */
	snprintf(pattern, sizeof(pattern), "%s:*", c->load_name);
	st = psync_transport_subscribe(c->transport, pattern, on_event, c, &c->subscription);
	if (st == PSYNC_OK && c->scope != NULL)
	{
		st = transport_subscribe_table(c->transport, c->table, on_event, c,
									   &c->table_subscription);
		if (st != PSYNC_OK)
		{
			psync_transport_unsubscribe(c->transport, c->subscription);
			snprintf(pattern, sizeof(pattern), "%s", c->table);
		}
	}
	if (st != PSYNC_OK)
	{
		char		text[PSYNC_ERROR_LEN];

		psync_transport_last_error(c->transport, text, sizeof(text));
		client_error_thread("could not subscribe to %s: %s", pattern, text);
		free_members(c);
		collection_release(c);
		return st;
	}
	if (pthread_create(&c->worker, NULL, collection_worker_main, c) != 0)
	{
		psync_transport_unsubscribe(c->transport, c->table_subscription);
		psync_transport_unsubscribe(c->transport, c->subscription);
		free_members(c);
		collection_release(c);
		return PSYNC_ERR_SYSTEM;
	}
	pthread_mutex_lock(&c->lock);
	while (!c->first_load_done)
		pthread_cond_wait(&c->cond, &c->lock);
	st = c->first_load_status;
	if (st != PSYNC_OK)
		client_error_thread("%s", c->last_error);
	pthread_mutex_unlock(&c->lock);
	if (st != PSYNC_OK)
	{
		psync_collection_destroy(c);
		return st;
	}
	*out = c;
	return PSYNC_OK;
}

static void
visit_member(psync_collection *c, const member *m, psync_member_fn fn, void *ctx)
{
	callback_frame frame;

	callback_enter(&frame, c);
	fn(ctx, m->key, m->key_len, m->value, m->seq);
	callback_leave(&frame);
}

bool
psync_collection_get(psync_collection *c, const char *key, psync_member_fn fn, void *ctx)
{
	member	   *m;
	bool		found;

	if (c == NULL || key == NULL)
		return false;
	pthread_mutex_lock(&c->lock);
	m = c->buckets ? collection_find(c, key, strlen(key)) : NULL;
	found = m != NULL && m->value != NULL;
	if (found && fn != NULL)
		visit_member(c, m, fn, ctx);
	pthread_mutex_unlock(&c->lock);
	return found;
}

size_t
psync_collection_count(psync_collection *c)
{
	size_t		n;

	if (c == NULL)
		return 0;
	pthread_mutex_lock(&c->lock);
	n = c->nmembers;
	pthread_mutex_unlock(&c->lock);
	return n;
}

void
psync_collection_foreach(psync_collection *c, psync_member_fn fn, void *ctx)
{
	if (c == NULL || fn == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	for (size_t b = 0; b < c->nbuckets; b++)
		for (member *m = c->buckets[b]; m != NULL; m = m->next)
			if (m->value != NULL)
				visit_member(c, m, fn, ctx);
	pthread_mutex_unlock(&c->lock);
}

void
psync_collection_stats_sized(psync_collection *c, psync_collection_counters *out,
							 size_t size)
{
	psync_collection_counters all;

	if (c == NULL || out == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	all = c->stats;
	all.tombstones = c->nentries - c->nmembers;
	all.key_slots = c->nbuckets;
	pthread_mutex_unlock(&c->lock);
	all.size = sizeof(all);
	sized_write(out, size, &all, sizeof(all));
}

void
psync_collection_resync(psync_collection *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	if (!c->stopping)
		collection_request_reload(c);
	pthread_mutex_unlock(&c->lock);
}

psync_collection_state
psync_collection_get_state(psync_collection *c)
{
	psync_collection_state state;

	if (c == NULL)
		return PSYNC_COLLECTION_ERROR;
	pthread_mutex_lock(&c->lock);
	state = c->state;
	pthread_mutex_unlock(&c->lock);
	return state;
}

psync_status
psync_collection_observe(psync_collection *c, psync_collection_change_fn fn,
						 void *ctx, psync_observer_id *out_id)
{
	psync_status st = PSYNC_OK;

	if (out_id != NULL)
		*out_id = 0;
	if (c == NULL || fn == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	pthread_mutex_lock(&c->lock);
	if (c->nobservers == c->observers_cap)
	{
		size_t		cap = c->observers_cap ? c->observers_cap * 2 : 4;
		observer   *grown = cap < SIZE_MAX / sizeof(*grown) ?
			realloc(c->observers, cap * sizeof(*grown)) : NULL;

		if (grown == NULL)
			st = PSYNC_ERR_NO_MEMORY;
		else
		{
			c->observers = grown;
			c->observers_cap = cap;
		}
	}
	if (st == PSYNC_OK)
	{
		psync_observer_id id = c->next_observer++;

		c->observers[c->nobservers++] = (observer) {id, fn, ctx};
		if (out_id != NULL)
			*out_id = id;
	}
	pthread_mutex_unlock(&c->lock);
	return st;
}

void
psync_collection_unobserve(psync_collection *c, psync_observer_id id)
{
	if (c == NULL || id == 0)
		return;
	/* the lock: an observer running on another thread finishes first */
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->nobservers; i++)
		if (c->observers[i].id == id)
			c->observers[i].fn = NULL;
	collection_compact_observers(c);
	pthread_mutex_unlock(&c->lock);
}

/*
 * A load, a reload or a row refetch (or its retry) is in flight, and the
 * collection is not stopping (handle_wait_idle's question).
 */
static bool
busy(const void *handle)
{
	const psync_collection *c = handle;

	return !c->stopping &&
		(c->in_load || c->loading || c->reload_requested || c->refetches_in_flight > 0);
}

psync_status
psync_collection_wait_idle(psync_collection *c, int timeout_ms)
{
	return handle_wait_idle(c, c ? &c->lock : NULL, c ? &c->cond : NULL, busy, timeout_ms);
}

size_t
psync_collection_last_error(psync_collection *c, char *buf, size_t size)
{
	if (c == NULL)
		return client_error_copy("", buf, size);
	return handle_last_error(&c->lock, c->last_error, buf, size);
}

psync_status
psync_collection_destroy(psync_collection *c)
{
	if (c == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	if (callback_running(c))
		return PSYNC_ERR_IN_CALLBACK;
	/* first: no handler runs or will run */
	psync_transport_unsubscribe(c->transport, c->subscription);
	psync_transport_unsubscribe(c->transport, c->table_subscription);
	pthread_mutex_lock(&c->lock);
	c->stopping = true;
	pthread_cond_broadcast(&c->cond);
	/* a hung page query: cancel it (the loader then fails the page) */
	while (c->in_loader && c->cancel_load != NULL)
	{
		struct timespec until;

		c->cancel_load(c->load_ctx);
		collection_deadline_in(&until, 100);	/* again if it was not in the query yet */
		pthread_cond_timedwait(&c->cond, &c->lock, &until);
	}
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->worker, NULL);
	pthread_mutex_lock(&c->lock);
	c->destroyed = true;
	free_members(c);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	collection_release(c);
	return PSYNC_OK;
}
