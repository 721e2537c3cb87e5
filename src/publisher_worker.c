/*
 * publisher_worker.c — the publisher's background worker process: its
 * registration (publisher_init(), from _PG_init), its entry point
 * para_sync_worker_main(), its signals (SIGTERM ends the loop, SIGHUP
 * reloads the settings), its setup and its exit, and the log hook that keeps
 * secret settings out of the log (redact_secrets()).  The work itself is the
 * loop in publisher.c; the settings are defined in settings.c.
 *
 * One worker per cluster, connected to para_sync.database, started once the
 * server is out of recovery (so also right after a standby's promotion).
 */
#include "para_sync.h"
#include "publisher.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"

PGDLLEXPORT void para_sync_worker_main(Datum main_arg);

/* ---- registration, and the log hook */

/* true in the publisher worker: its errors also go to para_sync.status */
static bool am_publisher = false;

/*
 * The postmaster starts the worker again this long after it exited with
 * code 1: after a SIGTERM that was not a shutdown, a change of
 * para_sync.database, or an error (e.g. para_sync.database does not exist),
 * so that a persistent error costs one attempt per pause, not a loop.
 */
#define PUBLISHER_RESTART_SECS 5

/*
 * The postmaster logs 'parameter "x" changed to "value"' when a reload
 * changes a setting, and 'invalid value for parameter "x": "value"' when it
 * refuses one.  For the secret settings (and the URL, which may carry a
 * password) the value is cut off here.  In the worker, errors also go to
 * para_sync.status, so that e.g. a missing para_sync.database shows there.
 */
static emit_log_hook_type prev_emit_log_hook = NULL;

static void
redact_secrets(ErrorData *edata)
{
	static const char *const secrets[] = {
		"\"para_sync.nats_token\"", "\"para_sync.nats_password\"",
		"\"para_sync.nats_credentials_file\"", "\"para_sync.tls_key_file\"",
		"\"para_sync.nats_url\""
	};

	if (am_publisher && edata->elevel >= ERROR && publisher_shared != NULL &&
		edata->message != NULL)
		publisher_status_set_error(edata->message);
	if (edata->message != NULL &&
		(strncmp(edata->message, "parameter \"para_sync.", 21) == 0 ||
		 strncmp(edata->message, "invalid value for parameter \"para_sync.", 39) == 0))
	{
		for (int i = 0; i < lengthof(secrets); i++)
		{
			const char *at = strstr(edata->message, secrets[i]);

			if (at != NULL)
			{
				edata->message = edata->message[0] == 'p' ?
					psprintf("parameter %s changed (value not logged)", secrets[i]) :
					psprintf("invalid value for parameter %s (value not logged)", secrets[i]);
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

	publisher_wake_init();
	publisher_status_shmem_init();
	stat_tables_init();
	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = redact_secrets;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = PUBLISHER_RESTART_SECS;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "para_sync");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "para_sync_worker_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "para_sync publisher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "para_sync publisher");
	RegisterBackgroundWorker(&bgw);
}

/* ---- SIGTERM: a shutdown, or a request to restart */

/* who sent the last SIGTERM: 0 when not known */
static volatile sig_atomic_t sigterm_sender = 0;

#if defined(SA_SIGINFO) && !defined(WIN32)
/* SignalHandlerForShutdownRequest, remembering the sender. */
static void
handle_sigterm(int signo, siginfo_t *info, void *context)
{
	int			save_errno = errno;

	sigterm_sender = info != NULL ? info->si_pid : 0;
	ShutdownRequestPending = true;
	SetLatch(MyLatch);
	errno = save_errno;
}
#endif

/*
 * Catch SIGTERM: it ends the loop (within a second).  outbox_vacuum.c
 * hands SIGTERM to die() during its VACUUM and restores this handler after.
 */
static void
publisher_catch_sigterm(void)
{
#if defined(SA_SIGINFO) && !defined(WIN32)
	struct sigaction act;

	memset(&act, 0, sizeof(act));
	act.sa_sigaction = handle_sigterm;
	sigemptyset(&act.sa_mask);
	act.sa_flags = SA_SIGINFO | SA_RESTART;
	if (sigaction(SIGTERM, &act, NULL) == 0)
		return;
#endif
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
}

/*
 * The loop ended on SIGTERM.  Exit code 0 would unregister the worker for
 * good (the postmaster never starts it again, whatever bgw_restart_time
 * says), so the worker always exits with 1: the postmaster starts it again
 * after PUBLISHER_RESTART_SECS, except during a shutdown, when it starts no
 * worker.  The postmaster sends SIGTERM only to shut down; any other sender
 * (pg_terminate_backend(), kill) gets a LOG line saying the worker comes
 * back.
 */
static void
exit_on_sigterm(void)
{
	pid_t		sender = (pid_t) sigterm_sender;

	if (sender == 0)
		ereport(LOG,
				(errmsg("para_sync publisher: terminated; the postmaster starts it again in %d s unless the server is shutting down",
						PUBLISHER_RESTART_SECS),
				 errdetail("Envelopes committed meanwhile stay in para_sync.outbox and are published then.")));
	else if (sender != PostmasterPid)
		ereport(LOG,
				(errmsg("para_sync publisher: terminated by process %d; the postmaster starts it again in %d s",
						(int) sender, PUBLISHER_RESTART_SECS),
				 errdetail("Envelopes committed meanwhile stay in para_sync.outbox and are published then."),
				 errhint("pg_terminate_backend() restarts the publisher; to stop it, remove para_sync from shared_preload_libraries.")));
	proc_exit(1);
}

/* At exit, whatever the cause: close the NATS connection. */
static void
worker_exit(int code, Datum arg)
{
	publisher_nats_disconnect();
}

/* ---- setup, reload and the entry point */

static char *startup_database = NULL;	/* para_sync.database at start */
static char *nats_fingerprint = NULL;	/* the NATS settings at the last (re)load */

/*
 * SIGHUP (the loop calls this when ConfigReloadPending): re-read settings;
 * reconnect when a NATS setting changed, restart when para_sync.database did.
 */
void
publisher_reload_settings(void)
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
	fp = publisher_nats_settings_fingerprint();
	if (strcmp(fp, nats_fingerprint) != 0)
	{
		char		safe[512];

		publisher_nats_strip_credentials(psync_nats_url, safe, sizeof(safe));
		ereport(LOG,
				(errmsg("para_sync publisher: NATS settings changed; reconnecting to %s", safe)));
		publisher_nats_disconnect();
		publisher_forget_problem();
	}
	pfree(nats_fingerprint);
	nats_fingerprint = MemoryContextStrdup(TopMemoryContext, fp);
	pfree(fp);
}

static void
worker_setup(const char *database)
{
	/* a worker that fails to connect (no such database) never shows as running */
	BackgroundWorkerInitializeConnection(database, NULL, 0);
	publisher_status_register_worker();
	publisher_wake_set_database(MyDatabaseId);
	pgstat_report_appname("para_sync publisher");
	/* our deletes need not wait for the disk: a lost one is only a resend */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/* a SERIALIZABLE default would make our outbox reads conflict with writers */
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);
	before_shmem_exit(worker_exit, (Datum) 0);

	publisher_loop_init();
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		nats_fingerprint = publisher_nats_settings_fingerprint();
		MemoryContextSwitchTo(old);
	}
	publisher_status_set_detail("");
	ereport(LOG, (errmsg("para_sync publisher started on database \"%s\"", database)));
}

void
para_sync_worker_main(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	publisher_catch_sigterm();
	BackgroundWorkerUnblockSignals();
	am_publisher = true;

	startup_database = MemoryContextStrdup(TopMemoryContext, psync_database);
	worker_setup(startup_database);
	publisher_loop();
	exit_on_sigterm();
}
