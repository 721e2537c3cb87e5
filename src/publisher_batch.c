/*
 * publisher_batch.c — what the publisher does to a batch between reading
 * and sending it: the shrink to the NATS server's max_payload.
 *
 * A Batch (publisher.h) is the envelopes one iteration of the loop
 * (worker.c) read from the outbox.  Before it is sent, every envelope
 * larger than the server's max_payload (plus what the JetStream headers
 * add, publisher_nats_overhead()) is replaced by an op refetch envelope
 * without its value, or, when even that is too large, marked to be skipped
 * and removed with the batch.
 *
 * Reading a batch and the read-ahead are still in worker.c, where they
 * share the loop's transaction and position.
 */
#include "para_sync.h"
#include "publisher.h"

#include "para_sync/envelope.h"

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
		initStringInfo(&out);
		if (psync_envelope_encode(&refetch, msgpack_buffer_write, &out) != 0)
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
		status_set_error(psprintf("skipped key \"%s\" sequence " INT64_FORMAT ": larger than max_payload even as op refetch",
								  m->key, m->seq));
	}
}
