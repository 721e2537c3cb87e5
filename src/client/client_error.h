/*
 * client_error.h — error text kept by libparasync (see psync_last_error).
 *
 * Handles keep their own last error; failures that happen before a handle
 * exists (connecting) go to a thread-local buffer.  All texts are copied
 * out with client_error_copy, so callers never see a buffer that changes
 * under them.  Defined in status.c, with the other thread-local state.
 */
#ifndef PSYNC_CLIENT_ERROR_H
#define PSYNC_CLIENT_ERROR_H

#include <stddef.h>

#define PSYNC_ERROR_LEN 512

/* printf into the thread-local error of psync_last_error. */
void		client_error_thread(const char *fmt,...) __attribute__((format(printf, 1, 2)));

/* Copy text into buf/size as the *_last_error functions do; its length. */
size_t		client_error_copy(const char *text, char *buf, size_t size);

#endif							/* PSYNC_CLIENT_ERROR_H */
