/*
 * handle.h — what replicas and collections (and the other handles) share as
 * handles: waiting until idle, and handing out their last error
 * (include/para_sync/client.h, psync_*_wait_idle and psync_*_last_error).
 */
#ifndef PSYNC_HANDLE_H
#define PSYNC_HANDLE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "para_sync/client.h"

/* Whether the handle still has work in flight; called with its lock held. */
typedef bool (*handle_busy_fn) (const void *handle);

/*
 * Wait, on cond under lock, until busy(handle) is false, at most
 * timeout_ms (< 0: forever; cond uses CLOCK_MONOTONIC).  PSYNC_OK,
 * PSYNC_ERR_TIMEOUT, or PSYNC_ERR_IN_CALLBACK at once from any libparasync
 * callback (which may hold the lock the work needs).
 */
psync_status handle_wait_idle(const void *handle, pthread_mutex_t *lock,
							  pthread_cond_t *cond, handle_busy_fn busy,
							  int timeout_ms);

/* Copy text, read under lock, as the *_last_error functions do. */
size_t		handle_last_error(pthread_mutex_t *lock, const char *text,
							  char *buf, size_t size);

#endif							/* PSYNC_HANDLE_H */
