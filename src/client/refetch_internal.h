/*
 * refetch_internal.h — what a psync_refetch_request is inside libparasync.
 *
 * Replicas and collections both start refetches through the application's
 * psync_refetch_fn; the request remembers who asked and how to finish, so
 * psync_refetch_complete/_fail work the same for both.
 */
#ifndef PSYNC_REFETCH_INTERNAL_H
#define PSYNC_REFETCH_INTERNAL_H

#include "para_sync/client.h"

struct psync_refetch_request
{
	/* bytes/len: the snapshot when ok; error: the failure's text or NULL */
	void		(*finish) (psync_refetch_request *req, const void *bytes,
						   size_t len, bool ok, const char *error);
	void	   *owner;			/* the replica or collection */
	char	   *key;
};

#endif							/* PSYNC_REFETCH_INTERNAL_H */
