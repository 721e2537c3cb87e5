/*
 * callback.h — which libparasync callbacks are running on this thread.
 *
 * Replicas and collections call the application (parse, change observers,
 * refetch start, value visitors) with their lock held.  Each such call runs
 * inside a callback frame pushed on a thread-local stack, so the library
 * can refuse what a callback must not do instead of crashing or hanging:
 * disposing the handle whose callback is running (the caller would return
 * into freed memory) or waiting for a refetch (its completion may need the
 * lock the callback holds).  Frames live on the C stack: no allocation.
 */
#ifndef PSYNC_CALLBACK_H
#define PSYNC_CALLBACK_H

#include <stdbool.h>
#include <stddef.h>

typedef struct callback_frame
{
	const void *handle;
	struct callback_frame *up;
} callback_frame;

/*
 * Defined in status.c.  Internal: hidden, and named outside the psync_*
 * pattern the version script exports (src/client/libparasync.map.in).
 */
extern __attribute__((visibility("hidden"))) _Thread_local callback_frame *parasync_callback_frames;

static inline void
callback_enter(callback_frame *frame, const void *handle)
{
	frame->handle = handle;
	frame->up = parasync_callback_frames;
	parasync_callback_frames = frame;
}

static inline void
callback_leave(callback_frame *frame)
{
	parasync_callback_frames = frame->up;
}

/* Whether a callback of handle (NULL: of any handle) runs on this thread. */
static inline bool
callback_running(const void *handle)
{
	for (callback_frame *f = parasync_callback_frames; f != NULL; f = f->up)
		if (handle == NULL || f->handle == handle)
			return true;
	return false;
}

#endif							/* PSYNC_CALLBACK_H */
