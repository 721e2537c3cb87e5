/*
 * pq_internal.h — what libparasync's two libpq modules share: the refetcher
 * (refetch_pq.c) and the collection page loader (loader_pq.c).
 */
#ifndef PSYNC_PQ_INTERNAL_H
#define PSYNC_PQ_INTERNAL_H

#include <stddef.h>

/* "what: libpq's message" into buf, without libpq's trailing newline. */
void		client_pq_message(char *buf, size_t size, const char *what, const char *message);

#endif							/* PSYNC_PQ_INTERNAL_H */
