/*
 * collection_load.c — loading a collection's table page by page, on the
 * collection's own thread (see collection.c): pages fetched unlocked and
 * applied locked, envelopes held for pages still to come, the sweep after
 * the last page, the layout check, and the thread's loop (loads, reloads,
 * row refetch retries).
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
#include "collection_internal.h"
#include "handle.h"
#include "reconcile.h"
#include "refetch_internal.h"
#include "sized.h"
#include "transport_internal.h"

#include <msgpack.h>

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
	if (!collection_key_in_table(c, env->key, env->key_len))
		return "not a key of this table";
	if (collection_env_is_nil(env))
		return "no value";
	if (c->scope != NULL && (env->scope == NULL || env->scope_len != c->scope_len ||
							 memcmp(env->scope, c->scope, c->scope_len) != 0))
		return "a row of another scope";
	c->stats.rows_loaded++;
	m = collection_find(c, env->key, env->key_len);
	if (m == NULL && (m = collection_insert(c, env->key, env->key_len)) == NULL)
		return "out of memory";
	m->gen = c->gen;
	version = collection_version_of(c, env);
	if ((int64_t) env->sequence < m->seq || m->refetching ||
		((int64_t) env->sequence == m->seq && version != 0 && version == m->version))
		return NULL;			/* we already have this or newer, or it was deleted */
	if (collection_parse_value(c, env, &value))
	{
		m->version = version;
		collection_set_member(c, m, (int64_t) env->sequence, value);
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
	collection_set_error(c, "page row skipped", detail);
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
				collection_set_member(c, m, m->seq, NULL);
			p = &m->next;
		}
	}
}

/* Envelopes held for keys now paged in, in (key, sequence) order. */
static void
replay_passed(psync_collection *c)
{
	env_list	now = {0};
	size_t		kept = 0;

	for (size_t i = 0; i < c->held.n; i++)
	{
		held_env   *h = c->held.items[i];

		if (collection_page_passed(c, h->data, h->key_len) && collection_list_push(&now, h))
			continue;
		c->held.items[kept++] = h;
	}
	c->held.n = kept;
	collection_replay_sorted(c, &now);
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
	st = c->load_page(c->load_ctx, c->load_name, after, c->page_size,
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

	collection_deadline_in(&until, ms);
	while (!c->stopping &&
		   pthread_cond_timedwait(&c->cond, &c->lock, &until) != ETIMEDOUT)
		;
}

/*
 * Apply one page, locked; advances the cursor to its last key (pages come
 * in the server's order: the next page starts after the last key).  false
 * (error in err) when a full page did not advance past after.
 */
static bool
apply_page(psync_collection *c, page_buf *page, const char *after, char *err,
		   size_t err_size, bool *last)
{
	char	   *last_key = NULL;
	size_t		last_len = 0;

	for (size_t i = 0; i < page->n; i++)
	{
		psync_envelope env;
		const char *why = page_row(c, page->rows[i], &env);

		free(last_key);
		last_key = NULL;
		if (why == NULL)
		{
			if ((last_key = malloc(env.key_len + 1)) != NULL)
			{
				memcpy(last_key, env.key, env.key_len);
				last_key[env.key_len] = '\0';
				last_len = env.key_len;
			}
			continue;
		}
		skip_row(c, page->rows[i], why);
		last_key = raw_key(page->rows[i], &last_len);	/* NULL: none */
	}
	*last = page->n < (size_t) c->page_size;
	if (!*last && (last_key == NULL ||
				   (after != NULL && collection_key_cmp(last_key, last_len, after, strlen(after)) == 0)))
	{
		snprintf(err, err_size, "the loader did not advance past %s%s%s",
				 after ? "key \"" : "the first page", after ? after : "", after ? "\"" : "");
		free(last_key);
		return false;
	}
	if (last_key != NULL)
	{
		free(c->cursor);
		c->cursor = last_key;
		c->cursor_len = last_len;
	}
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
			collection_set_error(c, "load failed", "out of memory");
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
			collection_apply_enter(c);
			if (!apply_page(c, &page, after, err, sizeof(err), &last))
				st = PSYNC_ERR_DATABASE;
			collection_apply_leave(c);
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
		collection_set_error(c, "load failed", err);
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
		collection_deadline_in(&c->next_layout_check, c->layout_check_ms);
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
		collection_set_error(c, "layout check failed", err[0] ? err : psync_status_text(st));
		return true;
	}
	if (strcmp(theirs, mine) == 0)
		return true;
	snprintf(detail, sizeof(detail),
			 "the server publishes table \"%s\" in the '%s' layout, the transport "
			 "subscribes in the '%s' layout: no change would arrive (list the table "
			 "in psync_nats_options.table_layout or scoped_tables, or not)",
			 c->table, theirs, mine);
	collection_set_error(c, "subject layout mismatch", detail);
	collection_set_state(c, PSYNC_COLLECTION_ERROR);
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
	collection_set_state(c, c->first_load_done ? PSYNC_COLLECTION_RELOADING : PSYNC_COLLECTION_LOADING);
	layout_ok = !c->refused && layout_matches(c);
	ok = layout_ok;
	if (c->refused)
		collection_set_state(c, PSYNC_COLLECTION_ERROR);	/* nothing would arrive */
	if (layout_ok)
	{
		c->loading = true;		/* unknown keys are held from now on */
		c->pages_in = false;
		c->gen++;
		free(c->cursor);
		c->cursor = NULL;
		ok = load_all(c);
		collection_apply_enter(c);
		free(c->cursor);
		c->cursor = NULL;
		c->pages_in = true;		/* every key counts as paged in now */
		collection_replay_sorted(c, &c->held);
		if (ok)
		{
			c->stats.loads++;
			sweep(c);
		}
		c->loading = false;
		collection_apply_leave(c);			/* forget deletes beyond the bound */
	}
	if (!c->first_load_done)
	{
		c->first_load_done = true;
		c->first_load_status = ok ? PSYNC_OK :
			layout_ok ? PSYNC_ERR_DATABASE :
			c->refused ? PSYNC_ERR_PERMISSION : PSYNC_ERR_LAYOUT;
		if (!ok)
			c->stopping = true;
	}
	if (ok)
		collection_set_state(c, PSYNC_COLLECTION_LIVE);
	c->in_load = false;
	pthread_cond_broadcast(&c->cond);
	if (!ok && layout_ok && !c->stopping)
	{
		c->reload_requested = true; /* still busy for wait_idle */
		wait_ms(c, RELOAD_RETRY_MS);
	}
}

void *
collection_worker_main(void *arg)
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

			collection_run_due_retries(c, &next, &any);
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (c->layout_check_ms > 0 && c->load_layout != NULL && !c->stopping &&
				!collection_ts_before(&now, &c->next_layout_check))
			{
				bool		was_error = c->state == PSYNC_COLLECTION_ERROR;

				if (layout_matches(c) && was_error)
					collection_request_reload(c);	/* the cause is gone: catch up */
				continue;
			}
			if (c->layout_check_ms > 0 && c->load_layout != NULL &&
				(!any || collection_ts_before(&c->next_layout_check, &next)))
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

