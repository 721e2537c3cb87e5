/*
 * status.c — names of libparasync's status codes and replica states.
 *
 * Owns the one place where codes become text, so every tool and log line
 * prints the same words (psync_status_text, psync_replica_status_name),
 * the thread-local error text (psync_last_error) and the thread-local
 * stack of running callbacks (callback.h).
 */
#include "para_sync/client.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "callback.h"
#include "client_error.h"

/* The libparasync callbacks running on this thread (callback.h). */
__attribute__((visibility("hidden"))) _Thread_local callback_frame *parasync_callback_frames = NULL;

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
	[PSYNC_ERR_IN_CALLBACK] = "not allowed from this callback",
	[PSYNC_ERR_LAYOUT] = "subject layout mismatch",
	[PSYNC_ERR_PERMISSION] = "subscription refused by the NATS server",
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

/* ---- error text (client_error.h) */

static _Thread_local char thread_error[PSYNC_ERROR_LEN];

void
client_error_thread(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(thread_error, sizeof(thread_error), fmt, ap);
	va_end(ap);
}

size_t
client_error_copy(const char *text, char *buf, size_t size)
{
	if (buf != NULL && size > 0)
		snprintf(buf, size, "%s", text);
	return strlen(text);
}

size_t
psync_last_error(char *buf, size_t size)
{
	return client_error_copy(thread_error, buf, size);
}
