/*
 * watch_view.c — the model behind para-sync-watch's full-screen view.
 *
 * Events: change callbacks (nats.c, refetcher and loader threads) append to
 * a queue under queue_lock; nothing else here is shared.  The main thread
 * takes the whole queue at once and applies it:
 *
 *   - rows: a hash map key → row (open addressing, backward-shift delete)
 *     and a sorted index (an array of row pointers in view_key_cmp order).
 *     New rows wait in "pending" and are merged in, sorted, once per drain,
 *     so a large load costs a sort and a merge per drain rather than a
 *     memmove per row; while the last merge was large, merges are spaced
 *     out (see MERGE_SPACING) so a million-row load stays linear-ish;
 *   - deletions mark the row and keep its last value; a FIFO of deletions
 *     (expiry order) finds the rows deleted longer than deleted_keep ago,
 *     which leave the index in one pass over its pointers;
 *   - the newest recent_max non-initial events stay in a ring for the
 *     recent-changes pane.
 */
#include "watch_view.h"

#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A merge of more than this many rows delays the next merge by a second. */
#define MERGE_SPACING_ROWS 100000

typedef struct source_counts
{
	uint64_t	changes;
	uint64_t	loaded;
} source_counts;

/* A row's deletion, waiting to expire (stale when the row changed since). */
typedef struct deletion
{
	view_row   *row;
	double		at;				/* the row's changed_at when deleted */
} deletion;

struct view
{
	pthread_mutex_t queue_lock;
	view_event *queue_head;
	view_event **queue_tail;

	/* main thread only below */
	double		deleted_keep;
	int			nsources;
	source_counts *counts;

	view_row  **slots;			/* hash map, power-of-two size */
	size_t		nslots;
	size_t		nrows;

	view_row  **sorted;
	size_t		nsorted;
	size_t		sorted_cap;
	view_row  **pending;
	size_t		npending;
	size_t		pending_cap;
	double		next_merge_at;
	size_t		deleted_kept;	/* deleted rows in the index */
	struct deletion *deletions;	/* FIFO, in deletion order = expiry order */
	size_t		del_head;
	size_t		del_count;
	size_t		del_cap;
	size_t	   *doomed;			/* scratch: indexes to drop */
	size_t		doomed_cap;
	size_t		key_width;

	view_event **recent;		/* ring */
	size_t		recent_max;
	size_t		recent_count;
	size_t		recent_next;
};

/* ---- key order ---- */

int
view_key_cmp(const char *a, const char *b)
{
	const char *a0 = a,
			   *b0 = b;

	while (*a && *b)
	{
		if (isdigit((unsigned char) *a) && isdigit((unsigned char) *b))
		{
			const char *ae,
					   *be;

			while (*a == '0' && isdigit((unsigned char) a[1]))
				a++;
			while (*b == '0' && isdigit((unsigned char) b[1]))
				b++;
			for (ae = a; isdigit((unsigned char) *ae); ae++);
			for (be = b; isdigit((unsigned char) *be); be++);
			if (ae - a != be - b)
				return ae - a < be - b ? -1 : 1;
			for (; a < ae; a++, b++)
				if (*a != *b)
					return (unsigned char) *a < (unsigned char) *b ? -1 : 1;
			continue;
		}
		if (*a != *b)
			break;
		a++;
		b++;
	}
	if (*a != *b)
		return (unsigned char) *a < (unsigned char) *b ? -1 : 1;
	return strcmp(a0, b0);		/* only "01" vs "1" get here: still a total order */
}

const char *
view_grouped(uint64_t n, char *buf, size_t size)
{
	char		digits[32];
	int			len = snprintf(digits, sizeof(digits), "%" PRIu64, n);
	size_t		o = 0;

	for (int i = 0; i < len && o + 2 < size; i++)
	{
		if (i > 0 && (len - i) % 3 == 0)
			buf[o++] = ',';
		buf[o++] = digits[i];
	}
	if (size > 0)
		buf[o] = '\0';
	return buf;
}

static int
row_ptr_cmp(const void *x, const void *y)
{
	return view_key_cmp((*(view_row *const *) x)->key, (*(view_row *const *) y)->key);
}

/* ---- hash map ---- */

static uint64_t
key_hash(const char *key, size_t len)
{
	uint64_t	h = 1469598103934665603ULL;	/* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char) key[i]) * 1099511628211ULL;
	return h ^ (h >> 29);
}

static size_t
slot_of(const view *v, const char *key, size_t len)
{
	size_t		mask = v->nslots - 1;
	size_t		i = key_hash(key, len) & mask;

	while (v->slots[i] != NULL &&
		   (v->slots[i]->key_len != len || memcmp(v->slots[i]->key, key, len) != 0))
		i = (i + 1) & mask;
	return i;
}

static bool
map_grow(view *v)
{
	view_row  **old = v->slots;
	size_t		oldn = v->nslots;
	size_t		n = oldn ? oldn * 2 : 1024;
	view_row  **slots = calloc(n, sizeof(*slots));

	if (slots == NULL)
		return false;
	v->slots = slots;
	v->nslots = n;
	for (size_t i = 0; i < oldn; i++)
		if (old[i] != NULL)
			v->slots[slot_of(v, old[i]->key, old[i]->key_len)] = old[i];
	free(old);
	return true;
}

static view_row *
map_get(const view *v, const char *key, size_t len)
{
	return v->nslots ? v->slots[slot_of(v, key, len)] : NULL;
}

static bool
map_put(view *v, view_row *row)
{
	if ((v->nrows + 1) * 2 > v->nslots && !map_grow(v))
		return false;
	v->slots[slot_of(v, row->key, row->key_len)] = row;
	v->nrows++;
	return true;
}

/* Remove row (present) and shift the probe chain back over its slot. */
static void
map_remove(view *v, const view_row *row)
{
	size_t		mask = v->nslots - 1;
	size_t		hole = slot_of(v, row->key, row->key_len);
	size_t		i = hole;

	v->slots[hole] = NULL;
	v->nrows--;
	for (;;)
	{
		size_t		home;

		i = (i + 1) & mask;
		if (v->slots[i] == NULL)
			return;
		home = key_hash(v->slots[i]->key, v->slots[i]->key_len) & mask;
		/* move it into the hole unless its home lies cyclically in (hole, i] */
		if ((i > hole && (home <= hole || home > i)) ||
			(i < hole && home <= hole && home > i))
		{
			v->slots[hole] = v->slots[i];
			v->slots[i] = NULL;
			hole = i;
		}
	}
}

/* ---- lifecycle ---- */

view *
view_new(int nsources, double deleted_keep, size_t recent_max)
{
	view	   *v = calloc(1, sizeof(*v));

	if (v == NULL)
		return NULL;
	v->counts = calloc((size_t) (nsources > 0 ? nsources : 1), sizeof(*v->counts));
	v->recent = calloc(recent_max ? recent_max : 1, sizeof(*v->recent));
	if (v->counts == NULL || v->recent == NULL)
	{
		free(v->counts);
		free(v->recent);
		free(v);
		return NULL;
	}
	pthread_mutex_init(&v->queue_lock, NULL);
	v->queue_tail = &v->queue_head;
	v->nsources = nsources;
	v->deleted_keep = deleted_keep;
	v->recent_max = recent_max ? recent_max : 1;
	return v;
}

static void
event_free(view_event *e)
{
	if (e != NULL)
	{
		free(e->value);
		free(e);
	}
}

void
view_free(view *v)
{
	if (v == NULL)
		return;
	while (v->queue_head != NULL)
	{
		view_event *e = v->queue_head;

		v->queue_head = e->next;
		event_free(e);
	}
	for (size_t i = 0; i < v->nslots; i++)
		if (v->slots[i] != NULL)
		{
			free(v->slots[i]->last_value);
			free(v->slots[i]);
		}
	for (size_t i = 0; i < v->recent_max; i++)
		event_free(v->recent[i]);
	pthread_mutex_destroy(&v->queue_lock);
	free(v->slots);
	free(v->deletions);
	free(v->doomed);
	free(v->sorted);
	free(v->pending);
	free(v->recent);
	free(v->counts);
	free(v);
}

/* ---- posting (any thread) ---- */

void
view_post(view *v, int source, view_change kind, bool initial,
		  const char *key, size_t key_len, int64_t sequence,
		  const char *value, size_t value_len)
{
	view_event *e = malloc(sizeof(*e) + key_len + 1);
	struct timespec now;

	if (e == NULL)
		return;					/* the screen misses a mark; the data is intact */
	clock_gettime(CLOCK_REALTIME, &now);
	memset(e, 0, sizeof(*e));
	e->at = (double) now.tv_sec + now.tv_nsec / 1e9;
	e->source = source;
	e->kind = kind;
	e->initial = initial;
	e->sequence = sequence;
	memcpy(e->key, key, key_len);
	e->key[key_len] = '\0';
	if (!initial && value != NULL)
	{
		size_t		n = value_len > VIEW_SNIPPET_MAX ? VIEW_SNIPPET_MAX : value_len;

		if ((e->value = malloc(n + 1)) != NULL)
		{
			memcpy(e->value, value, n);
			e->value[n] = '\0';
			e->value_cut = n < value_len;
		}
	}
	pthread_mutex_lock(&v->queue_lock);
	*v->queue_tail = e;
	v->queue_tail = &e->next;
	pthread_mutex_unlock(&v->queue_lock);
}

/* ---- draining (main thread) ---- */

static bool
grow(view_row ***array, size_t *cap, size_t need)
{
	size_t		n = *cap ? *cap : 1024;
	view_row  **a;

	if (need <= *cap)
		return true;
	while (n < need)
		n *= 2;
	if ((a = realloc(*array, n * sizeof(**array))) == NULL)
		return false;
	*array = a;
	*cap = n;
	return true;
}

static view_row *
row_for(view *v, const view_event *e)
{
	size_t		len = strlen(e->key);
	view_row   *row = map_get(v, e->key, len);

	if (row != NULL)
		return row;
	if (!grow(&v->pending, &v->pending_cap, v->npending + 1) ||
		(row = calloc(1, sizeof(*row) + len + 1)) == NULL)
		return NULL;
	memcpy(row->key, e->key, len + 1);
	row->key_len = len;
	if (len > v->key_width)
		v->key_width = len;
	row->source = e->source;
	row->sequence = -1;
	row->fresh = !e->initial;
	if (!map_put(v, row))
	{
		free(row);
		return NULL;
	}
	v->pending[v->npending++] = row;
	return row;
}

static void
remember(view *v, view_event *e)
{
	size_t		slot = v->recent_next;

	event_free(v->recent[slot]);
	v->recent[slot] = e;
	v->recent_next = (slot + 1) % v->recent_max;
	if (v->recent_count < v->recent_max)
		v->recent_count++;
}

/*
 * Remember a deletion for expiry.  Out of memory: the row stays (marked)
 * until it is re-added; the screen is wrong by one extra row, nothing else.
 */
static void
push_deletion(view *v, view_row *row)
{
	if (v->del_count == v->del_cap)
	{
		size_t		cap = v->del_cap ? v->del_cap * 2 : 64;
		deletion   *d = malloc(cap * sizeof(*d));

		if (d == NULL)
			return;
		for (size_t i = 0; i < v->del_count; i++)
			d[i] = v->deletions[(v->del_head + i) % v->del_cap];
		free(v->deletions);
		v->deletions = d;
		v->del_cap = cap;
		v->del_head = 0;
	}
	v->deletions[(v->del_head + v->del_count) % v->del_cap] = (deletion) {row, row->changed_at};
	v->del_count++;
}

/* Apply one event; takes ownership of e. */
static void
apply_event(view *v, view_event *e)
{
	view_row   *row = row_for(v, e);
	source_counts *c = (e->source >= 0 && e->source < v->nsources) ? &v->counts[e->source] : NULL;

	if (row != NULL)
	{
		if (row->state == VIEW_ROW_DELETED && e->kind != VIEW_REMOVED)
		{
			row->state = VIEW_ROW_LIVE;
			v->deleted_kept--;
			free(row->last_value);
			row->last_value = NULL;
		}
		row->sequence = e->sequence;
		if (!e->initial)
		{
			row->fresh = row->fresh && e->kind == VIEW_ADDED;
			row->changed_at = e->at;
		}
		if (e->kind == VIEW_REMOVED && row->state == VIEW_ROW_LIVE)
		{
			row->state = VIEW_ROW_DELETED;
			v->deleted_kept++;
			row->last_value = e->value ? strdup(e->value) : NULL;
			push_deletion(v, row);
		}
	}
	if (c != NULL)
	{
		if (e->initial)
			c->loaded++;
		else
			c->changes++;
	}
	if (e->initial)
		event_free(e);
	else
		remember(v, e);
}

static bool
grow_doomed(view *v)
{
	size_t		cap = v->doomed_cap ? v->doomed_cap * 2 : 64;
	size_t	   *d = realloc(v->doomed, cap * sizeof(*d));

	if (d == NULL)
		return false;
	v->doomed = d;
	v->doomed_cap = cap;
	return true;
}

/* Merge the pending rows into the sorted index. */
static bool
merge_pending(view *v, double now)
{
	size_t		n = v->nsorted,
				p = v->npending,
				i,
				j,
				k;

	if (p == 0 || now < v->next_merge_at || !grow(&v->sorted, &v->sorted_cap, n + p))
		return false;
	qsort(v->pending, p, sizeof(*v->pending), row_ptr_cmp);
	/* merge from the back, in place */
	i = n;
	j = p;
	k = n + p;
	while (j > 0)
	{
		if (i > 0 && view_key_cmp(v->sorted[i - 1]->key, v->pending[j - 1]->key) > 0)
			v->sorted[--k] = v->sorted[--i];
		else
			v->sorted[--k] = v->pending[--j];
	}
	for (size_t x = 0; x < p; x++)
		v->pending[x]->sorted = true;
	v->nsorted = n + p;
	v->npending = 0;
	v->next_merge_at = n + p > MERGE_SPACING_ROWS && n > 0 ? now + 1.0 : 0;
	return true;
}

/*
 * Drop rows deleted longer than deleted_keep ago: pop the expired deletions
 * (oldest first), find each row by binary search and close the gaps in one
 * pass over the pointers, without touching the other rows.
 */
static bool
expire_deleted(view *v, double now)
{
	size_t		n = 0,
				kept = 0;

	while (v->del_count > 0)
	{
		deletion   *d = &v->deletions[v->del_head];
		view_row   *row = d->row;

		if (row->state != VIEW_ROW_DELETED || row->changed_at != d->at)
			;					/* re-added (and maybe deleted again) since */
		else if (now - d->at < v->deleted_keep || !row->sorted ||
				 (n == v->doomed_cap && !grow_doomed(v)))
			break;
		else
			v->doomed[n++] = view_lower_bound(v, row->key);
		v->del_head = (v->del_head + 1) % v->del_cap;
		v->del_count--;
	}
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
	{
		view_row   *row = v->sorted[v->doomed[i]];

		map_remove(v, row);
		free(row->last_value);
		free(row);
		v->sorted[v->doomed[i]] = NULL;
	}
	for (size_t i = 0; i < v->nsorted; i++)
		if (v->sorted[i] != NULL)
			v->sorted[kept++] = v->sorted[i];
	v->nsorted = kept;
	v->deleted_kept -= n;
	return true;
}

bool
view_drain(view *v, double now)
{
	view_event *e;
	bool		changed;

	pthread_mutex_lock(&v->queue_lock);
	e = v->queue_head;
	v->queue_head = NULL;
	v->queue_tail = &v->queue_head;
	pthread_mutex_unlock(&v->queue_lock);
	changed = e != NULL;
	while (e != NULL)
	{
		view_event *next = e->next;

		e->next = NULL;
		apply_event(v, e);
		e = next;
	}
	changed |= merge_pending(v, now);
	/* a deleted row still waiting to be merged expires once it is merged */
	changed |= expire_deleted(v, now);
	return changed;
}

/* ---- reading (main thread) ---- */

size_t
view_count(const view *v)
{
	return v->nsorted;
}

const view_row *
view_row_at(const view *v, size_t index)
{
	return index < v->nsorted ? v->sorted[index] : NULL;
}

size_t
view_lower_bound(const view *v, const char *key)
{
	size_t		lo = 0,
				hi = v->nsorted;

	while (lo < hi)
	{
		size_t		mid = lo + (hi - lo) / 2;

		if (view_key_cmp(v->sorted[mid]->key, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

const view_event *
view_recent(const view *v, size_t i)
{
	if (i >= v->recent_count)
		return NULL;
	return v->recent[(v->recent_next + v->recent_max - 1 - i) % v->recent_max];
}

size_t
view_deleted(const view *v)
{
	return v->deleted_kept;
}

size_t
view_key_width(const view *v)
{
	return v->key_width;
}

uint64_t
view_changes(const view *v, int source)
{
	return source >= 0 && source < v->nsources ? v->counts[source].changes : 0;
}

uint64_t
view_loaded(const view *v, int source)
{
	return source >= 0 && source < v->nsources ? v->counts[source].loaded : 0;
}
