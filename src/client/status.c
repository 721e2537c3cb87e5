/*
 * status.c — names of libparasync's status codes and replica states.
 *
 * Owns the one place where codes become text, so every tool and log line
 * prints the same words (psync_status_text, psync_replica_status_name).
 */
#include "para_sync/client.h"

static const char *const status_texts[] = {
	[PSYNC_OK] = "ok",
	[PSYNC_ERR_INVALID_ARGUMENT] = "invalid argument",
	[PSYNC_ERR_NO_MEMORY] = "out of memory",
	[PSYNC_ERR_MALFORMED] = "malformed envelope",
	[PSYNC_ERR_NATS] = "NATS error",
	[PSYNC_ERR_DATABASE] = "database error",
	[PSYNC_ERR_NOT_FOUND] = "not found",
	[PSYNC_ERR_CLOSED] = "closed",
	[PSYNC_ERR_TIMEOUT] = "timed out",
	[PSYNC_ERR_SYSTEM] = "system error",
};

static const char *const replica_status_names[] = {
	[PSYNC_REPLICA_OK] = "ok",
	[PSYNC_REPLICA_STALE] = "stale",
	[PSYNC_REPLICA_SKEW] = "skew",
	[PSYNC_REPLICA_REFETCHING] = "refetching",
};

#define LENGTH(a) (sizeof(a) / sizeof((a)[0]))

const char *
psync_status_text(psync_status status)
{
	if ((int) status < 0 || (size_t) status >= LENGTH(status_texts))
		return "unknown status";
	return status_texts[status];
}

const char *
psync_replica_status_name(psync_replica_status status)
{
	if ((int) status < 0 || (size_t) status >= LENGTH(replica_status_names))
		return "unknown";
	return replica_status_names[status];
}
