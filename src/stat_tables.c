/*
 * stat_tables.c — the publisher's per-table statistics, behind the
 * para_sync.stat_tables view (docs/publisher.md, "Per-table statistics").
 *
 * Counted by the publisher only, never by the writers: once a batch is
 * done (NATS confirmed it and its rows left the outbox), the worker adds
 * each sync name's envelopes of the batch to that name's entry in a
 * fixed-size shared hash keyed by (database, sync name), the way
 * pg_stat_statements keeps its entries.  The sync name is what every key
 * starts with (docs/protocol.md, "Objects and keys"), so the worker needs no look-up
 * to count; the view joins the entries to the registry for the table.
 * One hash look-up per sync name and batch: a batch is in key order, so a
 * table's envelopes come in one run (two after a wrap-around).
 *
 * The hash holds para_sync.stat_max_tables names; once it is full, a name
 * without an entry is counted in its database's overflow entry (the view's
 * row with no sync name), so the totals stay right.  para_sync.stat_reset()
 * removes the current database's entries.  Nothing is written to disk: the
 * statistics start from zero when the server starts (also after a crash),
 * not when only the worker restarts.
 */
#include "para_sync.h"
#include "publisher.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(para_sync_publisher_table_stats);
PG_FUNCTION_INFO_V1(para_sync_stat_reset);

/* overflow entries: one per database that ever filled the hash */
#define STAT_OVERFLOW_ENTRIES 8

/* An entry's key: the database and the sync name ("" for the overflow). */
typedef struct StatKey
{
	Oid			dbid;
	char		sync_name[NAMEDATALEN]; /* zero-padded: hashed as bytes */
} StatKey;

typedef struct StatCounts
{
	int64		captured;		/* envelopes taken out of the outbox */
	int64		published;		/* of them, confirmed by NATS */
	int64		refetches;		/* of published, sent as op refetch */
	int64		skipped;		/* too large even as op refetch: not sent */
	int64		bytes;			/* bytes of published envelopes, as sent */
	TimestampTz last_change_at; /* latest queued_at counted */
	TimestampTz last_publish_at;	/* end of the last batch counted */
	int64		last_lag_us;	/* largest lag in that batch */
	int64		total_lag_us;	/* sum of every published envelope's lag */
} StatCounts;

typedef struct StatEntry
{
	StatKey		key;
	slock_t		mutex;			/* protects what follows */
	TimestampTz stats_since;	/* entry made (first count or after a reset) */
	StatCounts	c;
} StatEntry;

static LWLock *stat_lock = NULL;	/* the hash's shape; entries' own mutex */
static HTAB *stat_hash = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static long
stat_hash_size(void)
{
	return (long) psync_stat_max_tables + STAT_OVERFLOW_ENTRIES;
}

static void
stat_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(hash_estimate_size(stat_hash_size(), sizeof(StatEntry)));
	RequestNamedLWLockTranche("para_sync stat_tables", 1);
}

static void
stat_shmem_startup(void)
{
	HASHCTL		info;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	stat_lock = &(GetNamedLWLockTranche("para_sync stat_tables"))->lock;
	info.keysize = sizeof(StatKey);
	info.entrysize = sizeof(StatEntry);
	stat_hash = ShmemInitHash("para_sync stat_tables", stat_hash_size(),
							  stat_hash_size(), &info, HASH_ELEM | HASH_BLOBS);
	LWLockRelease(AddinShmemInitLock);
}

/* Called from _PG_init (publisher_init()). */
void
stat_tables_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = stat_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = stat_shmem_startup;
}

static void
make_key(StatKey *key, Oid dbid, const char *name, int len)
{
	memset(key, 0, sizeof(*key));
	key->dbid = dbid;
	memcpy(key->sync_name, name, Min(len, NAMEDATALEN - 1));
}

/*
 * The entry of key, made when missing (the overflow entry once the hash
 * holds stat_max_tables names); NULL only when even that cannot be made.
 * Returns with stat_lock held (shared or exclusive).
 */
static StatEntry *
find_or_make_entry(const StatKey *key, TimestampTz now)
{
	StatEntry  *e;
	StatKey		overflow;
	bool		found;

	LWLockAcquire(stat_lock, LW_SHARED);
	e = hash_search(stat_hash, key, HASH_FIND, NULL);
	if (e != NULL)
		return e;
	LWLockRelease(stat_lock);
	LWLockAcquire(stat_lock, LW_EXCLUSIVE);
	if (hash_get_num_entries(stat_hash) >= psync_stat_max_tables &&
		hash_search(stat_hash, key, HASH_FIND, NULL) == NULL)
	{
		make_key(&overflow, key->dbid, "", 0);
		key = &overflow;
	}
	e = hash_search(stat_hash, key, HASH_ENTER_NULL, &found);
	if (e != NULL && !found)
	{
		SpinLockInit(&e->mutex);
		e->stats_since = now;
		memset(&e->c, 0, sizeof(e->c));
	}
	return e;
}

/* Add one sync name's counts of a batch to its entry. */
static void
add_counts(const char *name, int len, const StatCounts *add, TimestampTz now)
{
	StatKey		key;
	StatEntry  *e;

	make_key(&key, MyDatabaseId, name, len);
	e = find_or_make_entry(&key, now);
	if (e != NULL)
	{
		SpinLockAcquire(&e->mutex);
		e->c.captured += add->captured;
		e->c.published += add->published;
		e->c.refetches += add->refetches;
		e->c.skipped += add->skipped;
		e->c.bytes += add->bytes;
		e->c.last_change_at = Max(e->c.last_change_at, add->last_change_at);
		if (add->published > 0)
		{
			/* a batch that wrapped around may bring a name in two runs */
			e->c.last_lag_us = e->c.last_publish_at == now ?
				Max(e->c.last_lag_us, add->last_lag_us) : add->last_lag_us;
			e->c.last_publish_at = now;
			e->c.total_lag_us += add->total_lag_us;
		}
		SpinLockRelease(&e->mutex);
	}
	LWLockRelease(stat_lock);
}

/* The sync name a key starts with: up to its first ':'. */
static int
sync_name_len(const PsyncOutMsg *m)
{
	const char *colon = memchr(m->key, ':', m->key_len);

	return colon != NULL ? colon - m->key : m->key_len;
}

/*
 * The worker finished a batch of n envelopes (msgs as sent: after
 * publisher_batch_shrink()): count them per sync name.  A skipped envelope
 * counts as captured only; a published one's lag is from its queued_at (the
 * start of the transaction that wrote it) to now.
 */
void
stat_tables_count_batch(const PsyncOutMsg *msgs, int n)
{
	TimestampTz now;
	StatCounts	run;
	const char *name;
	int			name_len;

	if (stat_hash == NULL || n <= 0)
		return;
	now = GetCurrentTimestamp();
	memset(&run, 0, sizeof(run));
	name = msgs[0].key;
	name_len = sync_name_len(&msgs[0]);
	for (int i = 0; i < n; i++)
	{
		const PsyncOutMsg *m = &msgs[i];

		/* the run of one sync name goes on while the key starts with "<name>:" */
		if (m->key_len <= name_len || m->key[name_len] != ':' ||
			memcmp(m->key, name, name_len) != 0)
		{
			if (run.captured > 0)	/* (not before a first key without ':') */
				add_counts(name, name_len, &run, now);
			memset(&run, 0, sizeof(run));
			name = m->key;
			name_len = sync_name_len(m);
		}
		run.captured++;
		run.last_change_at = Max(run.last_change_at, m->queued_at);
		if (m->skip)
		{
			run.skipped++;
			continue;
		}
		run.published++;
		run.refetches += m->refetch ? 1 : 0;
		run.bytes += m->len;
		run.last_lag_us = Max(run.last_lag_us, now - m->queued_at);
		run.total_lag_us += Max(now - m->queued_at, 0);
	}
	add_counts(name, name_len, &run, now);
}

static Datum
interval_from_us(int64 us)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->time = us;
	return IntervalPGetDatum(iv);
}

#define STAT_COLS 11

/* One row per entry of the current database. */
Datum
para_sync_publisher_table_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS seq;
	StatEntry  *e;

	InitMaterializedSRF(fcinfo, 0);
	if (rsinfo->setDesc->natts != STAT_COLS)
		elog(ERROR, "para_sync.publisher_table_stats() must return %d columns", STAT_COLS);
	if (stat_hash == NULL)
		return (Datum) 0;		/* not preloaded: nothing is published */

	LWLockAcquire(stat_lock, LW_SHARED);
	hash_seq_init(&seq, stat_hash);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		Datum		values[STAT_COLS];
		bool		nulls[STAT_COLS];
		StatCounts	c;
		TimestampTz since;
		int			i = 0;

		if (e->key.dbid != MyDatabaseId)
			continue;
		SpinLockAcquire(&e->mutex);
		c = e->c;
		since = e->stats_since;
		SpinLockRelease(&e->mutex);

		memset(nulls, 0, sizeof(nulls));
		values[i] = CStringGetTextDatum(e->key.sync_name);
		nulls[i++] = e->key.sync_name[0] == '\0';
		values[i++] = Int64GetDatum(c.captured);
		values[i++] = Int64GetDatum(c.published);
		values[i++] = Int64GetDatum(c.refetches);
		values[i++] = Int64GetDatum(c.skipped);
		values[i++] = Int64GetDatum(c.bytes);
		values[i] = TimestampTzGetDatum(c.last_change_at);
		nulls[i++] = c.last_change_at == 0;
		values[i] = TimestampTzGetDatum(c.last_publish_at);
		nulls[i++] = c.last_publish_at == 0;
		values[i] = interval_from_us(c.last_lag_us);
		nulls[i++] = c.published == 0;
		values[i++] = interval_from_us(c.total_lag_us);
		values[i++] = TimestampTzGetDatum(since);
		Assert(i == STAT_COLS);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(stat_lock);
	return (Datum) 0;
}

/*
 * Remove the current database's entries, like pg_stat_reset(): only who
 * may execute it (superusers, unless granted).  Every synced table shows
 * zeros again; an entry comes back with the next batch that counts it.
 */
Datum
para_sync_stat_reset(PG_FUNCTION_ARGS)
{
	HASH_SEQ_STATUS seq;
	StatEntry  *e;

	if (stat_hash == NULL)
		PG_RETURN_VOID();
	LWLockAcquire(stat_lock, LW_EXCLUSIVE);
	hash_seq_init(&seq, stat_hash);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (e->key.dbid == MyDatabaseId)
			hash_search(stat_hash, &e->key, HASH_REMOVE, NULL);
	}
	LWLockRelease(stat_lock);
	PG_RETURN_VOID();
}
