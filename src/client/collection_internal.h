/*
 * collection_internal.h — what the collection family (collection.c,
 * collection_row.c, collection_load.c) shares: a collection's and a
 * member's state, and the functions one file of the family calls in
 * another.  See collection.c for how a collection works.
 */
#ifndef PSYNC_COLLECTION_INTERNAL_H
#define PSYNC_COLLECTION_INTERNAL_H

#include "para_sync/client.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "client_error.h"
#include "refetch_internal.h"

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
	uint16_t	scope_len;
	bool		has_scope;
	char		data[];			/* key, NUL, schema_version, value, scope */
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
	char	   *scope;			/* a collection of one scope, or NULL */
	size_t		scope_len;
	char	   *load_name;		/* what load_page gets: table or "table@scope" */
	psync_subscription_id table_subscription;	/* a scope's: the table's events */
	bool		refused;		/* the NATS server refused a subscription */
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
	char	   *cursor;			/* during a load: the last key of the last page */
	size_t		cursor_len;
	bool		pages_in;		/* during a load: every page is in */
	env_list	held;			/* during a load, unknown keys until pages_in */
	env_list	pending;		/* for rows being refetched */
	row_retry  *retries;		/* failed row refetches, to retry */
	tomb_ref   *tombs;			/* ring of remembered deletes */
	size_t		tomb_head;
	size_t		ntombs;
	size_t		tombs_cap;
	struct timespec next_layout_check;
	int			depth;			/* collection_apply_enter() frames open */
	pthread_t	worker;
	psync_collection_counters stats;
	char	  **versions;		/* schema_versions seen, interned */
	size_t		nversions;
	uint64_t	last_reload;	/* sequence of the last reload event acted on */
	bool		reload_seen;
	char		last_error[PSYNC_ERROR_LEN];
};

/* collection_row.c: members, tombstones, held envelopes, row refetch, receipt */
void		collection_apply_enter(psync_collection *c);
void		collection_apply_leave(psync_collection *c);
void		collection_compact_observers(psync_collection *c);
void		collection_deadline_in(struct timespec *ts, long ms);
bool		collection_env_is_nil(const psync_envelope *env);
member	   *collection_find(psync_collection *c, const char *key, size_t len);
void		collection_free_tombstones(psync_collection *c);
void		collection_free_value(psync_collection *c, void *value);
member	   *collection_insert(psync_collection *c, const char *key, size_t len);
int			collection_key_cmp(const char *a, size_t alen, const char *b, size_t blen);
bool		collection_key_in_table(const psync_collection *c, const char *key, size_t len);
void		collection_list_clear(env_list *l);
bool		collection_list_push(env_list *l, held_env *h);
bool		collection_page_passed(psync_collection *c, const char *key, size_t len);
bool		collection_parse_value(psync_collection *c, const psync_envelope *env, void **out);
void		collection_receive(psync_collection *c, const psync_envelope *env);
void		collection_refetch_row(psync_collection *c, member *m);
void		collection_release(psync_collection *c);
void		collection_replay_sorted(psync_collection *c, env_list *l);
void		collection_request_reload(psync_collection *c);
void		collection_run_due_retries(psync_collection *c, struct timespec *next, bool *any);
void		collection_set_error(psync_collection *c, const char *what, const char *detail);
void		collection_set_member(psync_collection *c, member *m, int64_t seq, void *value);
void		collection_set_state(psync_collection *c, psync_collection_state state);
bool		collection_ts_before(const struct timespec *a, const struct timespec *b);
uint16_t	collection_version_of(psync_collection *c, const psync_envelope *env);

/* collection_load.c: the collection's thread (pthread_create's start routine) */
void	   *collection_worker_main(void *arg);

#endif							/* PSYNC_COLLECTION_INTERNAL_H */
