/*
 * sized.h — the one home of the size rule of libparasync's public structs
 * (include/para_sync/client.h, "ABI policy"): every *_options, *_counters
 * and *_meta* struct starts with size_t size, and the library reads or
 * writes only min(the caller's size, its own) bytes of it.
 */
#ifndef PSYNC_SIZED_H
#define PSYNC_SIZED_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/*
 * Read a caller's struct of *(size_t *) theirs bytes into ours (our_size
 * bytes, already holding the defaults): members beyond the caller's size
 * keep their defaults.  ours->size becomes our_size.  False (ours
 * untouched) when the caller's size cannot even hold the size member, i.e.
 * the struct was never initialised.
 */
static inline bool
sized_read(void *ours, size_t our_size, const void *theirs)
{
	size_t		their_size;

	memcpy(&their_size, theirs, sizeof(their_size));
	if (their_size < sizeof(size_t))
		return false;
	memcpy((char *) ours + sizeof(size_t), (const char *) theirs + sizeof(size_t),
		   (their_size < our_size ? their_size : our_size) - sizeof(size_t));
	memcpy(ours, &our_size, sizeof(our_size));
	return true;
}

/*
 * Write ours (our_size bytes) into the caller's struct of their_size bytes:
 * at most their_size bytes, zero beyond our_size, and the caller's size
 * member set to the bytes filled.  Nothing when their_size cannot hold the
 * size member.
 */
static inline void
sized_write(void *theirs, size_t their_size, const void *ours, size_t our_size)
{
	size_t		filled = their_size < our_size ? their_size : our_size;

	if (their_size < sizeof(size_t))
		return;
	memcpy(theirs, ours, filled);
	if (their_size > filled)
		memset((char *) theirs + filled, 0, their_size - filled);
	memcpy(theirs, &filled, sizeof(filled));
}

/*
 * Initialise a caller's options struct of size bytes from the library's
 * defaults (our_size bytes): as sized_write, but its size member becomes
 * the caller's size.
 */
static inline void
sized_init(void *theirs, size_t size, const void *defaults, size_t our_size)
{
	if (theirs == NULL || size < sizeof(size_t))
		return;
	sized_write(theirs, size, defaults, our_size);
	memcpy(theirs, &size, sizeof(size));
}

#endif							/* PSYNC_SIZED_H */
