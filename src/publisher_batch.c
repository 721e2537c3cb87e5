/*
 * publisher_batch.c — the publisher's batch: reading it, the read-ahead,
 * and the shrink to the NATS server's max_payload.
 *
 * A Batch (publisher.h) is the envelopes one iteration of the loop
 * (publisher.c) reads from the outbox, in the loop's short transaction
 * (publisher_begin_work()), up to para_sync.batch_size / batch_bytes, then
 * makes durable (WAL flushed up to its writers' commits).  While NATS
 * confirms it, the read-ahead reads the next one from after its last
 * (key, sequence), into the other of two batch contexts; it is the next
 * iteration's batch, or dropped.  Before a batch is sent, every envelope
 * larger than the server's max_payload (plus what the JetStream headers
 * add, publisher_nats_overhead()) is replaced by an op refetch envelope
 * without its value, or, when even that is too large, marked to be skipped
 * and removed with the batch.
 */
#include "para_sync.h"
#include "publisher.h"

#include "para_sync/envelope.h"

#include "access/detoast.h"
#include "access/xlog.h"
#include "utils/memutils.h"

/*
 * The next batch, read while NATS confirmed the previous one (read-ahead):
 * the rows after the previous batch's last (key, sequence).  It is
 * published only by the next iteration, and dropped by anything but a
 * successful iteration.  Two batch contexts take turns.
 */
static MemoryContext batch_cxt[2] = {NULL, NULL};
static Batch ahead;
static bool have_ahead = false;

/*
 * Copy one outbox row into the batch, key (as text, NUL-terminated),
 * envelope and scope in one allocation; refuse it once the byte cap is hit.
 */
static bool
take_row(const OutboxRow *row, void *arg)
{
	Batch	   *b = arg;
	PsyncOutMsg *m = &b->msgs[b->n];
	int			key_len = VARSIZE_ANY_EXHDR(row->key);
	int64		env_len = toast_raw_datum_size(row->envelope) - VARHDRSZ;
	int			scope_len = row->scope ? VARSIZE_ANY_EXHDR(row->scope) : 0;
	struct varlena *env = (struct varlena *) DatumGetPointer(row->envelope);
	char	   *mem;

	if ((b->n > 0 || !b->cap_first) && b->bytes + env_len > b->byte_cap)
	{
		b->capped = true;
		return false;
	}
	if (VARATT_IS_EXTENDED(env))
		env = pg_detoast_datum_packed(env);
	mem = MemoryContextAlloc(b->cxt, VARHDRSZ + key_len + 1 + env_len + scope_len + 1);
	SET_VARSIZE(mem, VARHDRSZ + key_len);
	memcpy(VARDATA(mem), VARDATA_ANY(row->key), key_len);
	VARDATA(mem)[key_len] = '\0';
	memcpy(VARDATA(mem) + key_len + 1, VARDATA_ANY(env), env_len);
	if ((Pointer) env != DatumGetPointer(row->envelope))
		pfree(env);
	b->keys[b->n] = (text *) mem;
	b->tids[b->n] = row->tid;
	b->commit_upto = Max(b->commit_upto, row->commit_lsn);
	b->wrapped |= row->wrapped;
	m->key = VARDATA(mem);
	m->key_len = key_len;
	m->seq = row->seq;
	m->txid = row->txid;
	m->data = VARDATA(mem) + key_len + 1;
	m->len = env_len;
	m->by_table = row->subject_layout == PSYNC_LAYOUT_TABLE;
	/* the scope (NUL-terminated) after the envelope */
	m->scope = NULL;
	m->scope_len = 0;
	if (row->scope != NULL)
	{
		char	   *scope = VARDATA(mem) + key_len + 1 + env_len;

		memcpy(scope, VARDATA_ANY(row->scope), scope_len);
		scope[scope_len] = '\0';
		m->scope = scope;
		m->scope_len = scope_len;
	}
	m->skip = false;
	m->refetch = false;
	m->queued_at = row->queued_at;
	b->bytes += m->len;
	b->n++;
	return true;
}

/*
 * Make the commits of the batch's rows durable, whatever synchronous_commit
 * they ran with: flush the WAL up to the latest of their commit LSNs (a
 * synchronous commit was flushed before it became visible; flushing only
 * that far, not to the insert position, spares an fsync of the publisher's
 * own asynchronous commits when the writers flush theirs anyway).  Returns
 * a WAL position at or after every commit record the batch depends on, for
 * the standby slots to have flushed.
 */
static XLogRecPtr
flush_wal(const Batch *b)
{
	if (!XLogRecPtrIsInvalid(b->commit_upto))
		XLogFlush(b->commit_upto);
	return Max(b->commit_upto, GetFlushRecPtr(NULL));
}

/*
 * Read a batch into cxt (reset first) in a short transaction: from
 * (key, seq) on, wrapping around with wrap, up to byte_cap bytes (the first
 * envelope may exceed it with cap_first).  false: no extension.
 */
static bool
read_batch(Batch *b, MemoryContext cxt, const char *key, int64 seq, bool wrap,
		   int64 byte_cap, bool cap_first)
{
	MemoryContextReset(cxt);
	memset(b, 0, sizeof(*b));
	b->whole = wrap;
	b->cxt = cxt;
	b->cap = psync_batch_size;
	b->byte_cap = byte_cap;
	b->cap_first = cap_first;
	b->msgs = MemoryContextAlloc(cxt, sizeof(PsyncOutMsg) * b->cap);
	b->keys = MemoryContextAlloc(cxt, sizeof(text *) * b->cap);
	b->tids = MemoryContextAlloc(cxt, sizeof(ItemPointerData) * b->cap);
	if (!publisher_begin_work())
		return false;
	outbox_read(key, seq, wrap, b->cap, take_row, b);
	publisher_end_work();
	/* publish only what is durable, whatever synchronous_commit was */
	if (b->n > 0)
		b->wal_upto = flush_wal(b);
	return true;
}

/*
 * Read the next batch from the position after the last one removed
 * (after_key), or take the read-ahead batch.  false: no extension.
 */
bool
publisher_batch_read(Batch *b, const char *after_key)
{
	if (have_ahead)
	{
		*b = ahead;
		have_ahead = false;
		return true;
	}
	return read_batch(b, batch_cxt[0], after_key, 0, true,
					  (int64) psync_batch_bytes * 1024, true);
}

/* Was b ended by para_sync.batch_size or the byte cap (rows may be left)? */
static bool
batch_full(const Batch *b)
{
	return b->n >= b->cap || b->capped;
}

/*
 * Did b take every envelope committed when it was read?  Only a read that
 * could wrap around the key space (not a read-ahead) and was not full (so
 * no read-ahead followed it either).
 */
bool
publisher_batch_took_all(const Batch *b)
{
	return b->whole && !batch_full(b);
}

/*
 * Read-ahead, while NATS confirms b: the rows after b's last (key,
 * sequence), without wrapping around, into the other batch context; not
 * when b itself wrapped around.  Both
 * batches together stay within para_sync.batch_bytes.  Nothing of it goes
 * out before b is confirmed and removed.
 */
void
publisher_batch_read_ahead(Batch *b)
{
	PsyncOutMsg *last = &b->msgs[b->n - 1];
	int64		left = (int64) psync_batch_bytes * 1024 - b->bytes;

	have_ahead = false;
	/* after a wrap-around, the rows after b's last are b's first ones */
	if (left <= 0 || b->wrapped)
		return;
	/*
	 * After a batch that was not full, the next iteration's read finds the
	 * later rows, without a transaction per batch spent here on finding
	 * nothing (live traffic: one or two rows per batch).
	 */
	if (!batch_full(b))
		return;
	if (read_batch(&ahead, batch_cxt[b->cxt == batch_cxt[0] ? 1 : 0],
				   last->key, last->seq, false, left, false) &&
		ahead.n > 0)
		have_ahead = true;
}

void
publisher_batch_drop_ahead(void)
{
	have_ahead = false;
}

/* The read-ahead batch, or NULL when there is none. */
Batch *
publisher_batch_ahead(void)
{
	return have_ahead ? &ahead : NULL;
}

/* The two batch contexts, in the worker's TopMemoryContext (worker_setup()). */
void
publisher_batch_init(void)
{
	for (int i = 0; i < lengthof(batch_cxt); i++)
		batch_cxt[i] = AllocSetContextCreate(TopMemoryContext, "para_sync publisher batch",
											 0, 1024 * 1024, 8 * 1024 * 1024);
}

/*
 * An envelope beyond the server's max_payload goes out as op refetch,
 * without its value (docs/protocol.md, "Delivery"); subscribers fetch the
 * value by snapshot().  One still too large (a tiny max_payload) is skipped,
 * reported, and removed with the batch, so that it never blocks the
 * envelopes behind it.
 */
void
publisher_batch_shrink(Batch *b)
{
	int64		max_payload = publisher_nats_max_payload();

	if (max_payload <= 0)
		return;
	for (int i = 0; i < b->n; i++)
	{
		PsyncOutMsg *m = &b->msgs[i];
		int64		overhead = publisher_nats_overhead(m->key_len);
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
		/* the stand-in keeps the scope its change was captured under */
		refetch.scope = m->scope;
		refetch.scope_len = m->scope_len;
		initStringInfo(&out);
		if (psync_envelope_encode(&refetch, mp_sink_stringinfo, &out) != 0)
			elog(ERROR, "para_sync publisher: could not encode a refetch envelope");
		m->data = out.data;
		m->len = out.len;
		if (m->len + overhead <= max_payload)
		{
			m->refetch = true;
			b->refetched++;
			continue;
		}
		m->skip = true;
		b->skipped++;
		ereport(WARNING,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("para_sync publisher: skipped the envelope of key \"%s\" sequence " INT64_FORMAT ": even as op refetch it is larger than the NATS server's max_payload (" INT64_FORMAT " bytes)",
						m->key, m->seq, max_payload),
				 errdetail("Subscribers see a gap in this key's sequences and can read the row with para_sync.snapshot()."),
				 errhint("Raise max_payload of the NATS server.")));
		publisher_status_set_error(psprintf("skipped key \"%s\" sequence " INT64_FORMAT ": larger than max_payload even as op refetch",
								  m->key, m->seq));
	}
}
