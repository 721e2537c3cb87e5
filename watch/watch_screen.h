/*
 * watch_screen.h — para-sync-watch's full-screen terminal view (plain ANSI
 * escape sequences and termios; no curses).
 */
#ifndef PSYNC_WATCH_SCREEN_H
#define PSYNC_WATCH_SCREEN_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "watch_json.h"
#include "watch_view.h"

/* What the screen asks the program for; every hook runs on the screen's (main) thread. */
typedef struct screen_hooks
{
	void	   *ctx;
	int			nsources;

	/*
	 * The current value of a row of source: its JSON into out, its sequence,
	 * and a status word when it is not simply current ("" otherwise).
	 * false: the source has no such row (now).
	 */
	bool		(*row_value) (void *ctx, int source, const char *key, json_text *out,
							  int64_t *sequence, char *status, size_t status_size);

	/* One header line about source: its state and totals (rate: changes/s). */
	void		(*source_line) (void *ctx, int source, double rate, char *buf, size_t size);

	/* The title line's connection part (e.g. the NATS URL and link state). */
	void		(*link_line) (void *ctx, char *buf, size_t size);

	/* Non-zero ends the view with that exit status (e.g. a failed load). */
	int			(*failed) (void *ctx);
} screen_hooks;

/*
 * Run the view on stdout (input from stdin when it is a terminal) until `q`,
 * *stop (set by a signal handler) or hooks->failed.  Restores the terminal.
 * Returns the exit status: 0, or hooks->failed's.
 */
int			screen_run(view *v, const screen_hooks *hooks, const char *title,
					   volatile sig_atomic_t *stop);

#endif							/* PSYNC_WATCH_SCREEN_H */
