/*
 * collection.c — live replicas of whole tables (psync_collection_*).
 *
 * A collection is a hash map key → member {sequence, parsed value}; a
 * member without a value is a tombstone (a deleted row, kept so that an
 * older envelope cannot resurrect it).  The rules, per row:
 *   - loads: it subscribes to "<table>:*" before the first page, so every
 *     change committed after a page was read arrives on the bus.  While
 *     pages load, envelopes are held; after the last page they are sorted
 *     by (key, sequence) and go through the receipt rules, then members
 *     that neither the pages nor the held envelopes confirmed are removed
 *     (they were deleted while messages were lost: only reloads have any);
 *   - a page row replaces a member only when its sequence is newer;
 *   - receipt: first envelope ever seen for a key → baseline; sequence <=
 *     current → stale; current + 1 → applied; beyond → gap → that row is
 *     refetched (envelopes for it are held meanwhile and replayed after);
 *   - PSYNC_EVENT_LOST → reload in the background, members stay;
 *   - the table's reload event (key "<table>", docs/protocol.md "Table
 *     events": column DDL changed every row's snapshot at the same
 *     sequence) → the same reload.  Each member remembers the
 *     schema_version its value was read under, so a page row at the
 *     member's own sequence replaces it when the versions differ (the
 *     value was rewritten by DDL), and only then.
 *
 * Threads: loads run on the collection's own thread (pages are fetched
 * without the lock, applied with it); envelopes arrive on transport
 * delivery threads, refetch results on the refetcher's.  One recursive
 * mutex guards everything and is held while application callbacks run,
 * inside callback frames (callback.h) so that destroy/wait from a callback
 * are refused.  Refetch requests hold a reference, so a result that
 * arrives after destroy lands safely.
 */
#include "para_sync/client.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "callback.h"
#include "client_error.h"
#include "refetch_internal.h"
#include "transport_internal.h"

#define DEFAULT_PAGE_SIZE 10000
#define RELOAD_RETRY_MS 1000

typedef struct member
{
	struct member *next;		/* hash chain */
	void	   *value;			/* NULL: tombstone */
	int64_t		seq;
	uint32_t	hash;
	uint32_t	gen;			/* last load (or held envelope) that saw it */
	uint16_t	key_len;
	uint16_t	version;		/* its value's schema_version (versions[i - 1]); 0: unknown */
	bool		refetching;
	bool		refetch_again;
	char		key[];			/* NUL-terminated */
} member;

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
	psync_collection_change_fn on_change;
	void	   *on_change_ctx;
	int			page_size;

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
	psync_status first_load_status;
	int			refetches_in_flight;
	env_list	held;			/* during a load */
	env_list	pending;		/* for rows being refetched */
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

static void
grow_buckets(psync_collection *c)
{
	size_t		n = c->nbuckets * 2;
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
		grow_buckets(c);
	b = m->hash & (c->nbuckets - 1);
	m->next = c->buckets[b];
	c->buckets[b] = m;
	c->nentries++;
	return m;
}

static void
free_value(psync_collection *c, void *value)
{
	if (value != NULL && c->schema.free_value != NULL)
		c->schema.free_value(c->schema.ctx, value);
}

static void
tell(psync_collection *c, psync_member_change change, const member *m,
	 const void *value)
{
	callback_frame frame;

	if (c->on_change == NULL || c->destroyed)
		return;
	callback_enter(&frame, c);
	c->on_change(c->on_change_ctx, c, change, m->key, m->key_len, value, m->seq);
	callback_leave(&frame);
}

static void
release(psync_collection *c)
{
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
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
}

/* ---- row refetch ---- */

static void finish_row_refetch(psync_refetch_request *req, const void *bytes,
							   size_t len, bool ok, const char *error);

static void
request_reload(psync_collection *c)
{
	c->reload_requested = true;
	pthread_cond_broadcast(&c->cond);
}

static void
refetch_row(psync_collection *c, member *m)
{
	psync_refetch_request *req;
	callback_frame frame;

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
	req = malloc(sizeof(*req));
	if (req == NULL || (req->key = strdup(m->key)) == NULL)
	{
		free(req);
		set_error(c, "row refetch failed", "out of memory");
		request_reload(c);
		return;
	}
	req->owner = c;
	req->finish = finish_row_refetch;
	atomic_fetch_add(&c->refs, 1);
	m->refetching = true;
	c->refetches_in_flight++;
	c->stats.row_refetches++;
	callback_enter(&frame, c);
	c->refetch(c->refetch_ctx, req->key, req);	/* may complete at once */
	callback_leave(&frame);
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

static void
finish_row_refetch(psync_refetch_request *req, const void *bytes, size_t len,
				   bool ok, const char *error)
{
	psync_collection *c = req->owner;
	member	   *m;

	pthread_mutex_lock(&c->lock);
	c->refetches_in_flight--;
	m = c->destroyed ? NULL : find(c, req->key, strlen(req->key));
	if (m != NULL)
	{
		psync_envelope env;
		bool		again = m->refetch_again;

		m->refetching = false;
		m->refetch_again = false;
		if (!ok)
		{
			set_error(c, "row refetch failed", error ? error : "no snapshot");
			request_reload(c);	/* the row is unknown now: reload */
		}
		else if (psync_envelope_decode(bytes, len, &env) != PSYNC_DECODE_OK ||
				 env.key_len != m->key_len || memcmp(env.key, m->key, m->key_len) != 0)
		{
			c->stats.parse_errors++;
			set_error(c, "row refetch failed", "not a snapshot of the row");
			request_reload(c);
		}
		else if ((int64_t) env.sequence >= m->seq)
		{
			void	   *value;

			if (parse_value(c, &env, &value))
			{
				m->version = version_of(c, &env);
				set_member(c, m, (int64_t) env.sequence, value);
			}
			else
				request_reload(c);
		}
		replay_pending(c, m);
		if (again && !m->refetching)
			refetch_row(c, m);
	}
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
	return len > c->table_len + 1 && memcmp(key, c->table, c->table_len) == 0 &&
		key[c->table_len] == ':';
}

/* One envelope, live or replayed, with the collection locked. */
static void
receive(psync_collection *c, const psync_envelope *env)
{
	member	   *m;
	void	   *value;

	if (!key_in_table(c, env->key, env->key_len) || env->sequence > PSYNC_MAX_SEQUENCE)
	{
		c->stats.parse_errors++;
		return;
	}
	if (c->loading)
	{
		held_env   *h = hold_copy(env);

		if (h == NULL || !list_push(&c->held, h))
		{
			free(h);
			c->reload_requested = true; /* lost it: load again after this load */
		}
		return;
	}
	m = find(c, env->key, env->key_len);
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
	if (m == NULL)
	{
		if ((m = insert(c, env->key, env->key_len)) == NULL)
		{
			set_error(c, "out of memory", NULL);
			request_reload(c);
			return;
		}
	}
	else if ((int64_t) env->sequence <= m->seq)
	{
		c->stats.ignored_stale++;
		return;
	}
	else if ((int64_t) env->sequence != m->seq + 1 && m->seq >= 0)
	{
		c->stats.gaps++;
		refetch_row(c, m);
		return;
	}
	m->gen = c->gen;			/* live data confirms it */
	if (env->op == PSYNC_OP_REFETCH || env->op == PSYNC_OP_RELOAD)
	{
		refetch_row(c, m);		/* too large for the bus (or not a row's) */
		return;
	}
	if (!parse_value(c, env, &value))
	{
		refetch_row(c, m);
		return;
	}
	c->stats.applied++;
	m->version = version_of(c, env);
	set_member(c, m, (int64_t) env->sequence, value);
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
}

/*
 * One row of a page, with the collection locked: a member's baseline when
 * its sequence is newer, or the same under another schema_version (column
 * DDL rewrote it).  false: not a snapshot row of this table.
 */
static bool
page_row(psync_collection *c, const raw_row *row, psync_envelope *env)
{
	member	   *m;
	void	   *value;
	uint16_t	version;

	if (psync_envelope_decode(row->data, row->len, env) != PSYNC_DECODE_OK ||
		!key_in_table(c, env->key, env->key_len) || env_is_nil(env))
		return false;
	c->stats.rows_loaded++;
	m = find(c, env->key, env->key_len);
	if (m == NULL && (m = insert(c, env->key, env->key_len)) == NULL)
		return false;
	m->gen = c->gen;
	version = version_of(c, env);
	if ((int64_t) env->sequence < m->seq ||
		((int64_t) env->sequence == m->seq && version != 0 && version == m->version))
		return true;			/* we already have this or newer, or it was deleted */
	if (parse_value(c, env, &value))
	{
		m->version = version;
		set_member(c, m, (int64_t) env->sequence, value);
	}
	return true;
}

/* Rows the load did not confirm are gone (deleted while messages were lost). */
static void
sweep(psync_collection *c)
{
	for (size_t b = 0; b < c->nbuckets; b++)
		for (member *m = c->buckets[b]; m != NULL; m = m->next)
			if (m->value != NULL && m->gen != c->gen && !m->refetching)
				set_member(c, m, m->seq, NULL);
}

/* Held envelopes, in (key, sequence) order, through the receipt rules. */
static void
reconcile_held(psync_collection *c)
{
	env_list	held = c->held;

	memset(&c->held, 0, sizeof(c->held));
	replay_sorted(c, &held);
}

static int
key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int			r = memcmp(a, b, alen < blen ? alen : blen);

	return r != 0 ? r : (alen > blen) - (alen < blen);
}

/* Load every page; false on failure (text in last_error). */
static bool
load_all(psync_collection *c)
{
	char	   *after = NULL;
	char		err[PSYNC_ERROR_LEN];

	for (;;)
	{
		page_buf	page = {0};
		psync_status st;
		const char *max_key = NULL;
		size_t		max_len = 0;
		bool		bad = false;

		pthread_mutex_lock(&c->lock);
		if (c->stopping)
		{
			pthread_mutex_unlock(&c->lock);
			free(after);
			return false;
		}
		pthread_mutex_unlock(&c->lock);

		err[0] = '\0';
		st = c->load_page(c->load_ctx, c->table, after, c->page_size,
						  collect_row, &page, err, sizeof(err));
		pthread_mutex_lock(&c->lock);
		if (st != PSYNC_OK || page.oom)
			set_error(c, "load failed", err[0] ? err :
					  psync_status_text(st != PSYNC_OK ? st : PSYNC_ERR_NO_MEMORY));
		else
			for (size_t i = 0; i < page.n && !bad; i++)
			{
				psync_envelope env;

				if (!page_row(c, page.rows[i], &env))
					bad = true;
				else if (max_key == NULL ||
						 key_cmp(env.key, env.key_len, max_key, max_len) > 0)
				{
					max_key = env.key;	/* points into page: valid below */
					max_len = env.key_len;
				}
			}
		if (bad)
			set_error(c, "load failed", "the loader returned a row that is not a snapshot of this table");
		pthread_mutex_unlock(&c->lock);
		free(after);
		after = NULL;
		if (st != PSYNC_OK || page.oom || bad)
		{
			page_free(&page);
			return false;
		}
		if (page.n < (size_t) c->page_size || max_key == NULL)
		{
			page_free(&page);
			return true;
		}
		after = strndup(max_key, max_len);
		page_free(&page);
		if (after == NULL)
		{
			pthread_mutex_lock(&c->lock);
			set_error(c, "load failed", "out of memory");
			pthread_mutex_unlock(&c->lock);
			return false;
		}
	}
}

static void
wait_ms(psync_collection *c, int ms)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long) (ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L)
	{
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (!c->stopping &&
		   pthread_cond_timedwait(&c->cond, &c->lock, &until) != ETIMEDOUT)
		;
}

static void *
worker_main(void *arg)
{
	psync_collection *c = arg;

	pthread_mutex_lock(&c->lock);
	for (;;)
	{
		bool		ok;

		while (!c->reload_requested && !c->stopping)
			pthread_cond_wait(&c->cond, &c->lock);
		if (c->stopping)
			break;
		c->reload_requested = false;
		c->loading = true;		/* envelopes are held from now on */
		c->gen++;
		pthread_mutex_unlock(&c->lock);
		ok = load_all(c);
		pthread_mutex_lock(&c->lock);
		c->loading = false;
		reconcile_held(c);
		if (ok)
		{
			c->stats.loads++;
			sweep(c);
		}
		if (!c->first_load_done)
		{
			c->first_load_done = true;
			c->first_load_status = ok ? PSYNC_OK : PSYNC_ERR_DATABASE;
			if (!ok)
				c->stopping = true;
		}
		pthread_cond_broadcast(&c->cond);
		if (!ok && !c->stopping)
		{
			wait_ms(c, RELOAD_RETRY_MS);
			c->reload_requested = true;
		}
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
		if (!c->loading && event->key != NULL &&
			key_in_table(c, event->key, event->key_len))
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
	pthread_mutex_unlock(&c->lock);
}

/* ---- the API ---- */

void
psync_collection_options_init(psync_collection_options *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->page_size = DEFAULT_PAGE_SIZE;
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
psync_collection_new(const psync_collection_options *opts, psync_collection **out)
{
	psync_collection *c;
	char		pattern[80];
	psync_status st;

	if (out == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	*out = NULL;
	if (opts == NULL || opts->table == NULL || !table_name_is_valid(opts->table) ||
		opts->schema.parse == NULL || opts->transport == NULL ||
		opts->load_page == NULL || opts->page_size < 0)
		return PSYNC_ERR_INVALID_ARGUMENT;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return PSYNC_ERR_NO_MEMORY;
	c->table = strdup(opts->table);
	c->nbuckets = 1024;
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
	c->on_change = opts->on_change;
	c->on_change_ctx = opts->on_change_ctx;
	c->page_size = opts->page_size > 0 ? opts->page_size : DEFAULT_PAGE_SIZE;
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
		psync_unsubscribe(c->transport, c->subscription);
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
psync_collection_stats(psync_collection *c, psync_collection_counters *out)
{
	if (c == NULL || out == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	*out = c->stats;
	pthread_mutex_unlock(&c->lock);
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
	while ((c->loading || c->reload_requested || c->refetches_in_flight > 0) &&
		   !c->stopping && st == PSYNC_OK)
	{
		if (timeout_ms < 0)
			pthread_cond_wait(&c->cond, &c->lock);
		else if (pthread_cond_timedwait(&c->cond, &c->lock, &until) == ETIMEDOUT)
			st = (c->loading || c->reload_requested || c->refetches_in_flight > 0) ?
				PSYNC_ERR_TIMEOUT : PSYNC_OK;
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
	psync_unsubscribe(c->transport, c->subscription);
	pthread_mutex_lock(&c->lock);
	c->stopping = true;
	pthread_cond_broadcast(&c->cond);
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
