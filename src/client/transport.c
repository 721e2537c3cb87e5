/*
 * transport.c — the transport core: subscriptions, ids and delivery.
 *
 * Owns the contract every transport honours (docs/protocol.md; the seed's
 * SyncTransport): handlers subscribed when a delivery starts each get the
 * event, in subscription order; a handler added during delivery does not;
 * unsubscribe is idempotent (ids are never reused) and, once it returns, the
 * handler is neither running on another thread nor called again; a key with
 * no subscribers is removed at once (psync_transport_key_count()).
 *
 * Delivery takes the lock twice (snapshot the handlers, pinning their
 * memory; unpin them) and never while a handler runs, so handlers may
 * subscribe, unsubscribe and publish.  Whether a handler is running is an
 * atomic counter checked against the atomic "active" flag in Dekker style:
 * either the deliverer sees the unsubscription and skips the handler, or
 * the unsubscriber sees it running and waits.  Up to DELIVERY_STACK handlers
 * are snapshotted on the stack: the common path does not allocate.
 */
#include "client_error.h"
#include "transport_internal.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "para_sync/key.h"

#define DELIVERY_STACK 32
#define NO_SLOT SIZE_MAX

struct subscription
{
	psync_subscription_id id;
	key_entry  *entry;			/* NULL once unsubscribed */
	psync_handler_fn fn;
	void	   *ctx;
	atomic_bool active;
	atomic_uint running;		/* handler calls in progress */
	unsigned	pins;			/* snapshots holding it; under the lock */
	bool		free_when_unpinned; /* unsubscribed while pinned */
};

struct sub_slot
{
	uint32_t	generation;
	subscription *sub;
	size_t		next_free;
};

/* Handlers running on this thread, innermost first (for unsubscribe). */
typedef struct delivery_frame
{
	const subscription *sub;
	struct delivery_frame *next;
} delivery_frame;

static __thread delivery_frame *tls_frames;

psync_status
transport_init(psync_transport *t, const transport_ops *ops, void *backend)
{
	memset(t, 0, sizeof(*t));
	t->ops = ops;
	t->backend = backend;
	t->free_slot = NO_SLOT;
	if (!keymap_init(&t->keys))
		return PSYNC_ERR_NO_MEMORY;
	if (pthread_mutex_init(&t->lock, NULL) != 0)
	{
		keymap_free(&t->keys);
		return PSYNC_ERR_SYSTEM;
	}
	if (pthread_cond_init(&t->handler_done, NULL) != 0)
	{
		pthread_mutex_destroy(&t->lock);
		keymap_free(&t->keys);
		return PSYNC_ERR_SYSTEM;
	}
	return PSYNC_OK;
}

/* ---- keys ---- */

bool
transport_key_is_subscribable(const char *key, size_t len)
{
	return psync_key_is_valid(key, len);
}

bool
transport_key_is_pattern(const char *key, size_t len, size_t *table_len)
{
	const char *scope;
	size_t		scope_len;

	if (len < 3 || key[len - 1] != '*' || key[len - 2] != ':')
		return false;
	*table_len = transport_table_len(key, len - 2);
	if (!psync_sync_name_is_valid(key, *table_len))
		return false;
	return *table_len == len - 2 ||
		transport_pattern_scope(key, len, &scope, &scope_len);
}

bool
transport_pattern_scope(const char *key, size_t len, const char **scope,
						size_t *scope_len)
{
	size_t		tl = transport_table_len(key, len);

	if (tl >= len || key[tl] != '@' || len < 3 || key[len - 1] != '*' ||
		key[len - 2] != ':' || tl + 1 > len - 2)
		return false;
	*scope = key + tl + 1;
	*scope_len = (size_t) (key + len - 2 - *scope);
	return psync_scope_is_valid(*scope, *scope_len);
}

/* ---- subscription ids: slot index + generation, never reused ---- */

static psync_subscription_id
slot_alloc(psync_transport *t, subscription *sub)
{
	size_t		i;

	if (t->free_slot != NO_SLOT)
	{
		i = t->free_slot;
		t->free_slot = t->slots[i].next_free;
	}
	else
	{
		if (t->nslots == t->slots_cap)
		{
			size_t		cap = t->slots_cap ? t->slots_cap * 2 : 16;
			sub_slot   *slots = realloc(t->slots, cap * sizeof(*slots));

			if (slots == NULL)
				return 0;
			t->slots = slots;
			t->slots_cap = cap;
		}
		i = t->nslots++;
		t->slots[i].generation = 0;
	}
	t->slots[i].generation++;
	t->slots[i].sub = sub;
	return ((uint64_t) t->slots[i].generation << 32) | (uint64_t) (i + 1);
}

static subscription *
slot_take(psync_transport *t, psync_subscription_id id)
{
	size_t		i = (size_t) (id & 0xffffffffu);
	uint32_t	generation = (uint32_t) (id >> 32);
	subscription *sub;

	if (i == 0 || i > t->nslots)
		return NULL;
	i--;
	sub = t->slots[i].sub;
	if (sub == NULL || t->slots[i].generation != generation)
		return NULL;
	t->slots[i].sub = NULL;
	t->slots[i].next_free = t->free_slot;
	t->free_slot = i;
	return sub;
}

/* ---- entries ---- */

static key_entry *
entry_new(psync_transport *t, const char *key, size_t len)
{
	key_entry  *e = calloc(1, sizeof(*e));
	size_t		table_len;

	if (e == NULL || (e->key = malloc(len + 1)) == NULL)
	{
		free(e);
		return NULL;
	}
	memcpy(e->key, key, len);
	e->key[len] = '\0';
	e->key_len = len;
	e->is_pattern = transport_key_is_pattern(key, len, &table_len);
	if (!keymap_put(&t->keys, key, len, e))
	{
		free(e->key);
		free(e);
		return NULL;
	}
	if (e->is_pattern)
		t->npatterns++;
	return e;
}

static bool
entry_append(key_entry *e, subscription *sub)
{
	if (e->nsubs == e->cap)
	{
		size_t		cap = e->cap ? e->cap * 2 : 4;
		subscription **subs = realloc(e->subs, cap * sizeof(*subs));

		if (subs == NULL)
			return false;
		e->subs = subs;
		e->cap = cap;
	}
	e->subs[e->nsubs++] = sub;
	sub->entry = e;
	return true;
}

static void
entry_remove_sub(key_entry *e, subscription *sub)
{
	for (size_t i = 0; i < e->nsubs; i++)
	{
		if (e->subs[i] == sub)
		{
			memmove(&e->subs[i], &e->subs[i + 1],
					(e->nsubs - i - 1) * sizeof(*e->subs));
			e->nsubs--;
			break;
		}
	}
	sub->entry = NULL;
}

/* Unlink an empty entry; returns its backend data for detach. */
static void *
entry_drop(psync_transport *t, key_entry *e)
{
	void	   *data = e->backend_data;

	keymap_remove(&t->keys, e->key, e->key_len);
	if (e->is_pattern)
		t->npatterns--;
	free(e->subs);
	free(e->key);
	free(e);
	return data;
}

/* ---- subscribe / unsubscribe ---- */

static psync_status subscribe_key(psync_transport *t, const char *key, size_t len,
								  psync_handler_fn handler, void *ctx,
								  psync_subscription_id *out_id);

psync_status
psync_transport_subscribe(psync_transport *t, const char *key,
						  psync_handler_fn handler, void *ctx,
						  psync_subscription_id *out_id)
{
	size_t		len,
				table_len;

	if (t == NULL || key == NULL || handler == NULL || out_id == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	len = strlen(key);
	if (!transport_key_is_subscribable(key, len) &&
		!transport_key_is_pattern(key, len, &table_len))
		return PSYNC_ERR_INVALID_ARGUMENT;
	return subscribe_key(t, key, len, handler, ctx, out_id);
}

psync_status
transport_subscribe_table(psync_transport *t, const char *sync_name,
						  psync_handler_fn handler, void *ctx,
						  psync_subscription_id *out_id)
{
	size_t		len;

	if (t == NULL || sync_name == NULL || handler == NULL || out_id == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	len = strlen(sync_name);
	if (!psync_sync_name_is_valid(sync_name, len))
		return PSYNC_ERR_INVALID_ARGUMENT;
	return subscribe_key(t, sync_name, len, handler, ctx, out_id);
}

/* Add a subscription to key (checked by the caller), attaching it if new. */
static psync_status
subscribe_key(psync_transport *t, const char *key, size_t len,
			  psync_handler_fn handler, void *ctx, psync_subscription_id *out_id)
{
	key_entry  *e;
	subscription *sub;
	bool		created = false;
	void	   *data = NULL;
	psync_status st;

	if ((sub = calloc(1, sizeof(*sub))) == NULL)
		return PSYNC_ERR_NO_MEMORY;
	sub->fn = handler;
	sub->ctx = ctx;
	atomic_init(&sub->active, true);
	atomic_init(&sub->running, 0);

	pthread_mutex_lock(&t->lock);
	e = keymap_get(&t->keys, key, len);
	if (e == NULL)
	{
		created = true;
		e = entry_new(t, key, len);
	}
	if (e == NULL || !entry_append(e, sub) || (sub->id = slot_alloc(t, sub)) == 0)
	{
		if (e != NULL && sub->entry != NULL)
			entry_remove_sub(e, sub);
		if (e != NULL && e->nsubs == 0)
			entry_drop(t, e);
		pthread_mutex_unlock(&t->lock);
		free(sub);
		return PSYNC_ERR_NO_MEMORY;
	}
	*out_id = sub->id;
	if (!created)
	{
		/* the key is being set up by another thread: share its outcome */
		while (e->attaching)
			pthread_cond_wait(&t->handler_done, &t->lock);
		st = e->attach_failed ? PSYNC_ERR_NATS : PSYNC_OK;
		pthread_mutex_unlock(&t->lock);
		if (st != PSYNC_OK)
		{
			psync_transport_unsubscribe(t, *out_id);
			*out_id = 0;
		}
		return st;
	}
	e->attaching = t->ops->attach != NULL;
	pthread_mutex_unlock(&t->lock);
	if (t->ops->attach == NULL)
		return PSYNC_OK;

	st = t->ops->attach(t, key, len, e->is_pattern, &data);
	pthread_mutex_lock(&t->lock);
	e->backend_data = data;		/* e lives: our subscription is in it */
	e->attaching = false;
	e->attach_failed = st != PSYNC_OK;
	pthread_cond_broadcast(&t->handler_done);
	pthread_mutex_unlock(&t->lock);
	if (st != PSYNC_OK)
	{
		psync_transport_unsubscribe(t, *out_id);
		*out_id = 0;
	}
	return st;
}

static unsigned
frames_on_this_thread(const subscription *sub)
{
	unsigned	n = 0;

	for (delivery_frame *f = tls_frames; f != NULL; f = f->next)
		n += f->sub == sub;
	return n;
}

/*
 * Wait (lock held) until sub's handler runs nowhere but, possibly, further
 * up this thread's stack.  sub->active is already false.
 */
static void
wait_until_not_running(psync_transport *t, subscription *sub)
{
	unsigned	own = frames_on_this_thread(sub);

	atomic_fetch_add(&t->waiters, 1);
	while (atomic_load(&sub->running) > own)
		pthread_cond_wait(&t->handler_done, &t->lock);
	atomic_fetch_sub(&t->waiters, 1);
}

void
psync_transport_unsubscribe(psync_transport *t, psync_subscription_id id)
{
	subscription *sub;
	key_entry  *e;
	void	   *detach_data = NULL;
	bool		detach = false;

	if (t == NULL || id == 0)
		return;
	pthread_mutex_lock(&t->lock);
	sub = slot_take(t, id);
	if (sub == NULL)
	{
		pthread_mutex_unlock(&t->lock);
		return;
	}
	atomic_store(&sub->active, false);
	e = sub->entry;
	entry_remove_sub(e, sub);
	if (e->nsubs == 0)
	{
		detach_data = entry_drop(t, e);
		detach = true;
	}
	wait_until_not_running(t, sub);
	if (sub->pins == 0)
		free(sub);
	else
		sub->free_when_unpinned = true;
	pthread_mutex_unlock(&t->lock);
	if (detach && detach_data != NULL && t->ops->detach != NULL)
		t->ops->detach(t, detach_data);
}

void
transport_set_error(psync_transport *t, const char *what, const char *detail)
{
	pthread_mutex_lock(&t->lock);
	snprintf(t->last_error, sizeof(t->last_error), "%s: %s", what,
			 detail != NULL ? detail : "unknown error");
	pthread_mutex_unlock(&t->lock);
}

size_t
psync_transport_last_error(psync_transport *t, char *buf, size_t size)
{
	size_t		len;

	if (t == NULL)
		return client_error_copy("", buf, size);
	pthread_mutex_lock(&t->lock);
	len = client_error_copy(t->last_error, buf, size);
	pthread_mutex_unlock(&t->lock);
	return len;
}

size_t
psync_transport_key_count(psync_transport *t)
{
	size_t		n;

	if (t == NULL)
		return 0;
	pthread_mutex_lock(&t->lock);
	n = t->keys.count;
	pthread_mutex_unlock(&t->lock);
	return n;
}

/* ---- delivery ---- */

/* Call the snapshotted handlers, then unpin them (takes the lock). */
static void
run_handlers(psync_transport *t, subscription **subs, size_t n,
			 const psync_event *event)
{
	for (size_t i = 0; i < n; i++)
	{
		subscription *sub = subs[i];
		delivery_frame frame = {sub, tls_frames};

		atomic_fetch_add(&sub->running, 1);
		if (atomic_load(&sub->active))
		{
			tls_frames = &frame;
			sub->fn(sub->ctx, event);
			tls_frames = frame.next;
		}
		atomic_fetch_sub(&sub->running, 1);
		if (atomic_load(&t->waiters) > 0)
		{
			pthread_mutex_lock(&t->lock);
			pthread_cond_broadcast(&t->handler_done);
			pthread_mutex_unlock(&t->lock);
		}
	}
	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < n; i++)
	{
		if (--subs[i]->pins == 0 && subs[i]->free_when_unpinned)
			free(subs[i]);
	}
	pthread_mutex_unlock(&t->lock);
}

/* Append e's handlers to the snapshot (lock held); false: no memory. */
static bool
snapshot_entry(key_entry *e, subscription ***subs, size_t *n, size_t *cap,
			   subscription **stack)
{
	if (*n + e->nsubs > *cap)
	{
		size_t		want = (*n + e->nsubs) * 2;
		subscription **grown = malloc(want * sizeof(*grown));

		if (grown == NULL)
			return false;
		memcpy(grown, *subs, *n * sizeof(*grown));
		if (*subs != stack)
			free(*subs);
		*subs = grown;
		*cap = want;
	}
	for (size_t i = 0; i < e->nsubs; i++)
	{
		e->subs[i]->pins++;
		(*subs)[(*n)++] = e->subs[i];
	}
	return true;
}

static void
deliver_entries(psync_transport *t, key_entry **entries, size_t nentries,
				const psync_event *event)
{
	subscription *stack[DELIVERY_STACK];
	subscription **subs = stack;
	size_t		n = 0,
				cap = DELIVERY_STACK;

	for (size_t i = 0; i < nentries; i++)
		if (entries[i] != NULL && !snapshot_entry(entries[i], &subs, &n, &cap, stack))
			break;				/* out of memory: deliver to those we have */
	pthread_mutex_unlock(&t->lock);
	if (n > 0)
		run_handlers(t, subs, n, event);
	if (subs != stack)
		free(subs);
}

void
transport_deliver(psync_transport *t, const char *key, size_t len,
				  const psync_event *event)
{
	key_entry  *e;

	pthread_mutex_lock(&t->lock);
	e = keymap_get(&t->keys, key, len);
	deliver_entries(t, &e, 1, event);	/* unlocks */
}

const char *
transport_table_layout(psync_transport *t, const char *table)
{
	if (t == NULL || t->ops->table_layout == NULL)
		return NULL;
	return t->ops->table_layout(t, table);
}

/*
 * The table part of a key or pattern: up to the first ':' or '@' (the whole
 * key if none; neither is ever part of a sync name).
 */
size_t
transport_table_len(const char *key, size_t len)
{
	size_t		i = 0;

	while (i < len && key[i] != ':' && key[i] != '@')
		i++;
	return i;
}

void
transport_deliver_key_and_pattern(psync_transport *t, const psync_event *event)
{
	key_entry  *entries[3] = {NULL, NULL, NULL};
	const psync_envelope *env = event->envelope;

	pthread_mutex_lock(&t->lock);
	entries[0] = keymap_get(&t->keys, event->key, event->key_len);
	if (t->npatterns > 0)
	{
		size_t		tl = transport_table_len(event->key, event->key_len);
		char		pattern[PSYNC_MAX_KEY_LEN + PSYNC_MAX_SCOPE_LEN + 3];

		if (tl <= PSYNC_MAX_KEY_LEN)
		{
			memcpy(pattern, event->key, tl);
			pattern[tl] = ':';
			pattern[tl + 1] = '*';
			entries[1] = keymap_get(&t->keys, pattern, tl + 2);
			/* "<table>@<scope>:*": the envelope's own scope */
			if (env != NULL && env->scope != NULL && tl < event->key_len)
			{
				pattern[tl] = '@';
				memcpy(pattern + tl + 1, env->scope, env->scope_len);
				memcpy(pattern + tl + 1 + env->scope_len, ":*", 2);
				entries[2] = keymap_get(&t->keys, pattern, tl + env->scope_len + 3);
			}
		}
	}
	deliver_entries(t, entries, 3, event);	/* unlocks */
}

typedef struct entry_list
{
	key_entry **items;
	size_t		n;
} entry_list;

static void
collect_entry(void *ctx, void *value)
{
	entry_list *list = ctx;

	list->items[list->n++] = value;
}

void
transport_deliver_all(psync_transport *t, const psync_event *event)
{
	entry_list	list = {NULL, 0};

	pthread_mutex_lock(&t->lock);
	list.items = malloc((t->keys.count + 1) * sizeof(*list.items));
	if (list.items == NULL)
	{
		pthread_mutex_unlock(&t->lock);
		return;
	}
	keymap_each(&t->keys, collect_entry, &list);
	deliver_entries(t, list.items, list.n, event);	/* unlocks */
	free(list.items);
}

/* ---- publish / destroy ---- */

psync_status
psync_transport_publish_sized(psync_transport *t, const psync_envelope *env, size_t env_size)
{
	psync_envelope full;

	if (env == NULL || env_size < offsetof(psync_envelope, scope))
		return PSYNC_ERR_INVALID_ARGUMENT;
	if (env_size < sizeof(full))
	{
		/* a program built before the scope members: none */
		memset(&full, 0, sizeof(full));
		memcpy(&full, env, env_size);
		env = &full;
	}
	if (t == NULL || env->key == NULL ||
		!psync_envelope_key_is_valid(env->key, env->key_len) ||
		(env->scope != NULL && !psync_scope_is_valid(env->scope, env->scope_len)))
		return PSYNC_ERR_INVALID_ARGUMENT;
	return t->ops->publish(t, env);
}

/* The symbol of the first ABI: its callers' struct ends before scope. */
#undef psync_transport_publish
psync_status
psync_transport_publish(psync_transport *t, const psync_envelope *env)
{
	return psync_transport_publish_sized(t, env, offsetof(psync_envelope, scope));
}

psync_status
psync_transport_publish_raw(psync_transport *t, const char *key,
							const void *bytes, size_t len)
{
	size_t		key_len;

	if (t == NULL || key == NULL || (bytes == NULL && len > 0))
		return PSYNC_ERR_INVALID_ARGUMENT;
	key_len = strlen(key);
	if (!psync_envelope_key_is_valid(key, key_len))
		return PSYNC_ERR_INVALID_ARGUMENT;
	return t->ops->publish_raw(t, key, key_len, bytes, len);
}

psync_status
psync_transport_flush(psync_transport *t, int timeout_ms)
{
	if (t == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	return t->ops->flush != NULL ? t->ops->flush(t, timeout_ms) : PSYNC_OK;
}

void
psync_transport_destroy(psync_transport *t)
{
	entry_list	list = {NULL, 0};

	if (t == NULL)
		return;
	pthread_mutex_lock(&t->lock);
	list.items = malloc((t->keys.count + 1) * sizeof(*list.items));
	if (list.items != NULL)
		keymap_each(&t->keys, collect_entry, &list);
	for (size_t i = 0; i < list.n; i++)
	{
		key_entry  *e = list.items[i];

		while (e->nsubs > 0)
		{
			subscription *sub = e->subs[0];

			slot_take(t, sub->id);
			atomic_store(&sub->active, false);
			entry_remove_sub(e, sub);
			wait_until_not_running(t, sub);
			if (sub->pins == 0)
				free(sub);
			else
				sub->free_when_unpinned = true;
		}
		list.items[i] = entry_drop(t, e);	/* now: backend data */
	}
	pthread_mutex_unlock(&t->lock);
	for (size_t i = 0; i < list.n; i++)
		if (list.items[i] != NULL && t->ops->detach != NULL)
			t->ops->detach(t, list.items[i]);
	free(list.items);
	if (t->ops->destroy != NULL && !t->ops->destroy(t))
		return;					/* a backend callback may still come: leak */
	keymap_free(&t->keys);
	free(t->slots);
	pthread_cond_destroy(&t->handler_done);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* ---- encoding helper for backends ---- */

typedef struct grow_buffer
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		out_of_memory;
} grow_buffer;

static int
grow_buffer_write(void *ctx, const char *bytes, size_t len)
{
	grow_buffer *b = ctx;

	if (b->len + len > b->cap)
	{
		size_t		cap = (b->len + len) * 2;
		char	   *data = realloc(b->data, cap);

		if (data == NULL)
		{
			b->out_of_memory = true;
			return -1;
		}
		b->data = data;
		b->cap = cap;
	}
	memcpy(b->data + b->len, bytes, len);
	b->len += len;
	return 0;
}

psync_status
transport_encode_alloc(const psync_envelope *env, char **out, size_t *out_len)
{
	grow_buffer b = {NULL, 0, 0, false};

	if (psync_envelope_encode(env, grow_buffer_write, &b) != 0)
	{
		free(b.data);
		return b.out_of_memory ? PSYNC_ERR_NO_MEMORY : PSYNC_ERR_INVALID_ARGUMENT;
	}
	*out = b.data;
	*out_len = b.len;
	return PSYNC_OK;
}
