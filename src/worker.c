/*
 * worker.c — the publisher background worker: settings, worker
 * registration, the main loop, and the outbox drain.
 *
 * One worker per cluster, connected to para_sync.database.  It sleeps on its
 * latch, which every transaction that wrote envelopes sets at commit
 * (status.c); a slow poll (para_sync.poll_interval) is only a fallback, e.g.
 * for COMMIT PREPARED.  Each batch:
 *   1. reads up to para_sync.batch_size committed envelopes in per-key
 *      sequence order, starting at the key after the previous batch and
 *      wrapping (fair across keys), in a short read-only transaction;
 *   2. flushes WAL up to the insert position taken after that read, so that
 *      only commits durable on disk go out (synchronous_commit = off too);
 *   3. publishes them to <subject_prefix>.<key> and waits for NATS to confirm
 *      (nats_conn.c);
 *   4. deletes exactly the rows it published and records each key's last
 *      sequence in para_sync.counters, in one transaction (the capture
 *      trigger reads counters when a key has no outbox rows).
 * If NATS is down or refuses, nothing is deleted: the worker logs once per
 * change of the problem, backs off, and re-reads the same rows later, so
 * nothing is lost or reordered (an envelope may go out twice: at least once).
 */
#include "para_sync.h"
#include "publisher.h"

#include <msgpack.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PGDLLEXPORT void para_sync_worker_main(Datum main_arg);

/* ---- settings */

char	   *psync_database = NULL;
char	   *psync_nats_url = NULL;
char	   *psync_subject_prefix = NULL;
int			psync_batch_size = 5000;
char	   *psync_jetstream_stream = NULL;
char	   *psync_nats_token = NULL;
char	   *psync_nats_user = NULL;
char	   *psync_nats_password = NULL;
char	   *psync_nats_credentials_file = NULL;
char	   *psync_tls_ca_file = NULL;
char	   *psync_tls_cert_file = NULL;
char	   *psync_tls_key_file = NULL;
bool		psync_tls_required = false;
int			psync_connect_timeout_ms = 2000;
int			psync_confirm_timeout_ms = 5000;
int			psync_reconnect_wait_ms = 1000;
int			psync_backoff_min_ms = 100;
int			psync_backoff_max_ms = 10000;
int			psync_poll_interval_ms = 1000;

static void
define_string(const char *name, const char *desc, char **var,
			  const char *def, GucContext ctx, int flags)
{
	DefineCustomStringVariable(name, desc, NULL, var, def, ctx, flags,
							   NULL, NULL, NULL);
}

static void
define_ms(const char *name, const char *desc, int *var, int def, int min, int max)
{
	DefineCustomIntVariable(name, desc, NULL, var, def, min, max, PGC_SIGHUP,
							GUC_UNIT_MS, NULL, NULL, NULL);
}

static void
define_settings(void)
{
	const int	secret = GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL;

	define_string("para_sync.database",
				  "Database the para_sync publisher connects to.",
				  &psync_database, "postgres", PGC_SIGHUP, 0);
	define_string("para_sync.nats_url",
				  "NATS server URL, or a comma-separated list of a cluster's URLs.",
				  &psync_nats_url, "nats://127.0.0.1:4222", PGC_SIGHUP, 0);
	define_string("para_sync.subject_prefix",
				  "Envelopes go to the subject <subject_prefix>.<key>.",
				  &psync_subject_prefix, "synced", PGC_SIGHUP, 0);
	DefineCustomIntVariable("para_sync.batch_size",
							"Largest number of envelopes published and confirmed as one batch.",
							NULL, &psync_batch_size, 5000, 1, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	define_string("para_sync.jetstream_stream",
				  "JetStream stream to publish into; empty publishes to core NATS.",
				  &psync_jetstream_stream, "", PGC_SIGHUP, 0);
	define_string("para_sync.nats_token",
				  "Token to authenticate to NATS with.",
				  &psync_nats_token, "", PGC_SUSET, secret);
	define_string("para_sync.nats_user",
				  "User name to authenticate to NATS with.",
				  &psync_nats_user, "", PGC_SUSET, GUC_SUPERUSER_ONLY);
	define_string("para_sync.nats_password",
				  "Password of para_sync.nats_user.",
				  &psync_nats_password, "", PGC_SUSET, secret);
	define_string("para_sync.nats_credentials_file",
				  "NATS credentials file (JWT and NKey seed) to authenticate with.",
				  &psync_nats_credentials_file, "", PGC_SUSET, secret);
	define_string("para_sync.tls_ca_file",
				  "CA certificates (PEM) that the NATS server's certificate must chain to.",
				  &psync_tls_ca_file, "", PGC_SUSET, GUC_SUPERUSER_ONLY);
	define_string("para_sync.tls_cert_file",
				  "Client certificate (PEM) presented to NATS.",
				  &psync_tls_cert_file, "", PGC_SUSET, GUC_SUPERUSER_ONLY);
	define_string("para_sync.tls_key_file",
				  "Private key (PEM) of para_sync.tls_cert_file.",
				  &psync_tls_key_file, "", PGC_SUSET, secret);
	DefineCustomBoolVariable("para_sync.tls_required",
							 "Connect to NATS over TLS only.",
							 NULL, &psync_tls_required, false, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	define_ms("para_sync.connect_timeout", "Timeout of one NATS connection attempt.",
			  &psync_connect_timeout_ms, 2000, 10, 600000);
	define_ms("para_sync.confirm_timeout",
			  "How long to wait for NATS to confirm a batch before retrying it.",
			  &psync_confirm_timeout_ms, 5000, 10, 600000);
	define_ms("para_sync.reconnect_wait",
			  "Pause between the NATS client's reconnect attempts to one server.",
			  &psync_reconnect_wait_ms, 1000, 10, 600000);
	define_ms("para_sync.backoff_min",
			  "First pause after a failed connect or publish; doubles up to para_sync.backoff_max.",
			  &psync_backoff_min_ms, 100, 1, 3600000);
	define_ms("para_sync.backoff_max", "Longest pause between retries.",
			  &psync_backoff_max_ms, 10000, 1, 3600000);
	define_ms("para_sync.poll_interval",
			  "Fallback poll of the outbox when no commit woke the publisher.",
			  &psync_poll_interval_ms, 1000, 10, 3600000);
}

/*
 * The postmaster logs 'parameter "x" changed to "value"' when a reload
 * changes a setting.  For the secret settings the value is cut off here.
 */
static emit_log_hook_type prev_emit_log_hook = NULL;

static void
redact_secrets(ErrorData *edata)
{
	static const char *const secrets[] = {
		"\"para_sync.nats_token\"", "\"para_sync.nats_password\"",
		"\"para_sync.nats_credentials_file\"", "\"para_sync.tls_key_file\""
	};

	if (edata->message != NULL && strncmp(edata->message, "parameter \"para_sync.", 21) == 0)
	{
		for (int i = 0; i < lengthof(secrets); i++)
		{
			const char *at = strstr(edata->message, secrets[i]);

			if (at != NULL)
			{
				edata->message = psprintf("parameter %s changed (value not logged)", secrets[i]);
				break;
			}
		}
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* Called from _PG_init. */
void
publisher_init(void)
{
	BackgroundWorker bgw;

	define_settings();
	status_shmem_init();
	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = redact_secrets;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "para_sync");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "para_sync_worker_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "para_sync publisher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "para_sync publisher");
	RegisterBackgroundWorker(&bgw);
}

/* ---- reporting: one log line per change of the problem, never a flood */

static char last_problem[512] = "";

static void
report_problem(const char *msg)
{
	status_set_error(msg);
	if (strcmp(msg, last_problem) == 0)
		return;
	strlcpy(last_problem, msg, sizeof(last_problem));
	ereport(WARNING,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("para_sync publisher: %s", msg),
			 errdetail("Envelopes stay in para_sync.outbox and are published once NATS accepts them."),
			 errhint("See SELECT * FROM para_sync.status; the para_sync.nats_* settings are reloaded on SIGHUP.")));
}

static void
report_recovered(const char *msg)
{
	if (last_problem[0] == '\0')
		return;
	last_problem[0] = '\0';
	ereport(LOG, (errmsg("para_sync publisher: %s", msg)));
}

static void
set_activity(PsyncWorkerState state, const char *activity)
{
	static PsyncWorkerState last = PSW_STOPPED;

	if (state == last)
		return;
	last = state;
	status_set_state(state);
	pgstat_report_activity(state == PSW_IDLE ? STATE_IDLE : STATE_RUNNING, activity);
}

/* ---- the drain */

typedef struct Batch
{
	int			n;
	PsyncOutMsg *msgs;
	ItemPointerData *tids;
	int			refetched;
} Batch;

static MemoryContext batch_cxt = NULL;
static char *after_key = NULL;	/* in TopMemoryContext */
static Oid	extension_oid = InvalidOid;
static SPIPlanPtr read_plan = NULL;
static SPIPlanPtr read_wrap_plan = NULL;
static SPIPlanPtr ack_plan = NULL;
static SPIPlanPtr backlog_plan = NULL;

static SPIPlanPtr
keep_plan(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL || SPI_keepplan(plan) != 0)
		elog(ERROR, "para_sync publisher: could not prepare \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	return plan;
}

static void
forget_plans(void)
{
	SPIPlanPtr *plans[] = {&read_plan, &read_wrap_plan, &ack_plan, &backlog_plan};

	for (int i = 0; i < lengthof(plans); i++)
	{
		if (*plans[i] != NULL)
			SPI_freeplan(*plans[i]);
		*plans[i] = NULL;
	}
}

static void
prepare_plans(void)
{
	Oid			read_types[2] = {TEXTOID, INT4OID};
	Oid			ack_types[1] = {TIDARRAYOID};

	if (read_plan != NULL)
		return;
	read_plan = keep_plan(
		"SELECT o.ctid, o.key, o.seq, o.txid, o.envelope FROM para_sync.outbox o"
		" WHERE o.key OPERATOR(pg_catalog.>=) $1"
		" ORDER BY o.key, o.seq LIMIT $2", 2, read_types);
	read_wrap_plan = keep_plan(
		"SELECT o.ctid, o.key, o.seq, o.txid, o.envelope FROM para_sync.outbox o"
		" WHERE o.key OPERATOR(pg_catalog.<) $1"
		" ORDER BY o.key, o.seq LIMIT $2", 2, read_types);
	/*
	 * By ctid: read, publish and delete happen in one transaction, whose lock
	 * and snapshot keep every read row where it is (no VACUUM FULL, no
	 * pruning) until the delete.
	 */
	ack_plan = keep_plan(
		"WITH done AS ("
		"  DELETE FROM para_sync.outbox o"
		"   WHERE o.ctid OPERATOR(pg_catalog.=) ANY ($1)"
		"  RETURNING o.key, o.seq)"
		" INSERT INTO para_sync.counters AS c (key, seq)"
		" SELECT d.key, pg_catalog.max(d.seq) FROM done d GROUP BY d.key"
		" ON CONFLICT (key) DO UPDATE"
		"   SET seq = pg_catalog.int8larger(c.seq, excluded.seq)", 1, ack_types);
	backlog_plan = keep_plan(
		"SELECT pg_catalog.count(*), pg_catalog.min(o.queued_at)"
		"  FROM para_sync.outbox o", 0, NULL);
}

/*
 * Start a transaction, connected to SPI, with a snapshot.  false (and no
 * transaction) when the extension is not installed in this database.
 */
static bool
begin_work(void)
{
	Oid			ext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	ext = get_extension_oid("para_sync", true);
	if (!OidIsValid(ext))
	{
		CommitTransactionCommand();
		extension_oid = InvalidOid;
		return false;
	}
	if (ext != extension_oid)
	{
		/* installed, or dropped and re-created: start afresh */
		forget_plans();
		extension_oid = ext;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "para_sync publisher: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	prepare_plans();
	return true;
}

static void
end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

static void
collect_rows(Batch *b, MemoryContext into)
{
	MemoryContext old = MemoryContextSwitchTo(into);

	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		PsyncOutMsg *m = &b->msgs[b->n];
		bool		isnull;
		text	   *key;
		bytea	   *env;

		b->tids[b->n] = *(ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 1, &isnull));
		key = DatumGetTextPP(SPI_getbinval(tup, desc, 2, &isnull));
		m->key_len = VARSIZE_ANY_EXHDR(key);
		m->key = pnstrdup(VARDATA_ANY(key), m->key_len);
		m->seq = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		m->txid = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		/* detoasts into the batch context */
		env = DatumGetByteaPCopy(SPI_getbinval(tup, desc, 5, &isnull));
		m->data = VARDATA_ANY(env);
		m->len = VARSIZE_ANY_EXHDR(env);
		b->n++;
	}
	MemoryContextSwitchTo(old);
}

/*
 * Read the next batch, leaving the transaction open for ack_batch().
 * false (and no transaction): the extension is not installed.
 */
static bool
read_batch(Batch *b)
{
	Datum		args[2];
	int			rc;

	b->n = 0;
	b->refetched = 0;
	b->msgs = MemoryContextAlloc(batch_cxt, sizeof(PsyncOutMsg) * psync_batch_size);
	b->tids = MemoryContextAlloc(batch_cxt, sizeof(ItemPointerData) * psync_batch_size);

	if (!begin_work())
		return false;
	args[0] = CStringGetTextDatum(after_key);
	args[1] = Int32GetDatum(psync_batch_size);
	rc = SPI_execute_plan(read_plan, args, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "para_sync publisher: reading the outbox failed: %s",
			 SPI_result_code_string(rc));
	collect_rows(b, batch_cxt);
	if (b->n < psync_batch_size && after_key[0] != '\0')
	{
		args[1] = Int32GetDatum(psync_batch_size - b->n);
		rc = SPI_execute_plan(read_wrap_plan, args, NULL, true, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "para_sync publisher: reading the outbox failed: %s",
				 SPI_result_code_string(rc));
		collect_rows(b, batch_cxt);
	}
	return true;
}

/*
 * An envelope beyond the server's max_payload goes out as op refetch, without
 * its value (docs/protocol.md, "Delivery"); subscribers call snapshot().
 */
static void
shrink_oversized(Batch *b)
{
	int64		max_payload = nats_max_payload();
	bool		jetstream = psync_jetstream_stream[0] != '\0';

	if (max_payload <= 0)
		return;
	for (int i = 0; i < b->n; i++)
	{
		PsyncOutMsg *m = &b->msgs[i];
		/* JetStream: the Nats-Msg-Id header counts against max_payload too */
		int64		overhead = jetstream ? 64 + m->key_len : 0;
		psync_envelope env;
		psync_envelope refetch = {0};
		StringInfoData out;

		if (m->len + overhead <= max_payload)
			continue;
		if (psync_envelope_decode(m->data, m->len, &env) != PSYNC_DECODE_OK)
		{
			/* not ours to judge: keep key/sequence from the outbox row */
			env.schema_version = "";
			env.schema_version_len = 0;
		}
		refetch.key = m->key;
		refetch.key_len = m->key_len;
		refetch.has_value = false;
		refetch.schema_version = env.schema_version;
		refetch.schema_version_len = env.schema_version_len;
		refetch.sequence = (uint64) m->seq;
		refetch.op = PSYNC_OP_REFETCH;
		refetch.has_txid = true;
		refetch.txid = (uint64) m->txid;
		out.data = NULL;
		{
			MemoryContext old = MemoryContextSwitchTo(batch_cxt);

			initStringInfo(&out);
			MemoryContextSwitchTo(old);
		}
		if (psync_envelope_encode(&refetch, msgpack_buffer_write, &out) != 0)
			elog(ERROR, "para_sync publisher: could not encode a refetch envelope");
		m->data = out.data;
		m->len = out.len;
		b->refetched++;
	}
}

/* Remove the published rows, in the transaction that read them. */
static void
ack_batch(Batch *b)
{
	Datum	   *tids = palloc(sizeof(Datum) * b->n);
	Datum		arg;
	int			rc;

	for (int i = 0; i < b->n; i++)
		tids[i] = PointerGetDatum(&b->tids[i]);
	arg = PointerGetDatum(construct_array(tids, b->n, TIDOID,
										  sizeof(ItemPointerData), false,
										  TYPALIGN_SHORT));
	rc = SPI_execute_plan(ack_plan, &arg, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "para_sync publisher: removing published envelopes failed: %s",
			 SPI_result_code_string(rc));
}

static TimestampTz backlog_measured = 0;

/* Measure backlog and oldest envelope, at most once a second. */
static void
refresh_backlog(bool caught_up)
{
	TimestampTz now = GetCurrentTimestamp();

	if (caught_up)
	{
		status_set_backlog(0, 0);
		backlog_measured = now;
		return;
	}
	if (!TimestampDifferenceExceeds(backlog_measured, now, 1000))
		return;
	backlog_measured = now;
	if (!begin_work())
		return;
	if (SPI_execute_plan(backlog_plan, NULL, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		bool		null1,
					null2;
		int64		count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc, 1, &null1));
		Datum		oldest = SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 2, &null2);

		status_set_backlog(count, null2 ? 0 : DatumGetTimestampTz(oldest));
	}
	end_work();
}

/*
 * Flush WAL up to the insert position read after the batch: every commit
 * record the batch's snapshot saw ends at or before it.  At a page start the
 * insert position lies after a page header that is not written yet; flush
 * to the page boundary then (that is where the last record ended).
 */
static void
flush_wal(void)
{
	XLogRecPtr	upto = GetXLogInsertRecPtr();

	if (XLogSegmentOffset(upto, wal_segment_size) == SizeOfXLogLongPHD)
		upto -= SizeOfXLogLongPHD;
	else if (upto % XLOG_BLCKSZ == SizeOfXLogShortPHD)
		upto -= SizeOfXLogShortPHD;
	XLogFlush(upto);
}

typedef enum DrainResult
{
	DRAIN_CAUGHT_UP,			/* published everything there was */
	DRAIN_MORE,					/* a full batch: there may be more */
	DRAIN_NO_EXTENSION,
	DRAIN_FAILED				/* NATS did not confirm: back off */
} DrainResult;

static DrainResult
drain_once(char *errbuf, size_t errlen)
{
	Batch		b;
	PsyncPubResult r;

	MemoryContextReset(batch_cxt);
	set_activity(PSW_READING, "para_sync publisher: reading the outbox");
	if (!read_batch(&b))
		return DRAIN_NO_EXTENSION;
	if (b.n == 0)
	{
		end_work();
		return DRAIN_CAUGHT_UP;
	}

	/* publish only what is durable, whatever synchronous_commit was */
	flush_wal();

	shrink_oversized(&b);
	set_activity(PSW_PUBLISHING, "para_sync publisher: publishing, waiting for NATS to confirm");
	r = nats_publish_batch(b.msgs, b.n, errbuf, errlen);
	if (r != PSP_OK)
	{
		end_work();				/* read only: nothing to undo */
		return DRAIN_FAILED;
	}

	set_activity(PSW_ACKING, "para_sync publisher: removing published envelopes");
	ack_batch(&b);
	end_work();
	status_count_batch(b.n, b.refetched);
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		char	   *next = pnstrdup(b.msgs[b.n - 1].key, b.msgs[b.n - 1].key_len);

		MemoryContextSwitchTo(old);
		pfree(after_key);
		after_key = next;
	}
	return b.n < psync_batch_size ? DRAIN_CAUGHT_UP : DRAIN_MORE;
}

/* ---- main loop */

static char *nats_fingerprint = NULL;

static void
worker_exit(int code, Datum arg)
{
	nats_disconnect();
}

/* SIGHUP: re-read settings; reconnect when a NATS setting changed. */
static void
reload_settings(char *startup_database)
{
	char	   *fp;

	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	if (strcmp(startup_database, psync_database) != 0)
	{
		ereport(LOG,
				(errmsg("para_sync publisher: para_sync.database changed from \"%s\" to \"%s\"; restarting",
						startup_database, psync_database)));
		proc_exit(1);			/* the postmaster starts us again */
	}
	fp = nats_settings_fingerprint();
	if (strcmp(fp, nats_fingerprint) != 0)
	{
		char		safe[512];

		strip_url_credentials(psync_nats_url, safe, sizeof(safe));
		ereport(LOG,
				(errmsg("para_sync publisher: NATS settings changed; reconnecting to %s", safe)));
		nats_disconnect();
		last_problem[0] = '\0';
	}
	pfree(nats_fingerprint);
	nats_fingerprint = MemoryContextStrdup(TopMemoryContext, fp);
	pfree(fp);
}

static long
next_backoff(long current)
{
	if (current <= 0)
		return psync_backoff_min_ms;
	return Min(current * 2, (long) psync_backoff_max_ms);
}

void
para_sync_worker_main(Datum main_arg)
{
	char	   *startup_database;
	char		errbuf[512];
	long		backoff_ms = 0;
	TimestampTz retry_at = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	status_register_worker();
	startup_database = MemoryContextStrdup(TopMemoryContext, psync_database);
	BackgroundWorkerInitializeConnection(startup_database, NULL, 0);
	pgstat_report_appname("para_sync publisher");
	/* our deletes need not wait for the disk: a lost one is only a resend */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/* the ack deletes by ctid: a TID scan, never a scan of the backlog */
	SetConfigOption("enable_seqscan", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/* a SERIALIZABLE default would make our outbox reads conflict with writers */
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);
	before_shmem_exit(worker_exit, (Datum) 0);

	batch_cxt = AllocSetContextCreate(TopMemoryContext, "para_sync publisher batch",
									  ALLOCSET_DEFAULT_SIZES);
	after_key = MemoryContextStrdup(TopMemoryContext, "");
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		nats_fingerprint = nats_settings_fingerprint();
		MemoryContextSwitchTo(old);
	}
	ereport(LOG, (errmsg("para_sync publisher started on database \"%s\"", startup_database)));

	for (;;)
	{
		long		timeout = psync_poll_interval_ms;
		TimestampTz now;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			break;
		if (ConfigReloadPending)
		{
			reload_settings(startup_database);
			backoff_ms = 0;
			retry_at = 0;
		}
		if (nats_poll_events(errbuf, sizeof(errbuf)))
		{
			if (nats_is_connected())
				report_recovered(errbuf);
			else
			{
				status_count_retry();
				report_problem(errbuf);
			}
		}

		now = GetCurrentTimestamp();
		if (retry_at != 0 && now < retry_at)
		{
			/* backing off */
			long		secs;
			int			usecs;

			TimestampDifference(now, retry_at, &secs, &usecs);
			timeout = Min(timeout, secs * 1000 + usecs / 1000 + 1);
			set_activity(PSW_BACKOFF, "para_sync publisher: backing off after a NATS failure");
			refresh_backlog(false);
		}
		else if (nats_is_closed())
		{
			/* never connected, settings changed, or closed for good */
			if (!begin_work())
			{
				set_activity(PSW_NO_EXTENSION, "para_sync publisher: waiting for CREATE EXTENSION para_sync");
				status_set_backlog(-1, 0);
			}
			else
			{
				end_work();
				set_activity(PSW_CONNECTING, "para_sync publisher: connecting to NATS");
				status_set_nats(PSN_CONNECTING, "");
				if (nats_connect(errbuf, sizeof(errbuf)))
				{
					char		safe[512];

					backoff_ms = 0;
					retry_at = 0;
					strip_url_credentials(psync_nats_url, safe, sizeof(safe));
					snprintf(errbuf, sizeof(errbuf), "connected to NATS at %s", safe);
					if (last_problem[0] != '\0')
						report_recovered(errbuf);
					else
						ereport(LOG, (errmsg("para_sync publisher: %s", errbuf)));
					continue;	/* drain right away */
				}
				report_problem(errbuf);
				status_count_retry();
				backoff_ms = next_backoff(backoff_ms);
				retry_at = TimestampTzPlusMilliseconds(now, backoff_ms);
				timeout = backoff_ms;
				refresh_backlog(false);
			}
		}
		else if (!nats_is_connected())
		{
			/* nats.c is reconnecting; its callback wakes us */
			set_activity(PSW_CONNECTING, "para_sync publisher: waiting for NATS to come back");
			refresh_backlog(false);
		}
		else
		{
			DrainResult r;

			retry_at = 0;
			for (;;)
			{
				r = drain_once(errbuf, sizeof(errbuf));
				if (r != DRAIN_MORE || ConfigReloadPending || ShutdownRequestPending)
					break;
				refresh_backlog(false);
				CHECK_FOR_INTERRUPTS();
			}
			if (r == DRAIN_FAILED)
			{
				report_problem(errbuf);
				status_count_retry();
				backoff_ms = next_backoff(backoff_ms);
				retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff_ms);
				timeout = backoff_ms;
				refresh_backlog(false);
			}
			else if (r == DRAIN_NO_EXTENSION)
			{
				set_activity(PSW_NO_EXTENSION, "para_sync publisher: waiting for CREATE EXTENSION para_sync");
				status_set_backlog(-1, 0);
				nats_disconnect();
			}
			else
			{
				if (backoff_ms != 0)
					report_recovered("NATS accepts envelopes again; publishing resumed");
				backoff_ms = 0;
				if (r == DRAIN_CAUGHT_UP)
				{
					refresh_backlog(true);
					set_activity(PSW_IDLE, "para_sync publisher: waiting for commits");
				}
				else
					continue;	/* interrupted mid-backlog: handle it, go on */
			}
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(timeout, 1), PG_WAIT_EXTENSION);
	}
	proc_exit(0);
}
