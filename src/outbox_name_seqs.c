/*
 * outbox_name_seqs.c — the last sequence of every key of a sync name, read
 * in one pass, for lifecycle.c to number the envelopes of every row of a
 * table (TRUNCATE, DROP TABLE, unsync_table(), a re-tag, ATTACH PARTITION).
 *
 * The per-row way (outbox_next_sequence()) costs a look-up of the outbox's
 * and the counters' primary key for every row the sequence cache does not
 * hold; a table's rows were then numbered at about half the speed of
 * writing their envelopes.  Here the keys of the name, exactly the texts in
 * ["name:", "name;"), are read in one forward scan of each index, and each
 * row's key is found by binary search in what they returned.
 *
 * What it reads is what outbox_last_sequence(key, latest = true) reads for
 * each key (SnapshotSelf, the outbox first, then the counters), but a
 * forward scan is not one moment: a publisher that commits the removal of a
 * key's rows while the scan is among them leaves it the key's lower rows
 * only (the per-key look-up scans backward, highest first).  The same
 * commit raised the key's counter to the highest row removed, and the
 * counters are scanned after the outbox, so a key's last sequence is the
 * higher of its two entries (the counter rule, outbox_append.c); each list
 * keeps a key's highest.  That answer holds for the whole retire:
 * lifecycle.c holds a lock that keeps every writer of the table out, a sync
 * name belongs to one table, and the publisher only moves a key's last
 * sequence from the outbox to the counters, unchanged.  The retire's own appends (one per key: a table's
 * keys are unique) are recorded as they are made.  The sequence cache
 * check setting compares every answer with the per-key look-up.
 *
 * Bounded by maintenance_work_mem and by the caller's count of keys: a name
 * with more keys than that gets NULL, and its rows are numbered one by one
 * as before.
 */
#include "para_sync.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

/* One key's last sequence. */
typedef struct NameSeq
{
	char	   *key;
	int			len;
	int64		seq;
} NameSeq;

/* Entries in index (byte) order, one per key. */
typedef struct NameSeqList
{
	NameSeq    *items;
	int			n;
	int			cap;
} NameSeqList;

struct OutboxNameSeqs
{
	MemoryContext cxt;
	NameSeqList outbox;
	NameSeqList counters;
	Size		budget;			/* bytes left */
	int64		keys_left;		/* keys that may still be read */
};

static int
name_seq_cmp(const void *a, const void *b)
{
	const NameSeq *x = a;
	const NameSeq *y = b;

	return key_cmp(x->key, x->len, y->key, y->len);
}

/* Record key's seq (the last one read for it wins); false: over budget. */
static bool
list_add(OutboxNameSeqs *m, NameSeqList *l, text *key, int64 seq)
{
	int			len = VARSIZE_ANY_EXHDR(key);
	NameSeq    *last = l->n > 0 ? &l->items[l->n - 1] : NULL;

	if (last && last->len == len && memcmp(last->key, VARDATA_ANY(key), len) == 0)
	{
		last->seq = Max(last->seq, seq);
		return true;
	}
	if (m->budget < sizeof(NameSeq) + len + 1 || m->keys_left <= 0)
		return false;
	m->budget -= sizeof(NameSeq) + len + 1;
	m->keys_left--;
	if (l->n == l->cap)
	{
		l->cap = l->cap ? l->cap * 2 : 1024;
		l->items = l->items ? repalloc_huge(l->items, sizeof(NameSeq) * l->cap)
			: palloc(sizeof(NameSeq) * l->cap);
	}
	l->items[l->n].key = pnstrdup(VARDATA_ANY(key), len);
	l->items[l->n].len = len;
	l->items[l->n].seq = seq;
	l->n++;
	return true;
}

/*
 * Every key of heap/index in the name's range (skeys: outbox_name_scankeys())
 * with its seq column (attno 2), visible to SnapshotSelf, into l.  In a
 * SERIALIZABLE transaction too no predicate lock is taken: SnapshotSelf is
 * not an MVCC snapshot.
 */
static bool
read_range(OutboxNameSeqs *m, NameSeqList *l, Oid heap_oid, Oid index_oid,
		   ScanKey skeys)
{
	Relation	heap = table_open(heap_oid, AccessShareLock);
	Relation	index = index_open(index_oid, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(heap, NULL);
	IndexScanDesc scan;
	bool		fits = true;

	scan = index_beginscan(heap, index, SnapshotSelf, 2, 0);
	index_rescan(scan, skeys, 2, NULL, 0);
	while (fits && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		text	   *key = DatumGetTextPP(slot_getattr(slot, 1, &isnull));
		int64		seq = DatumGetInt64(slot_getattr(slot, 2, &isnull));

		CHECK_FOR_INTERRUPTS();
		fits = list_add(m, l, key, seq);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	table_close(heap, NoLock);
	return fits;
}

/*
 * The last sequences of every key of sync_name, or NULL when there are more
 * than max_keys of them (outbox and counters entries counted apart) or they
 * do not fit in maintenance_work_mem.  Lives in the current memory context
 * until outbox_name_seqs_free().
 */
OutboxNameSeqs *
outbox_name_seqs_read(const char *sync_name, int64 max_keys)
{
	const OutboxRelations *rels;
	MemoryContext cxt;
	MemoryContext old;
	OutboxNameSeqs *m;
	ScanKeyData skeys[2];
	bool		fits;

	outbox_batch_flush(true);	/* this transaction's pending changes first */
	rels = outbox_relations();
	cxt = AllocSetContextCreate(CurrentMemoryContext, "para_sync name sequences",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	m = palloc0(sizeof(OutboxNameSeqs));
	outbox_name_scankeys(sync_name, skeys);

	m->cxt = cxt;
	m->budget = (Size) maintenance_work_mem * 1024;
	m->keys_left = max_keys;
	fits = read_range(m, &m->outbox, rels->outbox, rels->outbox_pkey, skeys) &&
		read_range(m, &m->counters, rels->counters, rels->counters_pkey, skeys);
	MemoryContextSwitchTo(old);
	if (!fits)
	{
		MemoryContextDelete(cxt);
		return NULL;
	}
	return m;
}

static NameSeq *
list_find(NameSeqList *l, const char *key, int len)
{
	NameSeq		probe = {(char *) key, len, 0};

	return l->n == 0 ? NULL : bsearch(&probe, l->items, l->n, sizeof(NameSeq), name_seq_cmp);
}

/*
 * The last sequence of key, a key of the name (0 if it has none), as
 * outbox_last_sequence(key, len, true) would return it now: the higher of
 * its outbox and counters entries (see the top of this file).
 */
int64
outbox_name_seqs_last(OutboxNameSeqs *m, const char *key, int len)
{
	NameSeq    *o = list_find(&m->outbox, key, len);
	NameSeq    *c = list_find(&m->counters, key, len);
	int64		seq = Max(o ? o->seq : 0, c ? c->seq : 0);

	outbox_check_last_sequence(key, len, seq, "one-pass read of the name's sequences");
	return seq;
}

/*
 * Key's envelope seq was appended: later answers for key say seq.  A key of
 * the name without an entry has none to update; a table holds each key
 * once, so it is not asked again.
 */
void
outbox_name_seqs_appended(OutboxNameSeqs *m, const char *key, int len, int64 seq)
{
	NameSeq    *o = list_find(&m->outbox, key, len);
	NameSeq    *c = list_find(&m->counters, key, len);

	if (o != NULL)
		o->seq = seq;
	if (c != NULL)
		c->seq = seq;
}

void
outbox_name_seqs_free(OutboxNameSeqs *m)
{
	if (m != NULL)
		MemoryContextDelete(m->cxt);
}
