/*
 * collection_row.c — a collection's rows (see collection.c): the member map
 * and its tombstones, envelopes held for later, applying values, row
 * refetch with retries, and the receipt rules (each row reconciled by
 * reconcile.c, docs/protocol.md "Client reconciliation").
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

/* ---- small helpers ---- */

/* Keep "<what>: <detail>" (or what alone) as the last error. */
void
collection_set_error(psync_collection *c, const char *what, const char *detail)
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

member *
collection_find(psync_collection *c, const char *key, size_t len)
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
member *
collection_insert(psync_collection *c, const char *key, size_t len)
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

void
collection_free_value(psync_collection *c, void *value)
{
	if (value != NULL && c->schema.free_value != NULL)
		c->schema.free_value(c->schema.ctx, value);
}

/* Drop removed observers; only when no tell() is iterating. */
void
collection_compact_observers(psync_collection *c)
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
	collection_compact_observers(c);
}

void
collection_set_state(psync_collection *c, psync_collection_state state)
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
		member	   *m = collection_find(c, t->key, strlen(t->key));

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
void
collection_apply_enter(psync_collection *c)
{
	c->depth++;
}

void
collection_apply_leave(psync_collection *c)
{
	if (--c->depth == 0)
		trim_tombstones(c);
}

void
collection_free_tombstones(psync_collection *c)
{
	for (size_t i = 0; i < c->ntombs; i++)
		free(c->tombs[(c->tomb_head + i) % c->tombs_cap].key);
	free(c->tombs);
	c->tombs = NULL;
	c->ntombs = c->tombs_cap = c->tomb_head = 0;
}

void
collection_release(psync_collection *c)
{
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c->observers);
	free(c->table);
	free(c->scope);
	free(c->load_name);
	free(c);
}

/* ---- held envelopes ---- */

static held_env *
hold_copy(const psync_envelope *env)
{
	size_t		sv = env->schema_version ? env->schema_version_len : 0;
	size_t		v = env->has_value ? env->value_len : 0;
	size_t		sc = env->scope ? env->scope_len : 0;
	held_env   *h = malloc(sizeof(*h) + env->key_len + 1 + sv + v + sc);

	if (h == NULL)
		return NULL;
	h->sequence = env->sequence;
	h->op = env->op;
	h->has_value = env->has_value;
	h->key_len = (uint16_t) env->key_len;
	h->sv_len = sv;
	h->value_len = v;
	h->has_scope = env->scope != NULL;
	h->scope_len = (uint16_t) sc;
	memcpy(h->data, env->key, env->key_len);
	h->data[env->key_len] = '\0';
	if (sv > 0)
		memcpy(h->data + env->key_len + 1, env->schema_version, sv);
	if (v > 0)
		memcpy(h->data + env->key_len + 1 + sv, env->value, v);
	if (sc > 0)
		memcpy(h->data + env->key_len + 1 + sv + v, env->scope, sc);
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
	/* the scope it came with: replayed, it is checked again */
	env.scope = h->has_scope ? h->data + h->key_len + 1 + h->sv_len + h->value_len : NULL;
	env.scope_len = h->scope_len;
	return env;
}

bool
collection_list_push(env_list *l, held_env *h)
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

void
collection_list_clear(env_list *l)
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
bool
collection_env_is_nil(const psync_envelope *env)
{
	return !env->has_value || (env->value_len == 1 && env->value[0] == 0xc0);
}

/* Parse env's value (NULL for a delete); false on Err (counted). */
bool
collection_parse_value(psync_collection *c, const psync_envelope *env, void **out)
{
	const char *error = NULL;
	callback_frame frame;
	bool		ok;

	*out = NULL;
	if (collection_env_is_nil(env))
		return true;
	callback_enter(&frame, c);
	ok = c->schema.parse(c->schema.ctx, env->value, env->value_len, env, NULL, out, &error);
	callback_leave(&frame);
	if (!ok)
	{
		c->stats.parse_errors++;
		collection_set_error(c, "value rejected", error);
		*out = NULL;
	}
	return ok;
}

/* env's schema_version as an index into c->versions (+ 1); 0 when out of memory. */
uint16_t
collection_version_of(psync_collection *c, const psync_envelope *env)
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
void
collection_set_member(psync_collection *c, member *m, int64_t seq, void *value)
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
	collection_free_value(c, old);
	if (value == NULL && !push_tombstone(c, m))
		collection_set_error(c, "out of memory", "a deleted row is remembered until the next load");
}

/* ---- row refetch ---- */

static void finish_row_refetch(psync_refetch_request *req, const void *bytes,
							   size_t len, bool ok, const char *error);

/* The reload entry point: every reload (LOST, resync, ...) comes here. */
void
collection_request_reload(psync_collection *c)
{
	c->reload_requested = true;
	pthread_cond_broadcast(&c->cond);
}

void
collection_deadline_in(struct timespec *ts, long ms)
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

bool
collection_ts_before(const struct timespec *a, const struct timespec *b)
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
		collection_set_error(c, "row refetch failed", "out of memory");
		collection_request_reload(c);
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

void
collection_refetch_row(psync_collection *c, member *m)
{
	if (m->refetching)
	{
		m->refetch_again = true;
		return;
	}
	if (c->refetch == NULL)
	{
		collection_request_reload(c);		/* no row refetch: reload the table */
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
		collection_request_reload(c);		/* cannot even remember it: reload */
		return;
	}
	for (int i = 0; i < m->failures && ms < ROW_RETRY_MAX_MS; i++)
		ms *= 2;
	if (m->failures < UINT8_MAX)
		m->failures++;
	collection_deadline_in(&r->due, ms < ROW_RETRY_MAX_MS ? ms : ROW_RETRY_MAX_MS);
	memcpy(r->key, m->key, m->key_len + 1);
	r->next = c->retries;
	c->retries = r;
	m->retrying = true;
	pthread_cond_broadcast(&c->cond);	/* the loader thread times it */
}

/* Retries that are due (loader thread, locked); *next: the earliest left. */
void
collection_run_due_retries(psync_collection *c, struct timespec *next, bool *any)
{
	struct timespec now;
	row_retry **p = &c->retries;

	clock_gettime(CLOCK_MONOTONIC, &now);
	*any = false;
	while (*p != NULL && !c->stopping)
	{
		row_retry  *r = *p;

		if (collection_ts_before(&now, &r->due))
		{
			if (!*any || collection_ts_before(&r->due, next))
				*next = r->due;
			*any = true;
			p = &r->next;
			continue;
		}
		*p = r->next;
		{
			member	   *m = collection_find(c, r->key, strlen(r->key));

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
void
collection_replay_sorted(psync_collection *c, env_list *l)
{
	if (l->n > 1)
		qsort(l->items, l->n, sizeof(*l->items), compare_held);
	for (size_t i = 0; i < l->n; i++)
	{
		psync_envelope env = held_view(l->items[i]);

		collection_receive(c, &env);
	}
	collection_list_clear(l);
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
			if (!collection_list_push(&mine, h))
			{
				free(h);
				m->refetch_again = true;
			}
		}
		else
			c->pending.items[kept++] = h;
	}
	c->pending.n = kept;
	collection_replay_sorted(c, &mine);
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

	return collection_parse_value(g->c, env, &g->value);
}

/* Is env (of a collection of one scope) in the collection's scope? */
static bool
in_scope(const psync_collection *c, const psync_envelope *env)
{
	return env->scope != NULL && env->scope_len == c->scope_len &&
		memcmp(env->scope, c->scope, c->scope_len) == 0;
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
		collection_set_error(c, "row refetch failed", error ? error : "no snapshot");
		return false;
	}
	decoded = psync_envelope_decode(bytes, len, &env) == PSYNC_DECODE_OK;
	if (!decoded || env.key_len != m->key_len || memcmp(env.key, m->key, m->key_len) != 0 ||
		!reconcile_well_formed(&env))
	{
		c->stats.parse_errors++;	/* rule 7 */
		collection_set_error(c, "row refetch failed", "not a snapshot of the row");
		return false;
	}
	m->gen = c->gen;			/* the database confirms it */
	if ((int64_t) env.sequence < m->seq)
		return true;			/* live envelopes already went past it */
	if (c->scope != NULL && !in_scope(c, &env))
	{
		/* the row is in another scope now (or gone): it left this one */
		collection_set_member(c, m, (int64_t) env.sequence, NULL);
		return true;
	}
	switch (reconcile_decide(&s, &env, RECONCILE_REFETCH, true, gate_parse, &g))
	{
		case RECONCILE_BASELINE:	/* rule 2: a refetch result is a baseline */
			m->version = collection_version_of(c, &env);
			collection_set_member(c, m, (int64_t) env.sequence, g.value);
			return true;
		default:				/* rule 1 (collection_parse_value counted it), or 7 */
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
	collection_apply_enter(c);
	m = c->destroyed ? NULL : collection_find(c, req->key, strlen(req->key));
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
			collection_refetch_row(c, m);
	}
	collection_apply_leave(c);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	free(req->key);
	free(req);
	collection_release(c);
}

/* ---- receipt rules ---- */

bool
collection_key_in_table(const psync_collection *c, const char *key, size_t len)
{
	return psync_key_in_table(key, len, c->table, c->table_len);
}

int
collection_key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int			r = memcmp(a, b, alen < blen ? alen : blen);

	return r != 0 ? r : (alen > blen) - (alen < blen);
}

/*
 * During a load: has the page that would hold key been read already?  Pages
 * come in the server's primary-key order, which a client cannot compute
 * from keys (docs/protocol.md, "Loading a whole table" rule 4): a key is
 * known to be paged in once it is held, and every key once the last page
 * is in.
 */
bool
collection_page_passed(psync_collection *c, const char *key, size_t len)
{
	return c->pages_in || collection_find(c, key, len) != NULL;
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

	/*
	 * A collection of one scope sees a row only while it is in the scope:
	 * the upsert that brings a row in (docs/protocol.md "Scopes": a move is
	 * a delete in the old scope, then an upsert in the new one) follows
	 * changes made elsewhere, so for a row not held it is a baseline, not
	 * a gap: its sequence is the key's own.  An older one is still stale.
	 */
	if (c->scope != NULL && m->value == NULL && env->op == PSYNC_OP_UPSERT &&
		(!s.initialized || (int64_t) env->sequence > m->seq))
		s.initialized = false;

	o = reconcile_decide(&s, env, RECONCILE_RECEIPT, true, gate_parse, &g);
	if (o != RECONCILE_STALE && o != RECONCILE_GAP && o != RECONCILE_BAD_MESSAGE)
		m->gen = c->gen;		/* live data confirms it */
	switch (o)
	{
		case RECONCILE_BASELINE:
		case RECONCILE_NEXT:
			c->stats.applied++;
			m->version = collection_version_of(c, env);
			collection_set_member(c, m, (int64_t) env->sequence, g.value);
			return;
		case RECONCILE_STALE:
			c->stats.ignored_stale++;
			break;
		case RECONCILE_GAP:
			c->stats.gaps++;
			collection_refetch_row(c, m);
			break;
		case RECONCILE_BAD_MESSAGE:
			c->stats.parse_errors++;
			collection_set_error(c, "value rejected", "not an envelope of this row");
			collection_refetch_row(c, m);
			break;
		case RECONCILE_PARSE_ERROR:	/* counted by parse_value */
		case RECONCILE_REFETCH_NOTICE:
			collection_refetch_row(c, m);
			break;
	}
	collection_free_value(c, g.value);
}

/* One envelope, live or replayed, with the collection locked. */
void
collection_receive(psync_collection *c, const psync_envelope *env)
{
	member	   *m;

	/* rule 7 for a key that is no row of this table: no row to refetch */
	if (!collection_key_in_table(c, env->key, env->key_len) || !reconcile_well_formed(env))
	{
		c->stats.parse_errors++;
		return;
	}
	m = collection_find(c, env->key, env->key_len);
	if (c->scope != NULL && !in_scope(c, env))
	{
		/*
		 * Another scope's envelope (or one without a scope) on this scope's
		 * subject: a publisher's fault, not this scope's row.  Said and
		 * counted; a member it names is read again (the database knows its
		 * scope), any other key is left out.
		 */
		c->stats.parse_errors++;
		collection_set_error(c, "an envelope of another scope on the scope's subject",
							 env->scope != NULL ? "its scope field names another scope" :
							 "it has no scope field");
		if (m != NULL && m->value != NULL)
			collection_refetch_row(c, m);
		return;
	}
	if (m == NULL && c->loading && !collection_page_passed(c, env->key, env->key_len))
	{
		/* its page is still to come: hold it for that page */
		held_env   *h = hold_copy(env);

		if (h == NULL || !collection_list_push(&c->held, h))
		{
			free(h);
			c->reload_requested = true; /* lost it: load again after this load */
		}
		return;
	}
	if (m != NULL && m->refetching)
	{
		held_env   *h = hold_copy(env);

		if (h == NULL || !collection_list_push(&c->pending, h))
		{
			free(h);
			m->refetch_again = true;
		}
		return;
	}
	/*
	 * A delete of a row never held: nothing to do for a whole table.  In a
	 * collection of one scope it is how a row that entered the scope and
	 * left again shows when the two arrive reversed (or the entering one is
	 * repeated late): remembered as a baseline, like a replica's first
	 * envelope, so that the older upsert is stale, not a row entering.
	 */
	if (m == NULL && collection_env_is_nil(env) && env->op != PSYNC_OP_REFETCH &&
		c->scope == NULL)
		return;
	if (m == NULL && (m = collection_insert(c, env->key, env->key_len)) == NULL)
	{
		collection_set_error(c, "out of memory", NULL);
		collection_request_reload(c);
		return;
	}
	decide_row(c, m, env);
}

