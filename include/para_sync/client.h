/*
 * para_sync/client.h — libparasync, the client half of para_sync (docs/protocol.md).
 *
 * Live, correct replicas of database objects in a C or C++ program:
 *
 *   psync_transport  carries change envelopes per key: in-process (a keyed
 *                    emitter) or NATS (one NATS subscription per key).
 *   psync_replica    one object's reconciler: parse gate, baseline (re)seed,
 *                    apply iff sequence == current + 1, refetch on gaps.
 *   psync_refetcher  fetches the authoritative snapshot when a replica needs
 *                    one; libparasync ships one over libpq.
 *   psync_collection a whole table: loaded page by page (a psync_load_page_fn;
 *                    libparasync ships one over libpq), then live, each row
 *                    reconciled by its own sequence.
 *
 * Conventions (like libpq and nats.c):
 *   - every handle is opaque; every *_new/_connect has a matching destroy;
 *   - functions that can fail return psync_status; psync_status_text() names
 *     it;
 *   - every callback documents the thread it runs on;
 *   - all functions are thread-safe unless stated otherwise.
 *
 * ABI policy: the library's soname is libparasync.so.<PSYNC_ABI_VERSION>
 * (client.mk reads the number from this header).  Within one ABI version,
 * functions and enum values are only ever added.  Every struct named
 * *_options, *_counters or *_meta* carries its size as its first member
 * (size_t size) and only grows at the end:
 *   - options: the *_options_init() macro zeroes the caller's struct, sets
 *     its defaults and size = sizeof the caller's struct; the library reads
 *     only that many bytes, and a member the caller's header did not have
 *     takes its default; options whose size is 0 (zeroed, never
 *     initialised) are refused with PSYNC_ERR_INVALID_ARGUMENT;
 *   - counters and metadata: the getter macro passes the caller's sizeof;
 *     the library writes only that many bytes (zero beyond its own struct)
 *     and sets size to the bytes it filled.
 * So a program built against an older header neither overruns nor reads
 * garbage.  The *_sized functions are the exported symbols (for bindings
 * that call them without the macros).  psync_schema never changes within an
 * ABI version.  Any other change bumps PSYNC_ABI_VERSION.  Only psync_*
 * symbols are exported.
 */
#ifndef PARA_SYNC_CLIENT_H
#define PARA_SYNC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "para_sync/envelope.h"
#include "para_sync/key.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PSYNC_ABI_VERSION 0
#define PSYNC_VERSION "0.1.0"

/* ---------------------------------------------------------------- status */

typedef enum psync_status
{
	PSYNC_OK = 0,
	PSYNC_ERR_INVALID_ARGUMENT,	/* NULL handle, bad key, bad option */
	PSYNC_ERR_NO_MEMORY,
	PSYNC_ERR_MALFORMED,		/* bytes that psync_envelope_decode rejects */
	PSYNC_ERR_NATS,				/* nats.c reported an error */
	PSYNC_ERR_DATABASE,			/* libpq reported an error */
	PSYNC_ERR_NOT_FOUND,		/* e.g. para_sync.snapshot returned NULL */
	PSYNC_ERR_CLOSED,			/* the handle is shutting down */
	PSYNC_ERR_TIMEOUT,
	PSYNC_ERR_SYSTEM,			/* thread or clock failure */
	PSYNC_ERR_IN_CALLBACK,		/* not allowed from this callback (e.g.
								 * disposing a replica from its own callback) */
	PSYNC_ERR_LAYOUT,			/* the transport follows a table in another
								 * subject layout than the server publishes */
	PSYNC_ERR_PERMISSION		/* the NATS server refused a subscription
								 * (its subject permissions) */
} psync_status;

/* Static English text for a status code; never NULL. */
const char *psync_status_text(psync_status status);

/*
 * Error text.  A status code says what kind of failure; the text says why
 * (the server's message, nats.c's, libpq's).  Every *_last_error function
 * copies the text, NUL-terminated and truncated to size, into buf (buf may
 * be NULL when size is 0) and returns its full length, like snprintf; ""
 * (0) when there was no error.  The text stays until the next error: a
 * recovered handle still shows what went wrong last.
 *
 * psync_last_error: the last error of a call made on this thread that
 * failed before it had a handle to keep it on, e.g.
 * psync_nats_transport_connect (thread-local, like nats_GetLastError).
 */
size_t		psync_last_error(char *buf, size_t size);

/* ------------------------------------------------------------- transport */

typedef struct psync_transport psync_transport;

/* Identifies one subscription; 0 is never a valid id. */
typedef uint64_t psync_subscription_id;

typedef enum psync_event_kind
{
	PSYNC_EVENT_ENVELOPE,		/* a decoded envelope for the key */
	PSYNC_EVENT_MALFORMED,		/* a message for the key failed to decode */
	PSYNC_EVENT_LOST,			/* messages may have been lost (NATS reconnect
								 * or slow consumer): resynchronise */
	PSYNC_EVENT_REFUSED			/* the NATS server refused (or revoked) this
								 * subscription: nothing will arrive; detail
								 * has the server's text */
} psync_event_kind;

typedef struct psync_event
{
	psync_event_kind kind;
	/* ENVELOPE: the envelope, valid only during the callback. */
	const psync_envelope *envelope;
	/* MALFORMED: why decoding failed. */
	psync_decode_error decode_error;
	/* ENVELOPE, MALFORMED: the key the message was addressed to. */
	const char *key;
	size_t		key_len;
	/* REFUSED: the server's text, valid only during the callback. */
	const char *detail;
} psync_event;

/*
 * A subscriber.  Runs on the thread that delivers: the publishing thread for
 * the in-process transport; a nats.c delivery thread (or nats.c's
 * connection-event thread, for PSYNC_EVENT_LOST and PSYNC_EVENT_REFUSED) for NATS.  A handler may subscribe,
 * unsubscribe (even itself) and publish; it must not destroy the transport.
 */
typedef void (*psync_handler_fn) (void *ctx, const psync_event *event);

/*
 * In-process transport: a keyed emitter.  publish() delivers synchronously,
 * on the publishing thread, to every handler subscribed to the key when
 * publish() started, in subscription order; a handler added during delivery
 * does not get that envelope, one removed during delivery is not called
 * after its psync_transport_unsubscribe() returned.  No retention, no validation, no
 * dedupe: a dumb pipe.
 */
psync_status psync_inprocess_transport_new(psync_transport **out);

typedef struct psync_nats_options
{
	size_t		size;			/* sizeof this struct: set by the init macro */
	const char *url;			/* e.g. "nats://127.0.0.1:4222" (required) */
	const char *subject_prefix; /* default "synced" (docs/protocol.md) */
	const char *name;			/* NATS connection name, optional */
	int			max_reconnect;	/* -1 = forever (default) */
	int			reconnect_wait_ms;	/* default 250 */
	int			connect_timeout_ms; /* default 2000 */

	/*
	 * Sync names of the tables published in the 'table' subject layout
	 * (para_sync.set_subject_layout(): "<prefix>.<sync name>.<key>"), a
	 * NULL-terminated array, copied at connect; the entry "*" means every
	 * table.  NULL (default): every table uses the 'key' layout
	 * ("<prefix>.<key>").  Keys and "<table>:*" patterns of these tables
	 * subscribe to their table's subjects, so the NATS server sends only
	 * that table's messages.  SELECT sync_name FROM para_sync.synced_tables
	 * WHERE subject_layout = 'table' lists them.
	 */
	const char *const *table_layout;

	/*
	 * Sync names of the tables with a scope (para_sync.set_scope(), docs/
	 * protocol.md "Scopes": "<prefix>.<sync name>.<scope>.<key>"), a
	 * NULL-terminated array, copied at connect; "*" means every table.  A
	 * key of such a table subscribes to "<prefix>.<sync name>.*.<key>" (it
	 * follows the key into any scope), "<table>:*" to
	 * "<prefix>.<sync name>.>", "<table>@<scope>:*" to
	 * "<prefix>.<sync name>.<scope>.>" and the table's events to
	 * "<prefix>.<sync name>.<sync name>".  SELECT sync_name FROM
	 * para_sync.synced_tables WHERE scope_columns IS NOT NULL lists them.
	 * NULL (default): no table has a scope.
	 */
	const char *const *scoped_tables;
} psync_nats_options;

void		psync_nats_options_init_sized(psync_nats_options *opts, size_t size);
#define psync_nats_options_init(opts) \
	psync_nats_options_init_sized((opts), sizeof(*(opts)))

/*
 * NATS transport (nats.c).  Connects (reconnecting forever by default) and
 * owns the connection.  Messages are delivered by nats.c's global delivery
 * thread pool (natsOptions_UseGlobalMessageDelivery; size it process-wide
 * with nats_SetMessageDeliveryPoolSize), not a thread per key.  One NATS
 * subscription per key, shared by all local subscribers and removed with
 * the last one (one flush round trip: see docs/client.md on nats.c 3.4);
 * each message is decoded once and fanned out.  After a reconnect or a slow-consumer error every
 * subscriber gets PSYNC_EVENT_LOST (core NATS may have dropped messages).
 */
psync_status psync_nats_transport_connect(const psync_nats_options *opts,
										  psync_transport **out);

/*
 * Destroy a transport.  Unsubscribes everything and waits until no handler
 * is running; must not be called from a handler.  Replicas using it must be
 * disposed first.
 */
void		psync_transport_destroy(psync_transport *transport);

/*
 * Deliver env to the subscribers of env->key (and of the pattern
 * "<table>:*").  In-process: synchronous, env passed as is.  NATS: env is
 * encoded and handed to nats.c for "<prefix>.<key>" (sent asynchronously;
 * psync_transport_flush waits for it).
 */
psync_status psync_transport_publish(psync_transport *transport,
									 const psync_envelope *env);
/*
 * The exported form: env_size is the caller's sizeof(psync_envelope) (the
 * struct grew its scope members after the first ABI; the plain symbol
 * stands for the struct without them).  An envelope with a scope goes to
 * the subscribers of its scope's pattern too; a scope outside the grammar
 * is PSYNC_ERR_INVALID_ARGUMENT.
 */
psync_status psync_transport_publish_sized(psync_transport *transport,
										   const psync_envelope *env, size_t env_size);
#define psync_transport_publish(transport, env) \
	psync_transport_publish_sized((transport), (env), sizeof(*(env)))

/*
 * Publish already-encoded envelope bytes.  In-process: decoded (a decode
 * failure is delivered as PSYNC_EVENT_MALFORMED); NATS: sent as they are to
 * "<prefix>.<key>".
 */
psync_status psync_transport_publish_raw(psync_transport *transport,
										 const char *key, const void *bytes,
										 size_t len);

/*
 * Wait until everything published so far reached the NATS server (a PING/PONG
 * round trip), at most timeout_ms.  In-process: returns PSYNC_OK at once.
 */
psync_status psync_transport_flush(psync_transport *transport, int timeout_ms);

/*
 * Subscribe handler to key.  key is either an object key ("users:123"), a
 * sync name ("users": the table's own events, docs/protocol.md "Table
 * events"), a table pattern "<sync name>:*" that receives every key of
 * that table and the table's own events, or a scope pattern
 * "<sync name>@<scope>:*" that receives the envelopes of one scope of a
 * table with a scope (docs/protocol.md "Scopes"; scope a token of
 * psync_scope_is_valid(), e.g. "orders@acme:*"), not the table's events.
 * *out_id receives the subscription id.
 *
 * NATS: when it returns, the server has the subscription (one round trip,
 * at most 2 s when disconnected), so nothing published afterwards is missed.
 * A key subscribes to "<prefix>.<key>".  Because a key is a
 * single subject token, "users:*" cannot be a NATS wildcard; a table pattern
 * subscribes to "<prefix>.*" and drops, before decoding, every subject that
 * is neither "<prefix>.<sync name>" nor starts with "<prefix>.<sync name>:".
 * Tables listed in table_layout or scoped_tables subscribe to their own
 * subjects (see psync_nats_options).
 *
 * When the NATS server refuses the subscription (its subject permissions:
 * its -ERR comes before the round trip's answer) it returns
 * PSYNC_ERR_PERMISSION with the server's text in
 * psync_transport_last_error.  A refusal that comes later (after a
 * reconnect, permissions changed) reaches the subscribers as
 * PSYNC_EVENT_REFUSED.
 */
psync_status psync_transport_subscribe(psync_transport *transport,
									   const char *key,
									   psync_handler_fn handler, void *ctx,
									   psync_subscription_id *out_id);

/*
 * Remove a subscription.  Idempotent: an unknown or already removed id is a
 * no-op.  When it returns, the handler is not running on another thread and
 * will not be called again (when called from that very handler, the current
 * call finishes normally).
 */
void		psync_transport_unsubscribe(psync_transport *transport, psync_subscription_id id);

/* Diagnostic: number of keys (and patterns) with at least one subscriber. */
size_t		psync_transport_key_count(psync_transport *transport);

/* The transport's last error (NATS: nats.c's text), see psync_last_error. */
size_t		psync_transport_last_error(psync_transport *transport, char *buf,
									   size_t size);

/* ------------------------------------------------------------- refetch */

/*
 * A refetch in flight.  Whoever receives one must finish it exactly once with
 * psync_refetch_complete() or psync_refetch_fail(), from any thread, either
 * inside the start callback or later.
 */
typedef struct psync_refetch_request psync_refetch_request;

/*
 * Start fetching the current snapshot of key.  Runs on the thread that
 * triggered the refetch (a delivery thread, or the thread that called
 * psync_replica_new); it must not block: hand the work to another thread.
 */
typedef void (*psync_refetch_fn) (void *ctx, const char *key,
								  psync_refetch_request *request);

/* Finish with snapshot envelope bytes (copied; not retained). */
void		psync_refetch_complete(psync_refetch_request *request,
								   const void *envelope, size_t len);

/*
 * Finish with a failure; the replica goes "stale" and keeps error (copied;
 * NULL is fine) as its last error (psync_replica_last_error).
 */
void		psync_refetch_fail(psync_refetch_request *request, const char *error);

/* The key the request is for (valid until it is finished). */
const char *psync_refetch_key(const psync_refetch_request *request);

/*
 * libpq refetcher: one worker thread that runs
 *   SELECT para_sync.snapshot($1)
 * for each request, off the NATS delivery threads.  Connections come from
 * the application:
 *   - psync_pq_refetcher_new_conninfo: the refetcher opens (and reopens after
 *     a failure) its own connection from a libpq conninfo string;
 *   - psync_pq_refetcher_new_pool: acquire(ctx) returns a PGconn * (or NULL
 *     on failure) and release(ctx, conn, broken) gives it back; both run on
 *     the refetcher's worker thread.
 */
typedef struct psync_refetcher psync_refetcher;
typedef struct pg_conn *(*psync_pq_acquire_fn) (void *ctx);
typedef void (*psync_pq_release_fn) (void *ctx, struct pg_conn *conn, bool broken);

psync_status psync_pq_refetcher_new_conninfo(const char *conninfo,
											 psync_refetcher **out);
psync_status psync_pq_refetcher_new_pool(psync_pq_acquire_fn acquire,
										 psync_pq_release_fn release,
										 void *ctx, psync_refetcher **out);

/* The function and ctx to put in psync_replica_options. */
psync_refetch_fn psync_pq_refetch_fn(void);
void	   *psync_pq_refetch_ctx(psync_refetcher *refetcher);

/*
 * Fail every queued request, stop the worker (after its current query) and
 * free.  Replicas using it must be disposed first.
 */
void		psync_refetcher_destroy(psync_refetcher *refetcher);

/*
 * The refetcher's last error: libpq's connection or query error text, also
 * passed to psync_refetch_fail (so the replica has it too).
 */
size_t		psync_refetcher_last_error(psync_refetcher *refetcher, char *buf,
									   size_t size);

/*
 * Synchronously fetch the snapshot of key over conn into a malloc'd buffer
 * (*out, *out_len; free() it).  Any thread; conn must not be in use.
 */
psync_status psync_pq_fetch_snapshot(struct pg_conn *conn, const char *key,
									 void **out, size_t *out_len);

/* --------------------------------------------------------------- replica */

typedef struct psync_replica psync_replica;

/*
 * The parse gate, the C form of the seed's schema.parse.  Every inbound
 * value (seed, receipt, refetch result) crosses it.
 *
 * parse(ctx, msgpack, len, envelope, recycled, &out, &error):
 *   msgpack/len: the raw MessagePack value (a map, or 0xc0 for nil);
 *   envelope: the whole envelope, for schema_version and key;
 *   recycled: a value this parse produced earlier that the replica no longer
 *     uses, or NULL; parse may reuse its memory (returning it as *out), so the
 *     steady state needs no allocation.  If *out != recycled the replica
 *     frees recycled itself (free_value).
 * Return true with *out set (Ok) or false with *error set to a static
 * message (Err).  Runs on the delivering thread with the replica locked: it
 * must not call into this replica.
 *
 * free_value(ctx, value): releases a value produced by parse; any thread.
 */
typedef bool (*psync_parse_fn) (void *ctx, const uint8_t *msgpack, size_t len,
								const psync_envelope *envelope, void *recycled,
								void **out, const char **error);
typedef void (*psync_free_fn) (void *ctx, void *value);

typedef struct psync_schema
{
	psync_parse_fn parse;
	psync_free_fn free_value;
	void	   *ctx;
} psync_schema;

/*
 * A ready schema that accepts any value and keeps its raw MessagePack bytes;
 * values are psync_raw_value.  Reuses buffers: no allocation in steady state.
 */
typedef struct psync_raw_value
{
	size_t		len;
	size_t		capacity;
	uint8_t		data[];
} psync_raw_value;

void		psync_schema_raw(psync_schema *schema);

typedef enum psync_replica_status
{
	PSYNC_REPLICA_OK,			/* last apply succeeded; replica is current */
	PSYNC_REPLICA_STALE,		/* uninitialised, or a refetch failed / none
								 * available */
	PSYNC_REPLICA_SKEW,			/* an inbound value failed parse */
	PSYNC_REPLICA_REFETCHING	/* a recovery refetch is in flight */
} psync_replica_status;

const char *psync_replica_status_name(psync_replica_status status);

typedef struct psync_replica_metadata
{
	size_t		size;			/* bytes the library filled */
	char		schema_version[PSYNC_MAX_SCHEMA_VERSION_LEN + 1];	/* "" if none */
	bool		has_schema_version;
	int64_t		sequence;		/* -1 when uninitialised */
	psync_replica_status status;
} psync_replica_metadata;

typedef struct psync_replica_counters
{
	size_t		size;			/* bytes the library filled */
	uint64_t	applied;
	uint64_t	ignored_stale;
	uint64_t	gaps;
	uint64_t	parse_errors;
	uint64_t	refetches;
} psync_replica_counters;

/*
 * Called after the value or the metadata changed (an apply, or a status
 * change), with the replica locked: value is the current value (NULL when
 * uninitialised), valid during the call.  It may call psync_replica_get,
 * _meta, _stats, _last_error, _observe and _unobserve on this replica, but
 * must not dispose it (refused: PSYNC_ERR_IN_CALLBACK).  Runs on the
 * thread that caused the change: a delivery thread, the refetcher's thread,
 * nats.c's connection-event thread (status "stale" after the NATS server
 * revoked the key's subscription, PSYNC_EVENT_REFUSED) or the caller of
 * psync_replica_new.  Keep it short and non-blocking, and do
 * not publish to an in-process transport from it (that would lock other
 * replicas while this one is locked): hand such work to another thread.
 */
typedef void (*psync_change_fn) (void *ctx, psync_replica *replica,
								 const void *value,
								 const psync_replica_metadata *meta);

typedef struct psync_replica_options
{
	size_t		size;			/* sizeof this struct: set by the init macro */
	const char *key;			/* required: object key, e.g. "users:123" */
	psync_schema schema;		/* required: parse must be set */
	psync_transport *transport; /* required */
	/* SSR-style seed: envelope bytes applied at creation (hydration). */
	const void *seed;
	size_t		seed_len;
	/* Recovery; NULL → no recovery, status goes "stale". */
	psync_refetch_fn refetch;
	void	   *refetch_ctx;
	/* Start with a refetch when no seed is given (C services have no SSR). */
	bool		initial_refetch;
	/* The first observer (more with psync_replica_observe); may be NULL. */
	psync_change_fn on_change;
	void	   *on_change_ctx;
	/*
	 * Envelopes buffered during a refetch; default 256 (older ones dropped).
	 * The buffer grows as needed, so any value up to SIZE_MAX is fine.
	 */
	size_t		max_buffered;
} psync_replica_options;

void		psync_replica_options_init_sized(psync_replica_options *opts, size_t size);
#define psync_replica_options_init(opts) \
	psync_replica_options_init_sized((opts), sizeof(*(opts)))

/*
 * Subscribe to the key and to its table's events (the sync name, a key of
 * its own: a reload refetches the key), then hydrate from the seed or the
 * initial refetch.  A key of a table with a scope (psync_nats_options.
 * scoped_tables) is followed in every scope.  A subscription the NATS
 * server refuses fails it with PSYNC_ERR_PERMISSION (the server's text with
 * psync_last_error); one it revokes later leaves the replica "stale" for
 * good, with that text as psync_replica_last_error.
 */
psync_status psync_replica_new(const psync_replica_options *opts,
							   psync_replica **out);

/*
 * Visit the current value under the replica lock: fn(ctx, value, meta) with
 * value NULL when uninitialised.  Runs fn on the calling thread before
 * returning; fn must not dispose the replica.
 */
typedef void (*psync_value_fn) (void *ctx, const void *value,
								const psync_replica_metadata *meta);
void		psync_replica_get(psync_replica *replica, psync_value_fn fn, void *ctx);

/* Fill *out (see the ABI policy at the top: the macros pass sizeof(*out)). */
void		psync_replica_meta_sized(psync_replica *replica,
									 psync_replica_metadata *out, size_t size);
void		psync_replica_stats_sized(psync_replica *replica,
									  psync_replica_counters *out, size_t size);
#define psync_replica_meta(replica, out) \
	psync_replica_meta_sized((replica), (out), sizeof(*(out)))
#define psync_replica_stats(replica, out) \
	psync_replica_stats_sized((replica), (out), sizeof(*(out)))

/*
 * Wait until no refetch is in flight (the seed's whenIdle).  timeout_ms < 0
 * waits forever.  PSYNC_OK or PSYNC_ERR_TIMEOUT.  From any libparasync
 * callback (which may hold the lock the refetch needs) it returns
 * PSYNC_ERR_IN_CALLBACK at once instead of hanging.
 */
psync_status psync_replica_wait_idle(psync_replica *replica, int timeout_ms);

/*
 * Ask for a refetch now (as after a NATS reconnect).  No-op while one is in
 * flight; status "stale" without a refetch function.
 */
void		psync_replica_resync(psync_replica *replica);

/*
 * Stop listening and free (unlike the seed's dispose() it is not idempotent:
 * the handle is gone).  Waits for a running handler on another thread; a
 * refetch in flight finishes into the void.  From a callback of this very
 * replica (its parse, observers, refetch start or value visitor) it does
 * nothing and returns PSYNC_ERR_IN_CALLBACK: dispose it after the callback
 * returned, from another thread or later on this one.
 */
psync_status psync_replica_destroy(psync_replica *replica);

/*
 * Observers: any number of change callbacks per replica (the seed lets any
 * number of observers track a replica).  Each is called, in registration
 * order, as documented for psync_change_fn.  *out_id (may be NULL) gets an
 * id, never 0 and never reused by this replica.  An observer added from a
 * callback is first called at the next change; unobserve is idempotent and,
 * once it returns, the observer is not running on another thread and will
 * not be called again.
 */
typedef uint64_t psync_observer_id;
psync_status psync_replica_observe(psync_replica *replica, psync_change_fn fn,
								   void *ctx, psync_observer_id *out_id);
void		psync_replica_unobserve(psync_replica *replica, psync_observer_id id);

/*
 * Why the replica is stale or skewed: the refetch failure passed to
 * psync_refetch_fail (libpq's text with the libpq refetcher), the parse
 * callback's error, or a missing refetch function.  See psync_last_error.
 */
size_t		psync_replica_last_error(psync_replica *replica, char *buf, size_t size);

/* ------------------------------------------------------------ collection */

/*
 * A live replica of a whole synced table: every row the database role may
 * see, loaded page by page with para_sync.snapshot_page() and then kept
 * current from the table's envelopes.  Each member carries its own
 * sequence, so the collection checks and repairs every row on its own:
 *
 *   - it subscribes to "<table>:*" first, then loads the pages; envelopes
 *     that arrive meanwhile are held and reconciled per row, by sequence,
 *     once the last page is in (older than the page: dropped; next: applied;
 *     beyond: that row is refetched);
 *   - live: each row follows a replica's rules (docs/protocol.md "Client
 *     reconciliation"): its value passes the parse gate first (rejected:
 *     that row is refetched); an envelope whose sequence is the row's + 1
 *     applies (an upsert adds or updates the member, a delete removes it);
 *     older ones are ignored; a gap refetches that one row (psync_refetch_fn, e.g. the
 *     libpq refetcher), the others carry on; rows that appear later join;
 *   - PSYNC_EVENT_LOST (NATS reconnect, slow consumer) reloads the pages in
 *     the background without dropping the collection: members keep their
 *     values, newer rows replace older ones, rows gone from the table leave;
 *   - the table's reload event (column DDL) reloads the same way; a page
 *     row at a member's own sequence replaces it when its schema_version
 *     differs from the one the member's value was read under.
 *
 *
 * While a reload runs the rows stay live: envelopes of rows already held
 * apply at once, those of rows whose page has not come yet are held for
 * that page.  A failed row refetch is retried for that row, with backoff.
 * psync_collection_get_state() tells loading / live / reloading / error.
 *
 * A collection of one scope (psync_collection_options.scope) holds the
 * rows of that scope only: it subscribes to "<table>@<scope>:*" and to the
 * table's events, and loads through load_page with table
 * "<sync name>@<scope>" (the libpq loader: para_sync.snapshot_page(...,
 * scope => ...)).  A row enters with the upsert that moves it in (a
 * baseline: changes made in other scopes explain the jump in sequence), and
 * leaves with the delete that moves it out, or when a refetch of it answers
 * another scope, or none; page rows of another scope are skipped.
 *
 * Deleted rows are remembered by key and sequence (a few dozen bytes each)
 * while a load runs and, after it, for the last max_tombstones deletes, so
 * a late duplicate of an older envelope cannot bring them back.  A delete
 * of a row never held leaves no record.
 */
typedef struct psync_collection psync_collection;

typedef enum psync_member_change
{
	PSYNC_MEMBER_ADDED,
	PSYNC_MEMBER_UPDATED,
	PSYNC_MEMBER_REMOVED		/* value: the last value it had */
} psync_member_change;

/*
 * Change callback: runs with the collection locked, on the thread that made
 * the change — the collection's loader thread (pages, reconciliation, the
 * sweep after a reload), a transport delivery thread (live envelopes) or the
 * refetcher's thread (a row refetch).  value is valid during the call.  It
 * may read the collection (get, count, foreach, stats) but must not destroy
 * it or wait for it (refused: PSYNC_ERR_IN_CALLBACK).  As for replicas, do
 * not publish to an in-process transport from it: hand such work to
 * another thread.
 */
typedef void (*psync_collection_change_fn) (void *ctx, psync_collection *collection,
											psync_member_change change,
											const char *key, size_t key_len,
											const void *value, int64_t sequence);

/*
 * What a collection is doing.  LOADING: the first load runs (inside
 * psync_collection_new).  LIVE: every page is in, envelopes apply.
 * RELOADING: a reload runs (after PSYNC_EVENT_LOST, resync, a failed load);
 * rows stay live meanwhile.  ERROR: the collection cannot follow the table
 * (e.g. a subject layout mismatch, PSYNC_ERR_LAYOUT); the detail is in
 * psync_collection_last_error; it keeps checking and reloads once the cause
 * is gone.
 */
typedef enum psync_collection_state
{
	PSYNC_COLLECTION_LOADING,
	PSYNC_COLLECTION_LIVE,
	PSYNC_COLLECTION_RELOADING,
	PSYNC_COLLECTION_ERROR
} psync_collection_state;

/* "loading", "live", "reloading", "error"; never NULL. */
const char *psync_collection_state_text(psync_collection_state state);

/*
 * State callback: runs with the collection locked on its loader thread,
 * after the state changed.  Like a change callback it may read the
 * collection but not destroy or wait for it (PSYNC_ERR_IN_CALLBACK).
 */
typedef void (*psync_collection_state_fn) (void *ctx, psync_collection *collection,
										   psync_collection_state state);

/* A member, visited with the collection locked; value valid during the call. */
typedef void (*psync_member_fn) (void *ctx, const char *key, size_t key_len,
								 const void *value, int64_t sequence);

/*
 * A page loader: calls row(row_ctx, envelope, len) for each of the snapshot
 * envelopes of table (a sync name; for a collection of one scope
 * "<sync name>@<scope>": only that scope's rows) whose keys follow after_key (NULL: from
 * the first) in the server's page order (docs/protocol.md, "Loading a whole
 * table"; after_key is the last key of the previous page), in that order,
 * at most max_rows; returns PSYNC_OK (fewer than
 * max_rows rows: that was the last page) or an error with its text in
 * error.  Runs on the collection's loader thread, unlocked, inside the
 * collection (destroying or waiting for it from here is refused); may
 * block.  A row the collection cannot accept is skipped and counted
 * (rows_skipped), the load goes on.
 */
typedef void (*psync_page_row_fn) (void *row_ctx, const void *envelope, size_t len);
typedef psync_status (*psync_load_page_fn) (void *ctx, const char *table,
											const char *after_key, int max_rows,
											psync_page_row_fn row, void *row_ctx,
											char *error, size_t error_size);

/*
 * Layout check: write the subject layout the server publishes table in
 * ("key" or "table", docs/protocol.md "Subjects"; "scope" for a table with
 * a scope) into layout.  Runs on the
 * collection's loader thread before each load and every layout_check_ms;
 * may block.  Called with the loader's ctx (load_ctx).
 */
typedef psync_status (*psync_load_layout_fn) (void *ctx, const char *table,
											  char *layout, size_t layout_size,
											  char *error, size_t error_size);

/*
 * Cancel the page query in flight, if any, so that load_page returns soon
 * (with an error).  Called by psync_collection_destroy on the destroying
 * thread, concurrently with load_page on the loader thread; load_ctx.
 */
typedef void (*psync_cancel_load_fn) (void *ctx);

/*
 * libpq page loader: para_sync.snapshot_page() over its own connection
 * (opened from conninfo, reopened after a failure), or snapshot_table()
 * where the server has no snapshot_page() at the loader's first page (an
 * extension older than 0.4; the choice is kept for the loader's life).  One
 * loader may serve several collections (one page at a time).
 */
typedef struct psync_pq_loader psync_pq_loader;
psync_status psync_pq_loader_new_conninfo(const char *conninfo, psync_pq_loader **out);
psync_load_page_fn psync_pq_load_page_fn(void);
void	   *psync_pq_load_page_ctx(psync_pq_loader *loader);
/* Its layout check (para_sync.synced_tables.subject_layout) and cancel. */
psync_load_layout_fn psync_pq_load_layout_fn(void);
psync_cancel_load_fn psync_pq_cancel_load_fn(void);
/* Collections using it must be destroyed first. */
void		psync_pq_loader_destroy(psync_pq_loader *loader);

typedef struct psync_collection_options
{
	size_t		size;			/* sizeof this struct: set by the init macro */
	const char *table;			/* required: the table's sync name, "users" */
	psync_schema schema;		/* required: parse must be set */
	psync_transport *transport; /* required */
	psync_load_page_fn load_page;	/* required */
	void	   *load_ctx;
	/* Row refetch; NULL → a gap reloads the whole table instead. */
	psync_refetch_fn refetch;
	void	   *refetch_ctx;
	psync_collection_change_fn on_change;	/* the first observer; may be NULL */
	void	   *on_change_ctx;
	int			page_size;		/* rows per page; default 10000 */
	psync_collection_state_fn on_state;	/* may be NULL */
	void	   *on_state_ctx;
	psync_load_layout_fn load_layout;	/* NULL: not checked (libpq loader: its own) */
	psync_cancel_load_fn cancel_load;	/* NULL: destroy waits (libpq loader: its own) */
	/* 0 below: the default; < 0: none (never) */
	int			page_retries;	/* a failed page is tried again; default 3 */
	int			max_tombstones; /* deletes remembered after a load; default 4096 */
	int			layout_check_ms;	/* layout re-checked between loads; default 30000 */

	/*
	 * One scope of a table with a scope (docs/protocol.md "Scopes"): its
	 * token (psync_scope_is_valid(), e.g. "acme"), copied.  NULL (default):
	 * every row.  See "A collection of one scope" above.
	 */
	const char *scope;
} psync_collection_options;

void		psync_collection_options_init_sized(psync_collection_options *opts,
											   size_t size);
#define psync_collection_options_init(opts) \
	psync_collection_options_init_sized((opts), sizeof(*(opts)))

/*
 * Subscribe, load every page (on the collection's loader thread; it waits)
 * and return the live collection.  The initial members are reported as
 * PSYNC_MEMBER_ADDED before it returns.  A failed page is tried again
 * page_retries times; a failed initial load fails it (PSYNC_ERR_DATABASE,
 * also for a loader whose full pages do not advance; PSYNC_ERR_LAYOUT for a
 * subject layout mismatch; PSYNC_ERR_PERMISSION when the NATS server
 * refuses its subscription; the text with psync_last_error).  A refusal
 * that comes later (PSYNC_EVENT_REFUSED) puts it in state ERROR for good,
 * with the server's text in psync_collection_last_error.
 */
psync_status psync_collection_new(const psync_collection_options *opts,
								  psync_collection **out);

/* Visit key's member; false (fn not called) when it is not a member. */
bool		psync_collection_get(psync_collection *collection, const char *key,
								 psync_member_fn fn, void *ctx);

/* Number of members (rows present). */
size_t		psync_collection_count(psync_collection *collection);

/* Visit every member (in no particular order) with the collection locked. */
void		psync_collection_foreach(psync_collection *collection,
									 psync_member_fn fn, void *ctx);

typedef struct psync_collection_counters
{
	size_t		size;			/* bytes the library filled */
	uint64_t	loads;			/* complete page loads (1 + reloads) */
	uint64_t	rows_loaded;
	uint64_t	applied;		/* live envelopes applied */
	uint64_t	ignored_stale;
	uint64_t	gaps;
	uint64_t	row_refetches;
	uint64_t	parse_errors;
	uint64_t	rows_skipped;	/* page rows not accepted (see last_error) */
	uint64_t	row_refetch_failures;	/* each retried with backoff */
	uint64_t	tombstones;		/* deleted rows remembered now */
	uint64_t	key_slots;		/* hash slots of the key map now */
} psync_collection_counters;

/* Fill *out (see the ABI policy at the top: the macro passes sizeof(*out)). */
void		psync_collection_stats_sized(psync_collection *collection,
										 psync_collection_counters *out, size_t size);
#define psync_collection_stats(collection, out) \
	psync_collection_stats_sized((collection), (out), sizeof(*(out)))

/* Reload the pages in the background, as after PSYNC_EVENT_LOST. */
void		psync_collection_resync(psync_collection *collection);

/* The current state (any thread). */
psync_collection_state psync_collection_get_state(psync_collection *collection);

/*
 * Change observers, as for replicas (psync_replica_observe): any number,
 * each called as documented for psync_collection_change_fn, in
 * registration order; on_change is the first.  Unobserve is idempotent;
 * once it returns the observer is not running and will not be called.
 */
psync_status psync_collection_observe(psync_collection *collection,
									  psync_collection_change_fn fn, void *ctx,
									  psync_observer_id *out_id);
void		psync_collection_unobserve(psync_collection *collection,
									   psync_observer_id id);

/*
 * Wait until no load or reload and no row refetch (nor its retry) is in
 * flight.  A reload that fails is retried, so it waits for the database
 * too: pass a timeout when that matters.  PSYNC_OK,
 * PSYNC_ERR_TIMEOUT, or PSYNC_ERR_IN_CALLBACK from a callback.
 */
psync_status psync_collection_wait_idle(psync_collection *collection, int timeout_ms);

/* The last load, refetch or parse error (see psync_last_error). */
size_t		psync_collection_last_error(psync_collection *collection, char *buf,
										size_t size);

/*
 * Unsubscribe, stop the loader thread and free.  A page query in flight is
 * cancelled with cancel_load (when set; else destroy waits for it).  Row
 * refetches in flight finish into the void.  PSYNC_ERR_IN_CALLBACK (and
 * nothing done) from one of its own callbacks, the page loader included.
 */
psync_status psync_collection_destroy(psync_collection *collection);

#ifdef __cplusplus
}
#endif

#endif							/* PARA_SYNC_CLIENT_H */
