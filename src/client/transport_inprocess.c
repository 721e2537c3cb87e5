/*
 * transport_inprocess.c — the in-process transport (a keyed emitter).
 *
 * The C twin of the seed's InProcessTransport: no bus, no serialization;
 * publish() is a synchronous call of every current subscriber of the key
 * (and of its "<table>:*" pattern) on the publishing thread.  All the
 * contract lives in the transport core; this backend only publishes.
 */
#include "transport_internal.h"

#include <stdlib.h>

static psync_status
inprocess_publish(psync_transport *t, const psync_envelope *env)
{
	psync_event event = {
		.kind = PSYNC_EVENT_ENVELOPE,
		.envelope = env,
		.key = env->key,
		.key_len = env->key_len,
	};

	transport_deliver_key_and_pattern(t, &event);
	return PSYNC_OK;
}

static psync_status
inprocess_publish_raw(psync_transport *t, const char *key, size_t key_len,
					  const void *bytes, size_t len)
{
	psync_envelope env;
	psync_event event = {.key = key, .key_len = key_len};

	event.decode_error = psync_envelope_decode(bytes, len, &env);
	if (event.decode_error == PSYNC_DECODE_OK)
	{
		event.kind = PSYNC_EVENT_ENVELOPE;
		event.envelope = &env;
	}
	else
		event.kind = PSYNC_EVENT_MALFORMED;
	transport_deliver_key_and_pattern(t, &event);
	return PSYNC_OK;
}

static const transport_ops inprocess_ops = {
	.attach = NULL,
	.detach = NULL,
	.publish = inprocess_publish,
	.publish_raw = inprocess_publish_raw,
	.destroy = NULL,
};

psync_status
psync_inprocess_transport_new(psync_transport **out)
{
	psync_transport *t;
	psync_status st;

	if (out == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	*out = NULL;
	if ((t = malloc(sizeof(*t))) == NULL)
		return PSYNC_ERR_NO_MEMORY;
	if ((st = transport_init(t, &inprocess_ops, NULL)) != PSYNC_OK)
	{
		free(t);
		return st;
	}
	*out = t;
	return PSYNC_OK;
}
