/*
 * publisher.h — internal interface of the publisher family: the loop
 * (publisher.c), the background worker process (publisher_worker.c), the
 * batch (publisher_batch.c), its NATS side (publisher_nats.c), the standby
 * check (publisher_standby.c), its shared memory / status view
 * (publisher_status.c), the commit wake-up (publisher_wake.c) and its
 * per-table statistics (stat_tables.c); and of the outbox files it uses:
 * the consume step (outbox_consume.c), the backlog count
 * (outbox_backlog.c) and the vacuum (outbox_vacuum.c).
 * Nothing outside these files uses it; the rest of the extension only sees
 * publisher_init() in para_sync.h.
 */
#ifndef PARA_SYNC_PUBLISHER_H
#define PARA_SYNC_PUBLISHER_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/spin.h"

/* ---- the publisher's settings (defined in settings.c) */

extern char *psync_database;
extern char *psync_nats_url;
extern char *psync_subject_prefix;
extern int	psync_batch_size;
extern char *psync_jetstream_stream;
extern char *psync_nats_token;
extern char *psync_nats_user;
extern char *psync_nats_password;
extern char *psync_nats_credentials_file;
extern char *psync_tls_ca_file;
extern char *psync_tls_cert_file;
extern char *psync_tls_key_file;
extern char *psync_standby_slots;
extern int	psync_batch_bytes;
extern bool psync_tls_required;
extern int	psync_connect_timeout_ms;
extern int	psync_confirm_timeout_ms;
extern int	psync_reconnect_wait_ms;
extern int	psync_backoff_min_ms;
extern int	psync_backoff_max_ms;
extern int	psync_poll_interval_ms;
extern int	psync_batch_delay_us;

/* ---- the background worker process (publisher_worker.c) */

/* SIGTERM ends the worker's loop; it then exits to be restarted */
/* SIGHUP: re-read the settings (may restart the worker or reconnect NATS) */
extern void publisher_reload_settings(void);

/* ---- the loop (publisher.c) */

extern void publisher_loop_init(void);
extern void publisher_loop(void);
/* The loop's short transaction with a snapshot; false: no extension */
extern bool publisher_begin_work(void);
extern void publisher_end_work(void);

/* ---- para_sync.standby_slots (publisher_standby.c) */

#include "access/xlogdefs.h"
#include "utils/guc.h"

typedef enum StandbyWait
{
	STANDBY_CONFIRMED,			/* every listed slot flushed the WAL */
	STANDBY_WAITING,			/* a connected standby is behind: wait briefly */
	STANDBY_PROBLEM				/* missing, inactive or logical slot: report */
} StandbyWait;

extern bool publisher_standby_check(char **newval, void **extra, GucSource source);
extern StandbyWait publisher_standby_confirmed(XLogRecPtr upto, char *reason, size_t len);

/* ---- the publisher's status: shared state and reports (publisher_status.c) */

typedef enum PsyncWorkerState
{
	PSW_STOPPED = 0,
	PSW_STARTING,
	PSW_NO_EXTENSION,			/* waiting for CREATE EXTENSION */
	PSW_CONNECTING,				/* (re)connecting to NATS */
	PSW_IDLE,					/* waiting for a commit */
	PSW_READING,				/* reading a batch from the outbox */
	PSW_PUBLISHING,				/* publishing, waiting for NATS to confirm */
	PSW_ACKING,					/* removing confirmed envelopes */
	PSW_BACKOFF,				/* NATS failed; waiting before a retry */
	PSW_WAITING_STANDBY,		/* waiting for para_sync.standby_slots */
	PSW_RECOVERY,				/* the server is a standby: never publish */
	PSW_VACUUMING				/* caught up: vacuuming the outbox */
} PsyncWorkerState;

typedef enum PsyncNatsState
{
	PSN_DISCONNECTED = 0,
	PSN_CONNECTING,
	PSN_CONNECTED,
	PSN_RECONNECTING,
	PSN_FAILED
} PsyncNatsState;

typedef struct PsyncShared
{
	slock_t		mutex;			/* protects everything below but latch */
	Latch	   *latch;			/* the worker's latch; NULL when none runs */
	pg_atomic_uint32 wake_on_commit;	/* 0 while NATS is failing */
	pg_atomic_uint64 commit_wakes;	/* commits that woke the worker, ever */
	pg_atomic_uint32 database;	/* the worker's database OID; InvalidOid: no worker connected */
	int			pid;
	PsyncWorkerState state;
	PsyncNatsState nats_state;
	bool		jetstream;
	char		server[256];	/* connected server, credentials stripped */
	char		last_error[512];
	char		detail[256];	/* why the current state: e.g. which slot */
	TimestampTz last_error_at;
	TimestampTz last_publish_at;
	TimestampTz started_at;
	int64		backlog;		/* -1: unknown */
	TimestampTz oldest_queued_at;	/* 0: none */
	TimestampTz backlog_at;		/* when backlog was measured */
	uint64		published;
	uint64		batches;
	uint64		retries;
	uint64		refetches;
	uint64		skipped;		/* too large even as op refetch */
} PsyncShared;

extern PsyncShared *publisher_shared;

extern void publisher_status_shmem_init(void);
extern void publisher_status_set_state(PsyncWorkerState state);
extern void publisher_status_set_nats(PsyncNatsState state, const char *server);
extern void publisher_status_set_error(const char *error);
extern void publisher_status_set_detail(const char *detail);
extern void publisher_status_count_batch(uint64 published, uint64 refetches, uint64 skipped);
extern void publisher_status_backlog_at_least(int64 n);
extern void publisher_status_count_retry(void);
extern void publisher_status_set_backlog(int64 backlog, TimestampTz oldest);
extern void publisher_status_register_worker(void);
extern void publisher_report_problem(const char *msg);
extern void publisher_report_recovered(const char *msg);
extern bool publisher_has_problem(void);
extern void publisher_forget_problem(void);
extern void publisher_set_activity(PsyncWorkerState state, const char *activity);

/* ---- committing writers wake the worker (publisher_wake.c) */

extern void publisher_wake_init(void);
extern void publisher_wake_set_database(Oid database);
extern void publisher_wake_on_commit(bool on);
extern uint64 publisher_wake_count(void);

/* ---- the outbox's consume step (outbox_consume.c) */

/* One outbox row, valid only during the OutboxRowFn call. */
typedef struct OutboxRow
{
	text	   *key;
	int64		seq;
	int64		txid;
	Datum		envelope;		/* bytea, possibly toasted */
	char		subject_layout; /* PSYNC_LAYOUT_KEY or PSYNC_LAYOUT_TABLE */
	text	   *scope;			/* the scope captured (scope.c), or NULL */
	bool		wrapped;		/* from the keys before after_key */
	ItemPointerData tid;		/* where the row is */
	XLogRecPtr	commit_lsn;		/* WAL to flush for its commit to be durable */
	TimestampTz queued_at;		/* start of the transaction that wrote it */
} OutboxRow;

/* Takes a row (copying what it keeps) or returns false to end the read. */
typedef bool (*OutboxRowFn) (const OutboxRow *row, void *arg);

typedef struct OutboxAck
{
	text	   *key;
	int64		upto;			/* remove the key's rows with seq <= upto */
	ItemPointerData *tids;		/* NULL, or where those rows were read */
	int			ntids;
} OutboxAck;

extern int	outbox_read(const char *after_key, int64 after_seq, bool wrap,
						int limit, OutboxRowFn fn, void *arg);
extern int64 outbox_remove(OutboxAck *acks, int n);

/* ---- vacuuming the outbox after a drain (outbox_vacuum.c) */

extern int	psync_vacuum_threshold;	/* settings.c */

extern void outbox_vacuum_count(int64 n);
extern bool outbox_vacuum_due(void);
extern void outbox_vacuum_run(void);

/* ---- the NATS side (publisher_nats.c); its threads never touch PostgreSQL */

/* One envelope ready to publish; the bytes stay owned by the caller. */
typedef struct PsyncOutMsg
{
	const char *key;
	int			key_len;
	int64		seq;
	int64		txid;
	const char *data;
	int			len;
	bool		by_table;		/* subject <prefix>.<sync name>.<key> */
	const char *scope;			/* or NULL; else <prefix>.<sync name>.<scope>.<key> */
	int			scope_len;
	bool		skip;			/* too large even as op refetch: not sent */
	bool		refetch;		/* too large: sent as op refetch */
	TimestampTz queued_at;		/* the outbox row's, for stat_tables.c */
} PsyncOutMsg;

typedef enum PsyncPubResult
{
	PSP_OK = 0,					/* every message confirmed */
	PSP_NOT_CONNECTED,			/* nothing sent: no usable connection */
	PSP_FAILED					/* sent, not (all) confirmed: retry later */
} PsyncPubResult;

extern bool publisher_nats_connect(char *errbuf, size_t errlen);
extern void publisher_nats_disconnect(void);
extern bool publisher_nats_is_connected(void);
extern bool publisher_nats_poll_events(char *errbuf, size_t errlen);
extern bool publisher_nats_is_closed(void);
extern int64 publisher_nats_max_payload(void);
extern int64 publisher_nats_overhead(int key_len);
extern PsyncPubResult publisher_nats_send_batch(PsyncOutMsg *msgs, int n,
												char *errbuf, size_t errlen);
extern PsyncPubResult publisher_nats_confirm_batch(PsyncOutMsg *msgs, int n,
												   char *errbuf, size_t errlen);
extern char *publisher_nats_settings_fingerprint(void);
extern void publisher_nats_strip_credentials(const char *in, char *out, size_t outlen);

/* ---- the batch (publisher_batch.c) */

#include "storage/itemptr.h"
#include "access/xlogdefs.h"

typedef struct Batch
{
	MemoryContext cxt;			/* holds everything below */
	int			n;
	int			cap;
	int64		bytes;
	int64		byte_cap;		/* para_sync.batch_bytes, or what is left of it */
	bool		cap_first;		/* the first envelope may exceed byte_cap */
	PsyncOutMsg *msgs;
	text	  **keys;			/* msgs[i].key as text */
	ItemPointerData *tids;		/* where msgs[i] was read */
	bool		wrapped;		/* went on from the first key after the last */
	bool		whole;			/* read with wrap-around: could see every key */
	int			refetched;
	int			skipped;
	XLogRecPtr	commit_upto;	/* latest commit LSN of its rows' writers */
	XLogRecPtr	wal_upto;		/* WAL end of every commit the batch saw */
	bool		sent;			/* a read-ahead batch already sent (phase_send_ahead) */
	bool		capped;			/* the byte cap ended the read */
} Batch;

extern void publisher_batch_init(void);
extern bool publisher_batch_read(Batch *b, const char *after_key);
extern bool publisher_batch_took_all(const Batch *b);
extern void publisher_batch_read_ahead(Batch *b);
extern Batch *publisher_batch_ahead(void);
extern void publisher_batch_drop_ahead(void);
extern void publisher_batch_shrink(Batch *b);

/* ---- the backlog the status shows, measured by the worker (publisher_status.c) */

extern void publisher_status_refresh_backlog(bool caught_up);
extern void publisher_status_refresh_backlog_after(const Batch *b);
extern void publisher_status_forget_backlog_plan(void);

/* ---- the outbox's backlog, counted (outbox_backlog.c) */

#include "executor/spi.h"
extern bool outbox_backlog_count(SPIPlanPtr *plan, int64 *count, TimestampTz *oldest);

/* ---- per-table statistics, para_sync.stat_tables (stat_tables.c) */

extern int	psync_stat_max_tables;	/* settings.c */

extern void stat_tables_init(void);
extern void stat_tables_count_batch(const PsyncOutMsg *msgs, int n);

#endif							/* PARA_SYNC_PUBLISHER_H */
