/*
 * seq_cache.c — a shared-memory cache of each object's last sequence, so
 * that an UPDATE or DELETE of a synced row need not read the outbox and
 * counters indexes to number its change.
 *
 * An entry says: "(sub)transaction W (a full transaction id) appended
 * sequence S for key K, and that was the last append for K".  The capture
 * trigger numbering a change of K takes S + 1 from the entry only if the
 * row version its event replaced or deleted (the trigger's old tuple, whose
 * key is K) was created by W: its xmin, widened to a full id, equals W.
 * lifecycle.c, retiring every row of a table, goes by the version it
 * retires in the same way: one visible to it, read under a lock that keeps
 * the table's writers out.  Everything else misses and reads the indexes
 * (outbox_append.c).
 *
 * Why a hit is K's last sequence, so that S + 1 is neither reused nor
 * leaves a gap:
 *
 *  1. Every append goes through outbox_append_rows() (outbox_append.c;
 *     the capture's pending changes too, outbox_batch.c), which, after
 *     the outbox row and its primary-key entry are in, overwrites K's entry:
 *     with the appending (sub)transaction's id when the row version whose
 *     content the envelope carries was created by that same
 *     (sub)transaction, and otherwise by forgetting K.  Deletes, and the
 *     changes of lifecycle.c (TRUNCATE, DROP TABLE, unsync, re-tag) and
 *     key_upgrade.c (re-keying), always forget.  Eviction only forgets.
 *  2. Appends for K happen one after the other: writers of K in different
 *     transactions are ordered by the synced table's row lock or unique
 *     check (or, for lifecycle.c and key_upgrade.c, a table lock that keeps
 *     writers out), and each looks up only after the previous one
 *     committed, which is after that one wrote the entry.  Where two were
 *     not ordered, the outbox primary key (key, seq) fails the second with
 *     an error before it reaches the cache.  So K's entry, if present,
 *     describes the last append for K made by anyone: the entry would
 *     otherwise have been overwritten or forgotten since.
 *  3. That append may have been rolled back (a rolled-back writer, a
 *     savepoint rolled back).  It was not if W did not abort, and the hit
 *     shows that: the trigger's old tuple was created by W, and a trigger
 *     event's old tuple was visible to the statement that replaced it (as
 *     the version lifecycle.c retires is to its scan), so
 *     W committed, or W is this transaction or one of its subtransactions
 *     still alive (a statement inside a subtransaction that rolls back
 *     loses its trigger events with it).  A subtransaction that appended
 *     and rolled back leaves an entry naming its own id, which no such
 *     tuple carries: a miss.  Because W is the (sub)transaction that
 *     appended (point 1), its survival is the append's.
 *  4. Nothing else changes K's last sequence: the publisher (consume(),
 *     ack()) moves it from the outbox to para_sync.counters unchanged.  An
 *     outbox emptied by hand without moving the counters loses sequences
 *     with or without the cache.
 *
 * So a hit does not depend on the old tuple being the row's latest version:
 * when a user trigger or a foreign-key action changed the row again before
 * the capture event fired (capture.c, nested writes), the nested change's
 * own append overwrote the entry, and the outer event hits only if that
 * entry names the creator of its old tuple, which point 3 covers.  Nor
 * does it depend on the snapshot (REPEATABLE READ, SERIALIZABLE: a hit
 * reads no table, so it takes no predicate lock either).
 *
 * Identity of an entry: the key text and a tag of the database, the
 * outbox's oid and the counters' relfilenode.  Another database and a
 * re-created extension always miss.  A store changed by hand (rows of the
 * outbox or counters deleted or edited) is outside this argument, as it is
 * outside the look-up's; of those, TRUNCATE of the counters is at least
 * noticed (new relfilenode) by every backend once it has processed the
 * invalidation, and the check setting reports any disagreement.
 * Transaction ids are full 64-bit ids, so wraparound and epochs cannot
 * alias: a live unfrozen version's xmin lies within 2^31 of this
 * transaction's id, which makes its widening exact; a frozen version never
 * matches.  Shared memory starts empty at server start and after a crash
 * restart; a restored dump writes new row versions (new xmins).
 *
 * Without shared_preload_libraries, or with para_sync.sequence_cache_size
 * = 0, there is no cache: every change looks up.  Setting
 * para_sync.sequence_cache_check compares every hit with the look-up.
 *
 * Layout: buckets of SEQ_CACHE_WAYS entries, each bucket under its own
 * spinlock held for a few dozen instructions; keys longer than
 * SEQ_CACHE_KEY_MAX bytes are not cached.
 */
#include "para_sync.h"

#include "access/htup_details.h"
#include "common/hashfn.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/guc.h"

#define SEQ_CACHE_WAYS 8
#define SEQ_CACHE_KEY_MAX 52

typedef struct SeqCacheEntry
{
	uint64		writer;			/* full xid */
	int64		seq;
	SeqCacheTag tag;
	uint16		key_len;
	char		key[SEQ_CACHE_KEY_MAX];
} SeqCacheEntry;

/*
 * hashes[i] is the 32-bit hash of ways[i]'s key (never 0), or 0 when the way
 * is empty: a probe reads one cache line of hashes and then only the entry
 * whose hash matches.
 */
typedef struct SeqCacheBucket
{
	slock_t		mutex;
	uint8		victim;			/* next way to evict */
	uint32		hashes[SEQ_CACHE_WAYS];
	SeqCacheEntry ways[SEQ_CACHE_WAYS];
} SeqCacheBucket;

static uint32 seq_cache_nbuckets = 0;
static SeqCacheBucket *seq_cache = NULL;

/* this backend's look-ups, for para_sync.sequence_cache_counts() */
static int64 seq_cache_hits = 0;
static int64 seq_cache_misses = 0;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static uint32
seq_cache_buckets(void)
{
	return (uint32) (psync_seq_cache_size / SEQ_CACHE_WAYS);
}

static void
seq_cache_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	if (seq_cache_buckets() > 0)
		RequestAddinShmemSpace(mul_size(seq_cache_buckets(), sizeof(SeqCacheBucket)));
}

static void
seq_cache_shmem_startup(void)
{
	bool		found;
	uint32		n = seq_cache_buckets();

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	if (n == 0)
		return;
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	seq_cache = ShmemInitStruct("para_sync sequence cache",
								mul_size(n, sizeof(SeqCacheBucket)), &found);
	if (!found)
	{
		memset(seq_cache, 0, mul_size(n, sizeof(SeqCacheBucket)));
		for (uint32 i = 0; i < n; i++)
			SpinLockInit(&seq_cache[i].mutex);
	}
	seq_cache_nbuckets = n;
	LWLockRelease(AddinShmemInitLock);
}

/* Called from _PG_init. */
void
seq_cache_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = seq_cache_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = seq_cache_shmem_startup;
}

static inline bool
entry_matches(const SeqCacheEntry *e, const SeqCacheTag *tag,
			  const char *key, int key_len)
{
	return e->key_len == key_len &&
		e->tag.db == tag->db && e->tag.outbox == tag->outbox &&
		e->tag.counters_node == tag->counters_node &&
		memcmp(e->key, key, key_len) == 0;
}

/* key's hash (never 0, which marks an empty way) */
static uint32
key_hash(const SeqCacheTag *tag, const char *key, int key_len)
{
	uint32		h = hash_bytes((const unsigned char *) key, key_len);

	h = hash_combine(h, murmurhash32(tag->db));
	return h != 0 ? h : 1;
}

/* The way holding key in b, or -1; called with b->mutex held. */
static int
find_way(SeqCacheBucket *b, uint32 h, const SeqCacheTag *tag,
		 const char *key, int key_len)
{
	for (int i = 0; i < SEQ_CACHE_WAYS; i++)
		if (b->hashes[i] == h && entry_matches(&b->ways[i], tag, key, key_len))
			return i;
	return -1;
}

/*
 * Start fetching key's bucket into the CPU's cache.  A caller about to look
 * up or remember many keys (a statement's changes: outbox_batch.c,
 * outbox_append_rows()) asks for a key a few places ahead, so that the
 * buckets, spread over the whole cache, are read from memory in parallel
 * rather than one after the other.
 */
void
seq_cache_prefetch(const SeqCacheTag *tag, const char *key, int key_len)
{
	SeqCacheBucket *b;

	if (seq_cache == NULL || key_len > SEQ_CACHE_KEY_MAX)
		return;
	b = &seq_cache[key_hash(tag, key, key_len) % seq_cache_nbuckets];
#if defined(__GNUC__)
	__builtin_prefetch(b, 1);
	__builtin_prefetch((char *) b + 64, 1);
	__builtin_prefetch((char *) b + 128, 1);
#endif
}

/*
 * If key's entry names writer, set *seq to the sequence it numbered and
 * return true.
 */
bool
seq_cache_lookup(const SeqCacheTag *tag, const char *key, int key_len,
				 FullTransactionId writer, int64 *seq)
{
	SeqCacheBucket *b;
	uint32		h;
	int			way;
	bool		hit = false;

	if (seq_cache == NULL || key_len > SEQ_CACHE_KEY_MAX ||
		!FullTransactionIdIsValid(writer))
	{
		seq_cache_misses++;
		return false;
	}
	h = key_hash(tag, key, key_len);
	b = &seq_cache[h % seq_cache_nbuckets];
	SpinLockAcquire(&b->mutex);
	way = find_way(b, h, tag, key, key_len);
	if (way >= 0 && b->ways[way].writer == U64FromFullTransactionId(writer))
	{
		*seq = b->ways[way].seq;
		hit = true;
	}
	SpinLockRelease(&b->mutex);
	if (hit)
		seq_cache_hits++;
	else
		seq_cache_misses++;
	return hit;
}

/*
 * Record that writer numbered its change of key seq.  An invalid writer
 * (no row version holds key, or none can vouch for it) forgets key's entry.
 * Must be called for every envelope appended (point 3 above).
 */
void
seq_cache_remember(const SeqCacheTag *tag, const char *key, int key_len,
				   FullTransactionId writer, int64 seq)
{
	SeqCacheBucket *b;
	uint32		h;
	int			way;
	bool		valid = FullTransactionIdIsValid(writer);

	if (seq_cache == NULL || key_len > SEQ_CACHE_KEY_MAX)
		return;					/* never cached, so nothing to forget */
	h = key_hash(tag, key, key_len);
	b = &seq_cache[h % seq_cache_nbuckets];
	SpinLockAcquire(&b->mutex);
	way = find_way(b, h, tag, key, key_len);
	if (!valid)
	{
		if (way >= 0)
			b->hashes[way] = 0;
	}
	else
	{
		SeqCacheEntry *e;

		for (int i = 0; i < SEQ_CACHE_WAYS && way < 0; i++)
			if (b->hashes[i] == 0)
				way = i;
		if (way < 0)
		{
			way = b->victim;
			b->victim = (b->victim + 1) % SEQ_CACHE_WAYS;
		}
		e = &b->ways[way];
		e->writer = U64FromFullTransactionId(writer);
		e->seq = seq;
		e->tag = *tag;
		e->key_len = (uint16) key_len;
		memcpy(e->key, key, key_len);
		b->hashes[way] = h;
	}
	SpinLockRelease(&b->mutex);
}

PG_FUNCTION_INFO_V1(para_sync_sequence_cache_counts);

/* (hits, misses) of this session's sequence look-ups. */
Datum
para_sync_sequence_cache_counts(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	values[0] = Int64GetDatum(seq_cache_hits);
	values[1] = Int64GetDatum(seq_cache_misses);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
