/*
 * watch_view.h — what para-sync-watch's full-screen view shows: every row
 * watched, sorted by key, with its recent changes and deletions.
 *
 * Change callbacks (any thread) post events; the main thread drains them
 * into the model and reads it.  The model holds keys and marks only: the
 * current values stay in the replicas and collections and are read for the
 * rows on screen, so a 1M-row table costs one small record per row here.
 */
#ifndef PSYNC_WATCH_VIEW_H
#define PSYNC_WATCH_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of a changed value kept for the recent-changes pane and deleted rows. */
#define VIEW_SNIPPET_MAX 512

typedef enum view_change
{
	VIEW_ADDED,
	VIEW_UPDATED,
	VIEW_REMOVED
} view_change;

/* A change as posted and, once drained, as kept in the recent-changes list. */
typedef struct view_event
{
	struct view_event *next;
	double		at;				/* CLOCK_REALTIME seconds */
	int			source;			/* the caller's index of the table or key */
	view_change kind;
	bool		initial;		/* part of a source's initial load */
	int64_t		sequence;
	char	   *value;			/* JSON, at most VIEW_SNIPPET_MAX bytes; may be NULL */
	bool		value_cut;		/* value was longer */
	char		key[];
} view_event;

typedef enum view_row_state
{
	VIEW_ROW_LIVE,
	VIEW_ROW_DELETED			/* kept on screen until deleted_keep runs out */
} view_row_state;

typedef struct view_row
{
	int			source;
	uint8_t		state;			/* view_row_state */
	bool		sorted;			/* in the sorted index (not waiting to be merged) */
	bool		fresh;			/* added after the start and not changed since */
	int64_t		sequence;		/* last sequence seen in an event */
	double		changed_at;		/* last change (or the deletion) seen; 0: none since the load */
	char	   *last_value;		/* deleted rows: the value they had */
	size_t		key_len;
	char		key[];
} view_row;

typedef struct view view;

/*
 * A model; deleted rows stay for deleted_keep seconds, the newest
 * recent_max changes are kept.  NULL when out of memory.
 */
view	   *view_new(int nsources, double deleted_keep, size_t recent_max);
void		view_free(view *v);

/*
 * Any thread: queue a change.  value (JSON text, may be NULL) is copied up to
 * VIEW_SNIPPET_MAX bytes; initial events (a load) keep no value.
 */
void		view_post(view *v, int source, view_change kind, bool initial,
					  const char *key, size_t key_len, int64_t sequence,
					  const char *value, size_t value_len);

/* ---- main thread only ---- */

/*
 * Apply the queued events, merge new rows into the sorted index and drop
 * deleted rows that were kept long enough.  now: CLOCK_REALTIME seconds.
 * Returns true when anything changed.
 */
bool		view_drain(view *v, double now);

/* Rows in key order (deleted ones still kept included). */
size_t		view_count(const view *v);
const view_row *view_row_at(const view *v, size_t index);

/* Index of the first row whose key sorts at or after key. */
size_t		view_lower_bound(const view *v, const char *key);

/* The i-th most recent change (0: newest), NULL past the end. */
const view_event *view_recent(const view *v, size_t i);

/* Deleted rows still kept (included in view_count). */
size_t		view_deleted(const view *v);

/* Longest key seen so far (for the key column's width). */
size_t		view_key_width(const view *v);

/* Changes drained for a source (not counting its initial load), and its loaded rows. */
uint64_t	view_changes(const view *v, int source);
uint64_t	view_loaded(const view *v, int source);

/* n with thousands separators, "1,234,567", into buf; returns buf. */
const char *view_grouped(uint64_t n, char *buf, size_t size);

/*
 * Key order: byte order, except that runs of digits compare as numbers, so
 * users:9 comes before users:10.
 */
int			view_key_cmp(const char *a, const char *b);

#endif							/* PSYNC_WATCH_VIEW_H */
