/*
 * transport_internal.h — the transport core shared by the in-process and
 * NATS transports (internal to libparasync).
 *
 * The core owns subscriptions, their ids, the key → subscribers map and
 * delivery; a backend (ops) only decides what "first subscriber of a key",
 * "last one gone" and "publish" mean.
 */
#ifndef PSYNC_TRANSPORT_INTERNAL_H
#define PSYNC_TRANSPORT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "para_sync/client.h"
#include "para_sync/key.h"
#include "keymap.h"

typedef struct subscription subscription;
typedef struct sub_slot sub_slot;

/* The subscribers of one key (or one "<table>:*" or "<table>@<scope>:*" pattern). */
typedef struct key_entry
{
	char	   *key;
	size_t		key_len;
	bool		is_pattern;
	subscription **subs;		/* in subscription order */
	size_t		nsubs;
	size_t		cap;
	void	   *backend_data;	/* e.g. the NATS subscription */
	bool		attaching;		/* the first subscriber is setting it up */
	bool		attach_failed;
} key_entry;

typedef struct transport_ops
{
	/* First subscriber of a key: set up the bus side, *data for detach. */
	psync_status (*attach) (psync_transport *t, const char *key, size_t len,
							bool is_pattern, void **data);
	/* Last subscriber gone: tear down what attach made (lock not held). */
	void		(*detach) (psync_transport *t, void *backend_data);
	psync_status (*publish) (psync_transport *t, const psync_envelope *env);
	psync_status (*publish_raw) (psync_transport *t, const char *key,
								 size_t key_len, const void *bytes, size_t len);
	psync_status (*flush) (psync_transport *t, int timeout_ms);
	/*
	 * Free the backend after every key was detached.  false: callbacks may
	 * still reach the transport, so it must be leaked rather than freed.
	 */
	bool		(*destroy) (psync_transport *t);
	/*
	 * The subject layout ("key" or "table") in which this transport follows
	 * the table with sync name table; NULL (or no op): whatever the server
	 * uses (the in-process transport has no subjects).
	 */
	const char *(*table_layout) (psync_transport *t, const char *table);
} transport_ops;

struct psync_transport
{
	const transport_ops *ops;
	void	   *backend;
	pthread_mutex_t lock;
	pthread_cond_t handler_done;	/* a handler returned (waiters > 0) */
	atomic_int	waiters;		/* unsubscribers waiting for a handler */
	keymap		keys;
	size_t		npatterns;
	sub_slot   *slots;
	size_t		nslots;
	size_t		slots_cap;
	size_t		free_slot;		/* head of the free list, or SIZE_MAX */
	char		last_error[512];	/* under lock; psync_transport_last_error */
};

/* Keep "<what>: <detail>" as the transport's last error (takes the lock). */
void		transport_set_error(psync_transport *t, const char *what,
								const char *detail);

psync_status transport_init(psync_transport *t, const transport_ops *ops,
							void *backend);

/* Deliver event to the subscribers of key (exact entry only). */
void		transport_deliver(psync_transport *t, const char *key, size_t len,
							  const psync_event *event);

/*
 * Deliver to the exact key, to its table's pattern and to the pattern of
 * the envelope's scope, if any.
 */
void		transport_deliver_key_and_pattern(psync_transport *t,
											  const psync_event *event);

/* Deliver event to every subscriber of every key (e.g. PSYNC_EVENT_LOST). */
void		transport_deliver_all(psync_transport *t, const psync_event *event);

/* The sync name part of a key or pattern: up to its first ':' or '@' (all if none). */
size_t		transport_table_len(const char *key, size_t len);

/*
 * True for "<sync name>:*" (every row of the table) and "<sync name>@<scope>:*"
 * (the rows of one scope, docs/protocol.md "Scopes"); *table_len gets the
 * sync name's length.
 */
bool		transport_key_is_pattern(const char *key, size_t len, size_t *table_len);

/* The scope of a pattern "<sync name>@<scope>:*"; false for any other key. */
bool		transport_pattern_scope(const char *key, size_t len, const char **scope,
									size_t *scope_len);

/* True for a key that may appear on the bus: psync_key_is_valid (docs/protocol.md grammar). */
bool		transport_key_is_subscribable(const char *key, size_t len);

/*
 * Subscribe to a table's own events (key: its sync name alone, docs/protocol.md
 * "Table events"), which psync_transport_subscribe() does not take: only
 * replicas and collections follow them.
 */
psync_status transport_subscribe_table(psync_transport *t, const char *sync_name,
									   psync_handler_fn handler, void *ctx,
									   psync_subscription_id *out_id);

/* The backend's table_layout (NULL when it follows any layout). */
const char *transport_table_layout(psync_transport *t, const char *table);

/* Encode env into a malloc'd buffer. */
psync_status transport_encode_alloc(const psync_envelope *env, char **out,
									size_t *out_len);

#endif							/* PSYNC_TRANSPORT_INTERNAL_H */
