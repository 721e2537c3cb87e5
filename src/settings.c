/*
 * settings.c — every para_sync.* setting: its variable, its definition and
 * its description, in one place.  _PG_init (para_sync.c) calls
 * settings_init() first and, last, reserves the "para_sync." prefix.
 *
 * The publisher (publisher*.c: publisher.c, publisher_worker.c,
 *   publisher_batch.c, publisher_nats.c, publisher_standby.c,
 *   publisher_status.c):
 *   para_sync.database, nats_url, subject_prefix, batch_size, batch_bytes,
 *   standby_slots, jetstream_stream, nats_token, nats_user, nats_password,
 *   nats_credentials_file, tls_ca_file, tls_cert_file, tls_key_file,
 *   tls_required, connect_timeout, confirm_timeout, reconnect_wait,
 *   backoff_min, backoff_max, poll_interval, batch_delay
 * The outbox's vacuum (outbox_vacuum.c):
 *   para_sync.vacuum_threshold
 * The sequence store and its cache (outbox_append.c, seq_cache.c):
 *   para_sync.sequence_cache_check,
 *   para_sync.sequence_cache_size (only with shared_preload_libraries)
 * The per-table statistics (stat_tables.c):
 *   para_sync.stat_max_tables (only with shared_preload_libraries)
 *
 * A setting's value is used only in the files named with it; the secret
 * ones are kept out of the log by publisher_worker.c's redact_secrets().
 */
#include "para_sync.h"
#include "publisher.h"

#include "miscadmin.h"
#include "utils/guc.h"

/* ---- the publisher */

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
int			psync_batch_delay_us = 0;
char	   *psync_standby_slots = NULL;
int			psync_batch_bytes = 16384;

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

/* The publisher's connection, batching and timing settings. */
static void
define_publisher_settings(void)
{
	const int	secret = GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL;

	define_string("para_sync.database",
				  "Database the para_sync publisher connects to.",
				  &psync_database, "postgres", PGC_SIGHUP, 0);
	/* may carry user:password@: readable by superusers only, never logged */
	define_string("para_sync.nats_url",
				  "NATS server URL, or a comma-separated list of a cluster's URLs.",
				  &psync_nats_url, "nats://127.0.0.1:4222", PGC_SIGHUP,
				  GUC_SUPERUSER_ONLY);
	define_string("para_sync.subject_prefix",
				  "Envelopes go to the subject <subject_prefix>.<key> (or <subject_prefix>.<sync name>.<key>, see para_sync.set_subject_layout()).",
				  &psync_subject_prefix, "synced", PGC_SIGHUP, 0);
	DefineCustomIntVariable("para_sync.batch_size",
							"Largest number of envelopes published and confirmed as one batch.",
							NULL, &psync_batch_size, 5000, 1, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("para_sync.batch_bytes",
							"Largest total envelope size of one batch (at least one envelope).",
							NULL, &psync_batch_bytes, 16384, 64, INT_MAX / 1024,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomStringVariable("para_sync.standby_slots",
							   "Physical replication slots whose standbys must have flushed a batch's WAL before it is published.",
							   "Comma-separated slot names; empty publishes without waiting.",
							   &psync_standby_slots, "", PGC_SIGHUP, GUC_LIST_INPUT,
							   publisher_standby_check, NULL, NULL);
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
	/* microseconds, like commit_delay; at most 0.1 s keeps SIGTERM prompt */
	DefineCustomIntVariable("para_sync.batch_delay",
							"Pause, in microseconds, after a batch that took every committed envelope, so that more commits go into the next one.",
							"0 does not pause. Fewer, larger batches under sustained traffic, for up to this much latency.",
							&psync_batch_delay_us, 0, 0, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
}

/* ---- the outbox's vacuum (outbox_vacuum.c) */

int			psync_vacuum_threshold = 10000;

/* ---- the sequence store (outbox_append.c) and its cache (seq_cache.c) */

bool		psync_sequence_cache_check = false;
int			psync_seq_cache_size = 262144;	/* entries (GUC) */

/* ---- per-table statistics (stat_tables.c) */

int			psync_stat_max_tables = 1000;

/* Called from _PG_init, before any setting is read. */
void
settings_init(void)
{
	define_publisher_settings();
	DefineCustomIntVariable("para_sync.vacuum_threshold",
							"Rows the publisher removed from the outbox after which it vacuums the outbox once caught up.",
							"0 leaves the outbox to autovacuum alone.",
							&psync_vacuum_threshold, 10000, 0, INT_MAX,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("para_sync.sequence_cache_check",
							 "Checks every sequence cache hit against the outbox and counters.",
							 "For tests: a disagreement raises an error.",
							 &psync_sequence_cache_check, false,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("para_sync.sequence_cache_size",
								"Objects whose last sequence is kept in shared memory.",
								"Lets an UPDATE or DELETE of a synced row skip the sequence look-up; "
								"about 90 bytes each; 0 turns the cache off.",
								&psync_seq_cache_size, 262144, 0, 64 * 1024 * 1024,
								PGC_POSTMASTER, 0, NULL, NULL, NULL);
	/* a PGC_POSTMASTER setting defined after startup is FATAL (LOAD, CREATE EXTENSION) */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("para_sync.stat_max_tables",
								"Number of sync names para_sync.stat_tables keeps statistics for.",
								"Once full, other names are counted together in the row without a sync name.",
								&psync_stat_max_tables, 1000, 1, 1000000,
								PGC_POSTMASTER, 0, NULL, NULL, NULL);
}
