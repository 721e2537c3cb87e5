/*
 * seq_cache.c — a shared-memory cache of each object's last sequence, so
 * that an UPDATE or DELETE of a synced row need not read the outbox and
 * counters indexes to number its change.
 *
 * An entry says: "writer W (a full transaction id) numbered its change of
 * key K with sequence S, and the row version W created holds K".  The
 * capture trigger of a later UPDATE or DELETE of K trusts the entry only if
 * the row version it replaces was created by W (its xmin, widened to a full
 * id, equals W).  Why that proves S is K's last sequence:
 *
 *  1. The replaced version V is the latest version of the row (the executor
 *     updated or deleted it, after following any update chain), so its
 *     creator W committed, or W is this transaction or one of its
 *     subtransactions that was not rolled back: V would be dead otherwise.
 *     So W's outbox row S is durable, or visible to this transaction.
 *  2. While V is live and holds K, no other transaction can have written K:
 *     an update or delete of K's row would have replaced V; an insert of K,
 *     or an update moving another row to key K, fails on the primary key.
 *     Changes made with the capture trigger off make a new version (another
 *     xmin, so no match) or none (then they number nothing either).
 *  3. Every envelope appended for K, by any transaction, overwrites K's
 *     entry (with its own writer, or with "no writer" after a delete or
 *     when there is no row version to vouch for it) under the bucket lock;
 *     eviction only removes entries.  Writers of K are serialized by the
 *     row lock, so these writes happen in the order of the changes.  Hence
 *     if K's entry names W, W's change was the last one appended for K by
 *     anyone — including this transaction's own later changes, and any that
 *     rolled back (those overwrote the entry with their own writer, which no
 *     live version has: a miss, never a stale hit).
 *  4. Several writes of K in one transaction: each names the (sub)xact id
 *     of the version it created, which is also the (sub)xact that appended
 *     (sequence_store.c checks; otherwise the entry is forgotten), so a live
 *     version with that xmin proves the append was not rolled back.  A
 *     rolled-back subtransaction leaves an entry naming its own id, which
 *     no live version carries: a miss.
 *  5. Transaction ids are compared as 64-bit full ids, so wraparound and
 *     epochs cannot alias: an unfrozen live version's xmin lies within 2^31
 *     of this transaction's own id, which makes its widening exact; a
 *     frozen version never matches.
 *  6. Entries carry the database, the outbox's oid and the counters'
 *     relfilenode: another database, a re-created extension, or a reset of
 *     the store by hand (TRUNCATE counters) all miss.  The publisher moving
 *     a key's last sequence from the outbox to counters (ack) does not
 *     change it; nor does emptying the outbox once counters hold its last
 *     sequences.  (Emptying it without that loses sequences with or without
 *     the cache; the cache then keeps numbering upwards, which is safer.)
 *  7. Shared memory starts empty after a crash or restart; a restore writes
 *     new row versions (new xmins).
 *
 * A miss falls back to the index look-up, and the outbox primary key still
 * refuses any duplicate (key, seq).  Without shared_preload_libraries, or
 * with para_sync.sequence_cache_size = 0, there is no cache.
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

static int	seq_cache_size = 262144;	/* entries (GUC) */
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
	return (uint32) (seq_cache_size / SEQ_CACHE_WAYS);
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
	DefineCustomIntVariable("para_sync.sequence_cache_size",
							"Objects whose last sequence is kept in shared memory.",
							"Lets an UPDATE or DELETE of a synced row skip the sequence look-up; "
							"about 90 bytes each; 0 turns the cache off.",
							&seq_cache_size, 262144, 0, 64 * 1024 * 1024,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
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
