/*
 * collection.c — live replicas of whole tables (psync_collection_*).
 *
 * A collection is a hash map key → member {sequence, parsed value}; a
 * member without a value is a tombstone (a deleted row, kept so that an
 * older envelope cannot resurrect it).  The rules, per row:
 *   - loads: it subscribes to "<table>:*" before the first page, so every
 *     change committed after a page was read arrives on the bus.  Pages
 *     come in key order, so the largest key of the pages read so far (the
 *     cursor) splits the keys: an envelope of a row already held, or of a
 *     key at or before the cursor, goes through the receipt rules at once
 *     (rows stay live during a reload); one of a later, unknown key is held
 *     until its page is in, then replayed in (key, sequence) order.  After
 *     the last page, members that neither the pages nor envelopes confirmed
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
 *     held leaves none.  The key map shrinks when it empties;
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

#include <errno.h>
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
#include "reconcile.h"
#include "refetch_internal.h"
#include "sized.h"
#include "transport_internal.h"

#include <msgpack.h>

#define DEFAULT_PAGE_SIZE 10000
#define DEFAULT_PAGE_RETRIES 3
#define DEFAULT_MAX_TOMBSTONES 4096
#define DEFAULT_LAYOUT_CHECK_MS 30000
#define RELOAD_RETRY_MS 1000
#define PAGE_RETRY_MS 100		/* doubled per attempt */
#define ROW_RETRY_MS 50			/* doubled per attempt, up to: */
#define ROW_RETRY_MAX_MS 30000
#define MIN_BUCKETS 1024

typedef struct member
{
	struct member *next;		/* hash chain */
	void	   *value;			/* NULL: tombstone */
	int64_t		seq;
	uint32_t	hash;
	uint32_t	gen;			/* last load (or held envelope) that saw it */
	uint16_t	key_len;
	uint16_t	version;		/* its value's schema_version (versions[i - 1]); 0: unknown */
	bool		refetching;		/* a refetch is in flight or due (retrying) */
	bool		refetch_again;
	bool		retrying;		/* the last refetch failed; a retry is due */
	uint8_t		failures;		/* consecutive failed refetches */
	char		key[];			/* NUL-terminated */
} member;

/* A collection change observer (fn NULL: removed). */
typedef struct observer
{
	psync_observer_id id;
	psync_collection_change_fn fn;
	void	   *ctx;
} observer;

/* A row whose refetch failed: retried by the loader thread at due. */
typedef struct row_retry
{
	struct row_retry *next;
	struct timespec due;
	char		key[];
} row_retry;

/* A remembered delete: evicted (oldest first) beyond max_tombstones. */
typedef struct tomb_ref
{
	char	   *key;
	int64_t		seq;
} tomb_ref;

/* An envelope kept for later: held during a load or a row refetch. */
typedef struct held_env
{
	uint64_t	sequence;
	psync_op	op;
	bool		has_value;
	uint16_t	key_len;
	size_t		sv_len;
	size_t		value_len;
	char		data[];			/* key, NUL, schema_version, value */
} held_env;

typedef struct env_list
{
	held_env  **items;
	size_t		n;
	size_t		cap;
} env_list;

struct psync_collection
{
	pthread_mutex_t lock;		/* recursive */
	pthread_cond_t cond;		/* worker wake-up and idle */
	atomic_int	refs;
	char	   *table;
	size_t		table_len;
	psync_schema schema;
	psync_transport *transport;
	psync_subscription_id subscription;
	psync_load_page_fn load_page;
	void	   *load_ctx;
	psync_refetch_fn refetch;
	void	   *refetch_ctx;
	observer   *observers;		/* in registration order */
	size_t		nobservers;
	size_t		observers_cap;
	int			notifying;
	psync_observer_id next_observer;
	psync_collection_state_fn on_state;
	void	   *on_state_ctx;
	psync_load_layout_fn load_layout;
	psync_cancel_load_fn cancel_load;
	int			page_size;
	int			page_retries;
	size_t		max_tombstones;
	int			layout_check_ms;

	member	  **buckets;
	size_t		nbuckets;
	size_t		nentries;		/* members and tombstones */
	size_t		nmembers;

	uint32_t	gen;
	bool		loading;
	bool		reload_requested;
	bool		stopping;
	bool		destroyed;
	bool		first_load_done;
	bool		in_loader;		/* the loader thread is inside load_page/layout */
	bool		in_load;		/* run_load() runs (layout check included) */
	psync_status first_load_status;
	psync_collection_state state;
	int			refetches_in_flight;	/* rows refetching or waiting to retry */
	char	   *cursor;			/* during a load: the largest key paged in */
	size_t		cursor_len;
	env_list	held;			/* during a load, keys past the cursor */
	env_list	pending;		/* for rows being refetched */
	row_retry  *retries;		/* failed row refetches, to retry */
	tomb_ref   *tombs;			/* ring of remembered deletes */
	size_t		tomb_head;
	size_t		ntombs;
	size_t		tombs_cap;
	struct timespec next_layout_check;
	int			depth;			/* apply_enter() frames open */
	pthread_t	worker;
	psync_collection_counters stats;
	char	  **versions;		/* schema_versions seen, interned */
	size_t		nversions;
	uint64_t	last_reload;	/* sequence of the last reload event acted on */
	bool		reload_seen;
	char		last_error[PSYNC_ERROR_LEN];
};

static void receive(psync_collection *c, const psync_envelope *env);

/* ---- small helpers ---- */

/* Keep "<what>: <detail>" (or what alone) as the last error. */
static void
set_error(psync_collection *c, const char *what, const char *detail)
{
	snprintf(c->last_error, sizeof(c->last_error), "%s%s%s", what,
			 detail != NULL ? ": " : "", detail != NULL ? detail : "");
}

static uint32_t
hash_key(const char *key, size_t len)
{
	uint32_t	h = 2166136261u;	/* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t) key[i]) * 16777619u;
	return h;
}

static member *
find(psync_collection *c, const char *key, size_t len)
{
	uint32_t	h = hash_key(key, len);

	for (member *m = c->buckets[h & (c->nbuckets - 1)]; m != NULL; m = m->next)
		if (m->hash == h && m->key_len == len && memcmp(m->key, key, len) == 0)
			return m;
	return NULL;
}

/* Rehash into n buckets (a power of two); on no memory keep the old ones. */
static void
resize_buckets(psync_collection *c, size_t n)
{
	member	  **b = calloc(n, sizeof(*b));

	if (b == NULL)
		return;					/* longer chains, still correct */
	for (size_t i = 0; i < c->nbuckets; i++)
	{
		member	   *m = c->buckets[i];

		while (m != NULL)
		{
			member	   *next = m->next;

			m->next = b[m->hash & (n - 1)];
			b[m->hash & (n - 1)] = m;
			m = next;
		}
	}
	free(c->buckets);
	c->buckets = b;
	c->nbuckets = n;
}

/* A new tombstone for key (NULL: out of memory). */
static member *
insert(psync_collection *c, const char *key, size_t len)
{
	member	   *m = malloc(sizeof(*m) + len + 1);
	size_t		b;

	if (m == NULL)
		return NULL;
	memset(m, 0, sizeof(*m));
	memcpy(m->key, key, len);
	m->key[len] = '\0';
	m->key_len = (uint16_t) len;
	m->hash = hash_key(key, len);
	m->seq = -1;
	if (c->nentries >= c->nbuckets)
		resize_buckets(c, c->nbuckets * 2);
	b = m->hash & (c->nbuckets - 1);
	m->next = c->buckets[b];
	c->buckets[b] = m;
	c->nentries++;
	return m;
}

/* Give memory back once the key map is mostly empty (TRUNCATE, deletes). */
static void
maybe_shrink(psync_collection *c)
{
	size_t		n = c->nbuckets;

	if (n <= MIN_BUCKETS || c->nentries >= n / 4)
		return;					/* grows at n entries: no see-saw */
	while (n > MIN_BUCKETS && c->nentries < n / 4)
		n /= 2;
	resize_buckets(c, n);
}

/* Unlink and free m, a tombstone nobody waits on. */
static void
remove_member(psync_collection *c, member *m)
{
	member	  **p = &c->buckets[m->hash & (c->nbuckets - 1)];

	while (*p != m)
		p = &(*p)->next;
	*p = m->next;
	free(m);
	c->nentries--;
}

static void
free_value(psync_collection *c, void *value)
{
	if (value != NULL && c->schema.free_value != NULL)
		c->schema.free_value(c->schema.ctx, value);
}

/* Drop removed observers; only when no tell() is iterating. */
static void
compact_observers(psync_collection *c)
{
	size_t		n = 0;

	if (c->notifying > 0)
		return;
	for (size_t i = 0; i < c->nobservers; i++)
		if (c->observers[i].fn != NULL)
			c->observers[n++] = c->observers[i];
	c->nobservers = n;
}

/* Tell every observer (one added meanwhile: from the next change on). */
static void
tell(psync_collection *c, psync_member_change change, const member *m,
	 const void *value)
{
	size_t		n = c->nobservers;
	callback_frame frame;

	if (n == 0 || c->destroyed)
		return;
	callback_enter(&frame, c);
	c->notifying++;
	for (size_t i = 0; i < n; i++)
	{
		observer	o = c->observers[i];

		if (o.fn != NULL)
			o.fn(o.ctx, c, change, m->key, m->key_len, value, m->seq);
	}
	c->notifying--;
	callback_leave(&frame);
	compact_observers(c);
}

static void
set_state(psync_collection *c, psync_collection_state state)
{
	callback_frame frame;

	if (c->state == state)
		return;
	c->state = state;
	if (c->on_state == NULL || c->destroyed)
		return;
	callback_enter(&frame, c);
	c->on_state(c->on_state_ctx, c, state);
	callback_leave(&frame);
}

/* ---- tombstones ---- */

/*
 * Forget the oldest remembered deletes beyond the bound: not during loads,
 * and only at the outermost apply frame (inner ones may hold a member).
 */
static void
trim_tombstones(psync_collection *c)
{
	if (c->depth > 0 || c->destroyed)
		return;
	while (c->ntombs > 0 && c->ntombs > c->max_tombstones &&
		   !c->loading)
	{
		tomb_ref   *t = &c->tombs[c->tomb_head];
		member	   *m = find(c, t->key, strlen(t->key));

		if (m != NULL && m->value == NULL && m->seq == t->seq && !m->refetching)
			remove_member(c, m);
		free(t->key);
		c->tomb_head = (c->tomb_head + 1) % c->tombs_cap;
		c->ntombs--;
	}
	if (c->ntombs == 0)
		c->tomb_head = 0;
	maybe_shrink(c);
}

/* Remember m (just deleted) in the ring; false when out of memory. */
static bool
push_tombstone(psync_collection *c, const member *m)
{
	tomb_ref   *t;

	if (c->ntombs == c->tombs_cap)
	{
		size_t		cap = c->tombs_cap ? c->tombs_cap * 2 : 64;
		tomb_ref   *ring = cap < SIZE_MAX / sizeof(*ring) ? malloc(cap * sizeof(*ring)) : NULL;

		if (ring == NULL)
			return false;
		for (size_t i = 0; i < c->ntombs; i++)
			ring[i] = c->tombs[(c->tomb_head + i) % c->tombs_cap];
		free(c->tombs);
		c->tombs = ring;
		c->tombs_cap = cap;
		c->tomb_head = 0;
	}
	t = &c->tombs[(c->tomb_head + c->ntombs) % c->tombs_cap];
	if ((t->key = strdup(m->key)) == NULL)
		return false;
	t->seq = m->seq;
	c->ntombs++;
	return true;
}

/* Around work that holds member pointers: trimming waits until it is done. */
static void
apply_enter(psync_collection *c)
{
	c->depth++;
}

static void
apply_leave(psync_collection *c)
{
	if (--c->depth == 0)
		trim_tombstones(c);
}

static void
free_tombstones(psync_collection *c)
{
	for (size_t i = 0; i < c->ntombs; i++)
		free(c->tombs[(c->tomb_head + i) % c->tombs_cap].key);
	free(c->tombs);
	c->tombs = NULL;
	c->ntombs = c->tombs_cap = c->tomb_head = 0;
}

static void
release(psync_collection *c)
{
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c->observers);
	free(c->table);
	free(c);
}

/* ---- held envelopes ---- */

static held_env *
hold_copy(const psync_envelope *env)
{
	size_t		sv = env->schema_version ? env->schema_version_len : 0;
	size_t		v = env->has_value ? env->value_len : 0;
	held_env   *h = malloc(sizeof(*h) + env->key_len + 1 + sv + v);

	if (h == NULL)
		return NULL;
	h->sequence = env->sequence;
	h->op = env->op;
	h->has_value = env->has_value;
	h->key_len = (uint16_t) env->key_len;
	h->sv_len = sv;
	h->value_len = v;
	memcpy(h->data, env->key, env->key_len);
	h->data[env->key_len] = '\0';
	if (sv > 0)
		memcpy(h->data + env->key_len + 1, env->schema_version, sv);
	if (v > 0)
		memcpy(h->data + env->key_len + 1 + sv, env->value, v);
	return h;
}

static psync_envelope
held_view(const held_env *h)
{
	psync_envelope env = {0};

	env.key = h->data;
	env.key_len = h->key_len;
	env.schema_version = h->data + h->key_len + 1;
	env.schema_version_len = h->sv_len;
	env.has_value = h->has_value;
	env.value = h->has_value ? (const uint8_t *) h->data + h->key_len + 1 + h->sv_len : NULL;
	env.value_len = h->value_len;
	env.sequence = h->sequence;
	env.op = h->op;
	return env;
}

static bool
list_push(env_list *l, held_env *h)
{
	if (l->n == l->cap)
	{
		size_t		cap = l->cap ? l->cap * 2 : 64;
		held_env  **items = cap < SIZE_MAX / sizeof(*items) ?
			realloc(l->items, cap * sizeof(*items)) : NULL;

		if (items == NULL)
			return false;
		l->items = items;
		l->cap = cap;
	}
	l->items[l->n++] = h;
	return true;
}

static void
list_clear(env_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->n = l->cap = 0;
}

static int
compare_held(const void *a, const void *b)
{
	const held_env *x = *(held_env *const *) a;
	const held_env *y = *(held_env *const *) b;
	size_t		n = x->key_len < y->key_len ? x->key_len : y->key_len;
	int			c = memcmp(x->data, y->data, n);

	if (c != 0)
		return c;
	if (x->key_len != y->key_len)
		return x->key_len < y->key_len ? -1 : 1;
	return (x->sequence > y->sequence) - (x->sequence < y->sequence);
}

/* ---- applying values ---- */

/* A delete (or a snapshot of an absent row): no value, or nil (0xc0). */
static bool
env_is_nil(const psync_envelope *env)
{
	return !env->has_value || (env->value_len == 1 && env->value[0] == 0xc0);
}

/* Parse env's value (NULL for a delete); false on Err (counted). */
static bool
parse_value(psync_collection *c, const psync_envelope *env, void **out)
{
	const char *error = NULL;
	callback_frame frame;
	bool		ok;

	*out = NULL;
	if (env_is_nil(env))
		return true;
	callback_enter(&frame, c);
	ok = c->schema.parse(c->schema.ctx, env->value, env->value_len, env, NULL, out, &error);
	callback_leave(&frame);
	if (!ok)
	{
		c->stats.parse_errors++;
		set_error(c, "value rejected", error);
		*out = NULL;
	}
	return ok;
}

/* env's schema_version as an index into c->versions (+ 1); 0 when out of memory. */
static uint16_t
version_of(psync_collection *c, const psync_envelope *env)
{
	size_t		len = env->schema_version ? env->schema_version_len : 0;
	char	  **grown;

	for (size_t i = 0; i < c->nversions; i++)
		if (strlen(c->versions[i]) == len && memcmp(c->versions[i], env->schema_version, len) == 0)
			return (uint16_t) (i + 1);
	if (c->nversions >= UINT16_MAX ||
		(grown = realloc(c->versions, (c->nversions + 1) * sizeof(*grown))) == NULL)
		return 0;
	c->versions = grown;
	if ((c->versions[c->nversions] = strndup(len > 0 ? env->schema_version : "", len)) == NULL)
		return 0;
	return (uint16_t) ++c->nversions;
}

/* Make m's state (seq, value) and tell the application what changed. */
static void
set_member(psync_collection *c, member *m, int64_t seq, void *value)
{
	void	   *old = m->value;

	m->seq = seq;
	m->value = value;
	if (value != NULL && old == NULL)
	{
		c->nmembers++;
		tell(c, PSYNC_MEMBER_ADDED, m, value);
	}
	else if (value != NULL)
		tell(c, PSYNC_MEMBER_UPDATED, m, value);
	else if (old != NULL)
	{
		c->nmembers--;
		tell(c, PSYNC_MEMBER_REMOVED, m, old);
	}
	free_value(c, old);
	if (value == NULL && !push_tombstone(c, m))
		set_error(c, "out of memory", "a deleted row is remembered until the next load");
}

/* ---- row refetch ---- */

static void finish_row_refetch(psync_refetch_request *req, const void *bytes,
							   size_t len, bool ok, const char *error);

/* The reload entry point: every reload (LOST, resync, ...) comes here. */
static void
request_reload(psync_collection *c)
{
	c->reload_requested = true;
	pthread_cond_broadcast(&c->cond);
}

static void
deadline_in(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L)
	{
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static bool
ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Ask the refetch function for m (m->refetching already set). */
static void
issue_refetch(psync_collection *c, member *m)
{
	psync_refetch_request *req = malloc(sizeof(*req));
	callback_frame frame;

	if (req == NULL || (req->key = strdup(m->key)) == NULL)
	{
		free(req);
		m->refetching = false;
		c->refetches_in_flight--;
		set_error(c, "row refetch failed", "out of memory");
		request_reload(c);
		return;
	}
	req->owner = c;
	req->finish = finish_row_refetch;
	atomic_fetch_add(&c->refs, 1);
	c->stats.row_refetches++;
	callback_enter(&frame, c);
	c->refetch(c->refetch_ctx, req->key, req);	/* may complete at once */
	callback_leave(&frame);
}

static void
refetch_row(psync_collection *c, member *m)
{
	if (m->refetching)
	{
		m->refetch_again = true;
		return;
	}
	if (c->refetch == NULL)
	{
		request_reload(c);		/* no row refetch: reload the table */
		return;
	}
	m->refetching = true;
	c->refetches_in_flight++;
	issue_refetch(c, m);
}

/* m's refetch failed: retry that row later (it stays "refetching"). */
static void
schedule_retry(psync_collection *c, member *m)
{
	long		ms = ROW_RETRY_MS;
	row_retry  *r = malloc(sizeof(*r) + m->key_len + 1);

	c->stats.row_refetch_failures++;
	if (r == NULL)
	{
		m->refetching = false;
		c->refetches_in_flight--;
		request_reload(c);		/* cannot even remember it: reload */
		return;
	}
	for (int i = 0; i < m->failures && ms < ROW_RETRY_MAX_MS; i++)
		ms *= 2;
	if (m->failures < UINT8_MAX)
		m->failures++;
	deadline_in(&r->due, ms < ROW_RETRY_MAX_MS ? ms : ROW_RETRY_MAX_MS);
	memcpy(r->key, m->key, m->key_len + 1);
	r->next = c->retries;
	c->retries = r;
	m->retrying = true;
	pthread_cond_broadcast(&c->cond);	/* the loader thread times it */
}

/* Retries that are due (loader thread, locked); *next: the earliest left. */
static void
run_due_retries(psync_collection *c, struct timespec *next, bool *any)
{
	struct timespec now;
	row_retry **p = &c->retries;

	clock_gettime(CLOCK_MONOTONIC, &now);
	*any = false;
	while (*p != NULL && !c->stopping)
	{
		row_retry  *r = *p;

		if (ts_before(&now, &r->due))
		{
			if (!*any || ts_before(&r->due, next))
				*next = r->due;
			*any = true;
			p = &r->next;
			continue;
		}
		*p = r->next;
		{
			member	   *m = find(c, r->key, strlen(r->key));

			if (m != NULL && m->retrying)
			{
				m->retrying = false;
				issue_refetch(c, m);
			}
		}
		free(r);
		p = &c->retries;		/* the list may have changed meanwhile */
	}
}

/* Envelopes of l, in (key, sequence) order, through the receipt rules; empties l. */
static void
replay_sorted(psync_collection *c, env_list *l)
{
	if (l->n > 1)
		qsort(l->items, l->n, sizeof(*l->items), compare_held);
	for (size_t i = 0; i < l->n; i++)
	{
		psync_envelope env = held_view(l->items[i]);

		receive(c, &env);
	}
	list_clear(l);
}

/* Replay what was held for m while it was refetched. */
static void
replay_pending(psync_collection *c, member *m)
{
	env_list	mine = {0};
	size_t		kept = 0;

	for (size_t i = 0; i < c->pending.n; i++)
	{
		held_env   *h = c->pending.items[i];

		if (h->key_len == m->key_len && memcmp(h->data, m->key, m->key_len) == 0)
		{
			if (!list_push(&mine, h))
			{
				free(h);
				m->refetch_again = true;
			}
		}
		else
			c->pending.items[kept++] = h;
	}
	c->pending.n = kept;
	replay_sorted(c, &mine);
}

/* The parse gate (rule 1) as reconcile_decide calls it. */
typedef struct gate
{
	psync_collection *c;
	void	   *value;
} gate;

static bool
gate_parse(void *ctx, const psync_envelope *env)
{
	gate	   *g = ctx;

	return parse_value(g->c, env, &g->value);
}

/* A refetch result for m: false when it is not a usable snapshot of m. */
static bool
apply_snapshot(psync_collection *c, member *m, const void *bytes, size_t len,
			   bool ok, const char *error)
{
	psync_envelope env;
	reconcile_state s = {m->seq >= 0, m->seq};
	gate		g = {c, NULL};
	bool		decoded;

	if (!ok)
	{
		set_error(c, "row refetch failed", error ? error : "no snapshot");
		return false;
	}
	decoded = psync_envelope_decode(bytes, len, &env) == PSYNC_DECODE_OK;
	if (!decoded || env.key_len != m->key_len || memcmp(env.key, m->key, m->key_len) != 0 ||
		!reconcile_well_formed(&env))
	{
		c->stats.parse_errors++;	/* rule 7 */
		set_error(c, "row refetch failed", "not a snapshot of the row");
		return false;
	}
	m->gen = c->gen;			/* the database confirms it */
	if ((int64_t) env.sequence < m->seq)
		return true;			/* live envelopes already went past it */
	switch (reconcile_decide(&s, &env, RECONCILE_REFETCH, true, gate_parse, &g))
	{
		case RECONCILE_BASELINE:	/* rule 2: a refetch result is a baseline */
			m->version = version_of(c, &env);
			set_member(c, m, (int64_t) env.sequence, g.value);
			return true;
		default:				/* rule 1 (parse_value counted it), or 7 */
			return false;
	}
}

static void
finish_row_refetch(psync_refetch_request *req, const void *bytes, size_t len,
				   bool ok, const char *error)
{
	psync_collection *c = req->owner;
	member	   *m;

	pthread_mutex_lock(&c->lock);
	apply_enter(c);
	m = c->destroyed ? NULL : find(c, req->key, strlen(req->key));
	if (c->destroyed)
		;
	else if (m == NULL || !m->refetching || m->retrying)
		c->refetches_in_flight--;	/* cannot happen: such rows are kept */
	else if (!apply_snapshot(c, m, bytes, len, ok, error))
		schedule_retry(c, m);	/* that row again later, not the table */
	else
	{
		bool		again = m->refetch_again;

		c->refetches_in_flight--;
		m->failures = 0;
		m->refetch_again = false;
		m->refetching = false;
		replay_pending(c, m);
		if (again && !m->refetching)
			refetch_row(c, m);
	}
	apply_leave(c);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	free(req->key);
	free(req);
	release(c);
}

/* ---- receipt rules ---- */

static bool
key_in_table(const psync_collection *c, const char *key, size_t len)
{
	return psync_key_in_table(key, len, c->table, c->table_len);
}

static int
key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int			r = memcmp(a, b, alen < blen ? alen : blen);

	return r != 0 ? r : (alen > blen) - (alen < blen);
}

/* During a load: has the page that would hold key been read already? */
static bool
page_passed(const psync_collection *c, const char *key, size_t len)
{
	return c->cursor != NULL && key_cmp(key, len, c->cursor, c->cursor_len) <= 0;
}

/*
 * A member's envelope through the rules (reconcile.h), numbered as there.
 * A rule that refetches refetches that row only.
 */
static void
decide_row(psync_collection *c, member *m, const psync_envelope *env)
{
	reconcile_state s = {m->seq >= 0, m->seq};
	gate		g = {c, NULL};
	reconcile_outcome o;

	o = reconcile_decide(&s, env, RECONCILE_RECEIPT, true, gate_parse, &g);
	if (o != RECONCILE_STALE && o != RECONCILE_GAP && o != RECONCILE_BAD_MESSAGE)
		m->gen = c->gen;		/* live data confirms it */
	switch (o)
	{
		case RECONCILE_BASELINE:
		case RECONCILE_NEXT:
			c->stats.applied++;
			m->version = version_of(c, env);
			set_member(c, m, (int64_t) env->sequence, g.value);
			return;
		case RECONCILE_STALE:
			c->stats.ignored_stale++;
			break;
		case RECONCILE_GAP:
			c->stats.gaps++;
			refetch_row(c, m);
			break;
		case RECONCILE_BAD_MESSAGE:
			c->stats.parse_errors++;
			set_error(c, "value rejected", "not an envelope of this row");
			refetch_row(c, m);
			break;
		case RECONCILE_PARSE_ERROR:	/* counted by parse_value */
		case RECONCILE_REFETCH_NOTICE:
			refetch_row(c, m);
			break;
	}
	free_value(c, g.value);
}

/* One envelope, live or replayed, with the collection locked. */
static void
receive(psync_collection *c, const psync_envelope *env)
{
	member	   *m;

	/* rule 7 for a key that is no row of this table: no row to refetch */
	if (!key_in_table(c, env->key, env->key_len) || !reconcile_well_formed(env))
	{
		c->stats.parse_errors++;
		return;
	}
	m = find(c, env->key, env->key_len);
	if (m == NULL && c->loading && !page_passed(c, env->key, env->key_len))
	{
		/* its page is still to come: hold it for that page */
		held_env   *h = hold_copy(env);

		if (h == NULL || !list_push(&c->held, h))
		{
			free(h);
			c->reload_requested = true; /* lost it: load again after this load */
		}
		return;
	}
	if (m != NULL && m->refetching)
	{
		held_env   *h = hold_copy(env);

		if (h == NULL || !list_push(&c->pending, h))
		{
			free(h);
			m->refetch_again = true;
		}
		return;
	}
	if (m == NULL && env_is_nil(env) && env->op != PSYNC_OP_REFETCH)
		return;					/* a delete of a row never held: nothing to do */
	if (m == NULL && (m = insert(c, env->key, env->key_len)) == NULL)
	{
		set_error(c, "out of memory", NULL);
		request_reload(c);
		return;
	}
	decide_row(c, m, env);
}

/* ---- loads (the collection's thread) ---- */

/* A page as the loader delivered it, copied (the loader runs unlocked). */
typedef struct raw_row
{
	size_t		len;
	char		data[];
} raw_row;

typedef struct page_buf
{
	raw_row   **rows;
	size_t		n;
	size_t		cap;
	bool		oom;
} page_buf;

static void
collect_row(void *ctx, const void *bytes, size_t len)
{
	page_buf   *p = ctx;
	raw_row    *r;

	if (p->oom)
		return;
	if (p->n == p->cap)
	{
		size_t		cap = p->cap ? p->cap * 2 : 256;
		raw_row   **rows = realloc(p->rows, cap * sizeof(*rows));

		if (rows == NULL)
		{
			p->oom = true;
			return;
		}
		p->rows = rows;
		p->cap = cap;
	}
	if ((r = malloc(sizeof(*r) + len)) == NULL)
	{
		p->oom = true;
		return;
	}
	r->len = len;
	memcpy(r->data, bytes, len);
	p->rows[p->n++] = r;
}

static void
page_free(page_buf *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->rows[i]);
	free(p->rows);
	memset(p, 0, sizeof(*p));
}

/*
 * The "key" field of a row that psync_envelope_decode rejected, as a
 * malloc'd string (NULL: none): the next page must still start after it.
 */
static char *
raw_key(const raw_row *row, size_t *len)
{
	msgpack_unpacked u;
	char	   *key = NULL;

	msgpack_unpacked_init(&u);
	if (msgpack_unpack_next(&u, row->data, row->len, NULL) == MSGPACK_UNPACK_SUCCESS &&
		u.data.type == MSGPACK_OBJECT_MAP)
	{
		const msgpack_object_map *map = &u.data.via.map;

		for (uint32_t i = 0; i < map->size && key == NULL; i++)
		{
			const msgpack_object *k = &map->ptr[i].key;
			const msgpack_object *v = &map->ptr[i].val;

			if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == 3 &&
				memcmp(k->via.str.ptr, "key", 3) == 0 && v->type == MSGPACK_OBJECT_STR &&
				(key = strndup(v->via.str.ptr, v->via.str.size)) != NULL)
				*len = v->via.str.size;
		}
	}
	msgpack_unpacked_destroy(&u);
	return key;
}

/*
 * One row of a page, with the collection locked: a member's baseline when
 * its sequence is newer, or the same under another schema_version (column
 * DDL rewrote it).  NULL, or why the row cannot be accepted.
 */
static const char *
page_row(psync_collection *c, const raw_row *row, psync_envelope *env)
{
	member	   *m;
	void	   *value;
	uint16_t	version;
	psync_decode_error rc = psync_envelope_decode(row->data, row->len, env);

	if (rc != PSYNC_DECODE_OK)
		return psync_decode_error_text(rc);
	if (!key_in_table(c, env->key, env->key_len))
		return "not a key of this table";
	if (env_is_nil(env))
		return "no value";
	c->stats.rows_loaded++;
	m = find(c, env->key, env->key_len);
	if (m == NULL && (m = insert(c, env->key, env->key_len)) == NULL)
		return "out of memory";
	m->gen = c->gen;
	version = version_of(c, env);
	if ((int64_t) env->sequence < m->seq || m->refetching ||
		((int64_t) env->sequence == m->seq && version != 0 && version == m->version))
		return NULL;			/* we already have this or newer, or it was deleted */
	if (parse_value(c, env, &value))
	{
		m->version = version;
		set_member(c, m, (int64_t) env->sequence, value);
	}
	return NULL;
}

/* Count a row that was not accepted and say which and why. */
static void
skip_row(psync_collection *c, const raw_row *row, const char *why)
{
	size_t		len = 0;
	char	   *key = raw_key(row, &len);
	char		detail[400];

	c->stats.rows_skipped++;
	snprintf(detail, sizeof(detail), "%s%s%.*s%s", why, key ? " (key \"" : "",
			 key ? (int) (len < 200 ? len : 200) : 0, key ? key : "", key ? "\")" : "");
	set_error(c, "page row skipped", detail);
	free(key);
}

/*
 * Rows the load did not confirm are gone (deleted while messages were
 * lost); records of keys never held (a value the parser rejected, a
 * malformed message) are dropped.
 */
static void
sweep(psync_collection *c)
{
	for (size_t b = 0; b < c->nbuckets; b++)
	{
		member	  **p = &c->buckets[b];

		while (*p != NULL)
		{
			member	   *m = *p;

			if (m->value == NULL && m->seq < 0 && !m->refetching)
			{
				*p = m->next;
				free(m);
				c->nentries--;
				continue;
			}
			if (m->value != NULL && m->gen != c->gen && !m->refetching)
				set_member(c, m, m->seq, NULL);
			p = &m->next;
		}
	}
}

/* Envelopes held for keys up to the cursor now, in (key, sequence) order. */
static void
replay_passed(psync_collection *c)
{
	env_list	now = {0};
	size_t		kept = 0;

	for (size_t i = 0; i < c->held.n; i++)
	{
		held_env   *h = c->held.items[i];

		if (page_passed(c, h->data, h->key_len) && list_push(&now, h))
			continue;
		c->held.items[kept++] = h;
	}
	c->held.n = kept;
	replay_sorted(c, &now);
}

/* The page after `after`, loaded unlocked, inside a callback frame. */
static psync_status
fetch_page(psync_collection *c, const char *after, page_buf *page, char *err,
		   size_t err_size)
{
	callback_frame frame;
	psync_status st;

	c->in_loader = true;
	pthread_mutex_unlock(&c->lock);
	err[0] = '\0';
	callback_enter(&frame, c);	/* destroy from the loader is refused */
	st = c->load_page(c->load_ctx, c->table, after, c->page_size,
					  collect_row, page, err, err_size);
	callback_leave(&frame);
	pthread_mutex_lock(&c->lock);
	c->in_loader = false;
	pthread_cond_broadcast(&c->cond);
	if (st == PSYNC_OK && page->oom)
		st = PSYNC_ERR_NO_MEMORY;
	if (st != PSYNC_OK && err[0] == '\0')
		snprintf(err, err_size, "%s", psync_status_text(st));
	return st;
}

/* Wait ms, or less when stopping; locked. */
static void
wait_ms(psync_collection *c, int ms)
{
	struct timespec until;

	deadline_in(&until, ms);
	while (!c->stopping &&
		   pthread_cond_timedwait(&c->cond, &c->lock, &until) != ETIMEDOUT)
		;
}

/*
 * Apply one page, locked; advances the cursor to its largest key.  false
 * (error in err) when a full page did not advance past after.
 */
static bool
apply_page(psync_collection *c, page_buf *page, const char *after, char *err,
		   size_t err_size, bool *last)
{
	const char *max_key = NULL;
	size_t		max_len = 0;
	char	   *skipped_max = NULL;
	size_t		skipped_len = 0;
	char	   *cursor;

	for (size_t i = 0; i < page->n; i++)
	{
		psync_envelope env;
		const char *why = page_row(c, page->rows[i], &env);

		if (why == NULL)
		{
			if (max_key == NULL || key_cmp(env.key, env.key_len, max_key, max_len) > 0)
			{
				max_key = env.key;	/* points into page: valid below */
				max_len = env.key_len;
			}
			continue;
		}
		skip_row(c, page->rows[i], why);
		{
			size_t		len = 0;
			char	   *key = raw_key(page->rows[i], &len);

			if (key != NULL && (skipped_max == NULL ||
								key_cmp(key, len, skipped_max, skipped_len) > 0))
			{
				free(skipped_max);
				skipped_max = key;
				skipped_len = len;
			}
			else
				free(key);
		}
	}
	if (skipped_max != NULL &&
		(max_key == NULL || key_cmp(skipped_max, skipped_len, max_key, max_len) > 0))
	{
		max_key = skipped_max;
		max_len = skipped_len;
	}
	*last = page->n < (size_t) c->page_size;
	if (!*last && (max_key == NULL ||
				   (after != NULL && key_cmp(max_key, max_len, after, strlen(after)) <= 0)))
	{
		snprintf(err, err_size, "the loader did not advance past %s%s%s",
				 after ? "key \"" : "the first page", after ? after : "", after ? "\"" : "");
		free(skipped_max);
		return false;
	}
	if (max_key != NULL && (cursor = strndup(max_key, max_len)) != NULL)
	{
		free(c->cursor);
		c->cursor = cursor;
		c->cursor_len = max_len;
	}
	free(skipped_max);
	replay_passed(c);			/* envelopes that waited for these rows */
	return true;
}

/* Load every page (locked on entry and exit); false on failure (last_error). */
static bool
load_all(psync_collection *c)
{
	char		err[PSYNC_ERROR_LEN];
	int			attempt = 0;

	for (;;)
	{
		page_buf	page = {0};
		char	   *after = c->cursor ? strndup(c->cursor, c->cursor_len) : NULL;
		psync_status st;
		bool		last = false;

		if (c->cursor != NULL && after == NULL)
		{
			set_error(c, "load failed", "out of memory");
			return false;
		}
		if (c->stopping)
		{
			free(after);
			return false;
		}
		st = fetch_page(c, after, &page, err, sizeof(err));
		if (st == PSYNC_OK && !c->stopping)
		{
			apply_enter(c);
			if (!apply_page(c, &page, after, err, sizeof(err), &last))
				st = PSYNC_ERR_DATABASE;
			apply_leave(c);
		}
		page_free(&page);
		free(after);
		if (c->stopping)
			return false;
		if (st == PSYNC_OK && last)
			return true;
		if (st == PSYNC_OK)
		{
			attempt = 0;
			continue;
		}
		set_error(c, "load failed", err);
		if (attempt >= c->page_retries)
			return false;
		wait_ms(c, PAGE_RETRY_MS << (attempt < 10 ? attempt : 10));
		attempt++;
	}
}

/*
 * Compare the layout the server publishes the table in with the
 * transport's (locked; the query runs unlocked).  false: a mismatch (state
 * ERROR, detail in last_error).  A failed check is not a mismatch.
 */
static bool
layout_matches(psync_collection *c)
{
	const char *mine = transport_table_layout(c->transport, c->table);
	char		theirs[16] = "";
	char		err[PSYNC_ERROR_LEN] = "";
	callback_frame frame;
	psync_status st;
	char		detail[400];

	if (c->layout_check_ms > 0)
		deadline_in(&c->next_layout_check, c->layout_check_ms);
	if (c->load_layout == NULL || mine == NULL)
		return true;
	c->in_loader = true;
	pthread_mutex_unlock(&c->lock);
	callback_enter(&frame, c);
	st = c->load_layout(c->load_ctx, c->table, theirs, sizeof(theirs), err, sizeof(err));
	callback_leave(&frame);
	pthread_mutex_lock(&c->lock);
	c->in_loader = false;
	pthread_cond_broadcast(&c->cond);
	if (st != PSYNC_OK)
	{
		set_error(c, "layout check failed", err[0] ? err : psync_status_text(st));
		return true;
	}
	if (strcmp(theirs, mine) == 0)
		return true;
	snprintf(detail, sizeof(detail),
			 "the server publishes table \"%s\" in the '%s' layout, the transport "
			 "subscribes in the '%s' layout: no change would arrive (list the table "
			 "in psync_nats_options.table_layout, or not)", c->table, theirs, mine);
	set_error(c, "subject layout mismatch", detail);
	set_state(c, PSYNC_COLLECTION_ERROR);
	return false;
}

/* One load: the first or a reload; locked. */
static void
run_load(psync_collection *c)
{
	bool		ok;
	bool		layout_ok;

	c->reload_requested = false;
	c->in_load = true;			/* busy for wait_idle from here on */
	set_state(c, c->first_load_done ? PSYNC_COLLECTION_RELOADING : PSYNC_COLLECTION_LOADING);
	layout_ok = layout_matches(c);
	ok = layout_ok;
	if (layout_ok)
	{
		c->loading = true;		/* later keys are held from now on */
		c->gen++;
		free(c->cursor);
		c->cursor = NULL;
		ok = load_all(c);
		apply_enter(c);
		free(c->cursor);
		c->cursor = NULL;		/* every key counts as paged in now */
		replay_sorted(c, &c->held);
		if (ok)
		{
			c->stats.loads++;
			sweep(c);
		}
		c->loading = false;
		apply_leave(c);			/* forget deletes beyond the bound */
	}
	if (!c->first_load_done)
	{
		c->first_load_done = true;
		c->first_load_status = ok ? PSYNC_OK :
			layout_ok ? PSYNC_ERR_DATABASE : PSYNC_ERR_LAYOUT;
		if (!ok)
			c->stopping = true;
	}
	if (ok)
		set_state(c, PSYNC_COLLECTION_LIVE);
	c->in_load = false;
	pthread_cond_broadcast(&c->cond);
	if (!ok && layout_ok && !c->stopping)
	{
		c->reload_requested = true; /* still busy for wait_idle */
		wait_ms(c, RELOAD_RETRY_MS);
	}
}

static void *
worker_main(void *arg)
{
	psync_collection *c = arg;

	pthread_mutex_lock(&c->lock);
	for (;;)
	{
		while (!c->reload_requested && !c->stopping)
		{
			struct timespec next;
			struct timespec now;
			bool		any;

			run_due_retries(c, &next, &any);
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (c->layout_check_ms > 0 && c->load_layout != NULL && !c->stopping &&
				!ts_before(&now, &c->next_layout_check))
			{
				bool		was_error = c->state == PSYNC_COLLECTION_ERROR;

				if (layout_matches(c) && was_error)
					request_reload(c);	/* the cause is gone: catch up */
				continue;
			}
			if (c->layout_check_ms > 0 && c->load_layout != NULL &&
				(!any || ts_before(&c->next_layout_check, &next)))
			{
				next = c->next_layout_check;
				any = true;
			}
			if (c->reload_requested || c->stopping)
				break;
			if (any)
				pthread_cond_timedwait(&c->cond, &c->lock, &next);
			else
				pthread_cond_wait(&c->cond, &c->lock);
		}
		if (c->stopping)
			break;
		run_load(c);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* ---- transport events ---- */

/* An event of the table itself (key "<table>"), with the collection locked. */
static void
table_event(psync_collection *c, const psync_envelope *env)
{
	if (env->op != PSYNC_OP_RELOAD)
	{
		c->stats.parse_errors++;
		set_error(c, "an unknown event for the table", psync_op_name(env->op));
		request_reload(c);
	}
	else if (c->reload_seen && env->sequence <= c->last_reload)
		c->stats.ignored_stale++;	/* a resend */
	else
	{
		c->reload_seen = true;
		c->last_reload = env->sequence;
		request_reload(c);		/* rows changed at their sequence: read them again */
	}
}

static void
on_event(void *ctx, const psync_event *event)
{
	psync_collection *c = ctx;

	pthread_mutex_lock(&c->lock);
	apply_enter(c);
	if (c->destroyed || c->stopping)
		;
	else if (event->kind == PSYNC_EVENT_ENVELOPE &&
			 event->envelope->key_len == c->table_len &&
			 memcmp(event->envelope->key, c->table, c->table_len) == 0)
		table_event(c, event->envelope);
	else if (event->kind == PSYNC_EVENT_ENVELOPE)
		receive(c, event->envelope);
	else if (event->kind == PSYNC_EVENT_MALFORMED)
	{
		member	   *m = NULL;

		c->stats.parse_errors++;
		set_error(c, "a malformed message for the table", NULL);
		if (event->key != NULL && key_in_table(c, event->key, event->key_len) &&
			(!c->loading || page_passed(c, event->key, event->key_len)))
		{
			m = find(c, event->key, event->key_len);
			if (m == NULL)
				m = insert(c, event->key, event->key_len);
		}
		if (m != NULL)
			refetch_row(c, m);
		else
			request_reload(c);
	}
	else
		request_reload(c);		/* LOST: whatever is in flight, load again */
	apply_leave(c);
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

			free_value(c, m->value);
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
	list_clear(&c->held);
	list_clear(&c->pending);
	free_tombstones(c);
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
	char		pattern[80];
	psync_status st;

	if (out == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	*out = NULL;
	collection_options_defaults(&o);
	if (caller_opts == NULL || !sized_read(&o, sizeof(o), caller_opts) || opts->table == NULL || !table_name_is_valid(opts->table) ||
		opts->schema.parse == NULL || opts->transport == NULL ||
		opts->load_page == NULL || opts->page_size < 0)
		return PSYNC_ERR_INVALID_ARGUMENT;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return PSYNC_ERR_NO_MEMORY;
	c->table = strdup(opts->table);
	c->nbuckets = MIN_BUCKETS;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	if (c->table == NULL || c->buckets == NULL || init_sync(c) != PSYNC_OK)
	{
		free(c->table);
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
		release(c);
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

	/* subscribe first: every change after a page was read will arrive */
	snprintf(pattern, sizeof(pattern), "%s:*", c->table);
	st = psync_transport_subscribe(c->transport, pattern, on_event, c, &c->subscription);
	if (st != PSYNC_OK)
	{
		char		text[PSYNC_ERROR_LEN];

		psync_transport_last_error(c->transport, text, sizeof(text));
		client_thread_error("could not subscribe to %s: %s", pattern, text);
		free_members(c);
		release(c);
		return st;
	}
	if (pthread_create(&c->worker, NULL, worker_main, c) != 0)
	{
		psync_transport_unsubscribe(c->transport, c->subscription);
		free_members(c);
		release(c);
		return PSYNC_ERR_SYSTEM;
	}
	pthread_mutex_lock(&c->lock);
	while (!c->first_load_done)
		pthread_cond_wait(&c->cond, &c->lock);
	st = c->first_load_status;
	if (st != PSYNC_OK)
		client_thread_error("%s", c->last_error);
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
	m = c->buckets ? find(c, key, strlen(key)) : NULL;
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
		request_reload(c);
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
	compact_observers(c);
	pthread_mutex_unlock(&c->lock);
}

/* A load, a reload or a row refetch (or its retry) is in flight. */
static bool
busy(const psync_collection *c)
{
	return c->in_load || c->loading || c->reload_requested || c->refetches_in_flight > 0;
}

psync_status
psync_collection_wait_idle(psync_collection *c, int timeout_ms)
{
	struct timespec until;
	psync_status st = PSYNC_OK;

	if (c == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	if (callback_running(NULL))
		return PSYNC_ERR_IN_CALLBACK;
	clock_gettime(CLOCK_MONOTONIC, &until);
	if (timeout_ms >= 0)
	{
		until.tv_sec += timeout_ms / 1000;
		until.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L)
		{
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&c->lock);
	while (busy(c) && !c->stopping && st == PSYNC_OK)
	{
		if (timeout_ms < 0)
			pthread_cond_wait(&c->cond, &c->lock);
		else if (pthread_cond_timedwait(&c->cond, &c->lock, &until) == ETIMEDOUT)
			st = busy(c) ? PSYNC_ERR_TIMEOUT : PSYNC_OK;
	}
	pthread_mutex_unlock(&c->lock);
	return st;
}

size_t
psync_collection_last_error(psync_collection *c, char *buf, size_t size)
{
	size_t		len;

	if (c == NULL)
		return error_copy("", buf, size);
	pthread_mutex_lock(&c->lock);
	len = error_copy(c->last_error, buf, size);
	pthread_mutex_unlock(&c->lock);
	return len;
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
	pthread_mutex_lock(&c->lock);
	c->stopping = true;
	pthread_cond_broadcast(&c->cond);
	/* a hung page query: cancel it (the loader then fails the page) */
	while (c->in_loader && c->cancel_load != NULL)
	{
		struct timespec until;

		c->cancel_load(c->load_ctx);
		deadline_in(&until, 100);	/* again if it was not in the query yet */
		pthread_cond_timedwait(&c->cond, &c->lock, &until);
	}
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->worker, NULL);
	pthread_mutex_lock(&c->lock);
	c->destroyed = true;
	free_members(c);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	release(c);
	return PSYNC_OK;
}
