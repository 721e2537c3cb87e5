/*
 * mp_sink.h — where the server's MessagePack bytes go: mp_sink_stringinfo()
 * appends them to a StringInfo.
 *
 * It is the write callback of msgpack-c's packer (row_encode.c's value
 * maps) and of the shared envelope encoder, psync_envelope_encode()
 * (src/common/envelope.c: capture_envelope.c's envelopes, publisher_batch.c's
 * refetch envelopes).  Reading MessagePack is src/common/mp_reader.h's.
 *
 * Static inline: no symbol is added to para_sync.so.  Server only (the
 * client has no StringInfo; libparasync's transport.c has its own buffer).
 */
#ifndef PARA_SYNC_MP_SINK_H
#define PARA_SYNC_MP_SINK_H

#include "postgres.h"

#include "lib/stringinfo.h"

/* msgpack_packer_write / psync_write_fn shape: append to the StringInfo data. */
static inline int
mp_sink_stringinfo(void *data, const char *bytes, size_t len)
{
	appendBinaryStringInfo((StringInfo) data, bytes, (int) len);
	return 0;
}

#endif							/* PARA_SYNC_MP_SINK_H */
