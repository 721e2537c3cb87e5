/*
 * handle.c — waiting until a handle is idle and copying out its last error,
 * written once for replicas and collections; see handle.h.
 */
#include "handle.h"

#include <errno.h>
#include <time.h>

#include "callback.h"
#include "client_error.h"

static void
deadline_after(struct timespec *ts, int timeout_ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += timeout_ms / 1000;
	ts->tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L)
	{
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

psync_status
handle_wait_idle(const void *handle, pthread_mutex_t *lock, pthread_cond_t *cond,
				 handle_busy_fn busy, int timeout_ms)
{
	struct timespec deadline = {0};
	psync_status st = PSYNC_OK;

	if (handle == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	/* a callback holds a handle's lock, maybe the one the work needs */
	if (callback_running(NULL))
		return PSYNC_ERR_IN_CALLBACK;
	if (timeout_ms >= 0)
		deadline_after(&deadline, timeout_ms);
	pthread_mutex_lock(lock);
	while (busy(handle) && st == PSYNC_OK)
	{
		if (timeout_ms < 0)
			pthread_cond_wait(cond, lock);
		else if (pthread_cond_timedwait(cond, lock, &deadline) == ETIMEDOUT)
			st = busy(handle) ? PSYNC_ERR_TIMEOUT : PSYNC_OK;
	}
	pthread_mutex_unlock(lock);
	return st;
}

size_t
handle_last_error(pthread_mutex_t *lock, const char *text, char *buf, size_t size)
{
	size_t		len;

	pthread_mutex_lock(lock);
	len = client_error_copy(text, buf, size);
	pthread_mutex_unlock(lock);
	return len;
}
