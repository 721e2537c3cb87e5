/*
 * watch_screen.c — para-sync-watch's full-screen view on a terminal.
 *
 * Plain ANSI escape sequences on the alternate screen, termios for the keys;
 * everything here runs on the main thread (change callbacks only post to the
 * view model, see watch_view.c).  Layout, top to bottom:
 *
 *   title      what is watched, the NATS link, the clock
 *   sources    one line per table / the watched keys: state and totals,
 *              changes/s
 *   columns    M KEY SEQ CHANGED VALUE
 *   rows       every row in key order, scrollable; recently added (+) and
 *              changed (*) rows highlighted, deleted ones (x) kept a while
 *   recent     the newest changes, newest first
 *   footer     position and keys
 *
 * A frame is drawn into one buffer and written at once, line by line with
 * "erase to end of line" (no full clear, so no flicker); after a resize
 * (SIGWINCH) the screen is cleared and drawn again.
 */
#include "watch_screen.h"

#include "para_sync/envelope.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* Rows added or changed this recently are marked and highlighted. */
#define MARK_SECONDS 30.0
/* Redraw at least this often (the clock, rates), and at most 10 times a second. */
#define IDLE_REDRAW_SECONDS 1.0
#define FRAME_SECONDS 0.1
/* changes/s is averaged over this many seconds. */
#define RATE_WINDOW 5

#define SGR_RESET "\x1b[0m"
#define SGR_BAR "\x1b[7m"
#define SGR_BOLD "\x1b[1m"
#define SGR_ADDED "\x1b[1;32m"
#define SGR_CHANGED "\x1b[1;33m"
#define SGR_DELETED "\x1b[31m"

typedef struct frame
{
	char	   *data;
	size_t		len;
	size_t		cap;
} frame;

typedef struct rate_state
{
	uint64_t	samples[RATE_WINDOW + 1];	/* view_changes, one per second */
	double		at[RATE_WINDOW + 1];
	int			next;
	int			count;
	double		rate;
} rate_state;

typedef struct screen
{
	view	   *v;
	const screen_hooks *hooks;
	const char *title;
	int			rows;
	int			cols;
	size_t		top;			/* index of the first row shown */
	char	   *anchor;			/* its key: the view stays put when rows arrive */
	bool		at_end;			/* End pressed: follow the end */
	char	   *focus;			/* the key "/" or "n" went to, shown reversed */
	int			body_rows;		/* rows shown in the body at the last draw */
	bool		prompting;		/* "/": reading a key to go to */
	char		query[PSYNC_MAX_KEY_LEN + 1];
	size_t		query_len;
	rate_state *rates;
	json_text	value;
	frame		f;
} screen;

static volatile sig_atomic_t resized;
static struct termios saved_termios;
static bool have_saved;
static volatile sig_atomic_t raw_mode;

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- terminal ---- */

static void
on_winch(int sig)
{
	(void) sig;
	resized = 1;
}

static void
write_all(const char *s, size_t n)
{
	while (n > 0)
	{
		ssize_t		w = write(STDOUT_FILENO, s, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t) w;
	}
}

static void
terminal_enter(void)
{
	struct termios t;
	static const char enter[] = "\x1b[?1049h\x1b[?25l\x1b[2J";

	if (isatty(STDIN_FILENO) && (have_saved || tcgetattr(STDIN_FILENO, &saved_termios) == 0))
	{
		have_saved = true;
		t = saved_termios;
		/* no echo, no line editing, keys as they come; Ctrl-C still signals */
		t.c_lflag &= ~(ICANON | ECHO);
		t.c_iflag &= ~(IXON | ICRNL);
		t.c_cc[VMIN] = 0;
		t.c_cc[VTIME] = 0;
		raw_mode = tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) == 0;
	}
	write_all(enter, sizeof(enter) - 1);
}

static void
terminal_leave(void)
{
	static const char leave[] = SGR_RESET "\x1b[?25h\x1b[?1049l";

	write_all(leave, sizeof(leave) - 1);
	if (raw_mode)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_termios);
	raw_mode = false;
}

/*
 * Ctrl-Z: give the terminal back, stop, and take it again on fg (write,
 * tcsetattr and raise are async-signal-safe); the next frame is drawn whole.
 */
static void
on_suspend(int sig)
{
	int			saved_errno = errno;

	(void) sig;
	terminal_leave();
	raise(SIGSTOP);
	terminal_enter();
	resized = 1;
	errno = saved_errno;
}

static void
terminal_size(screen *s)
{
	struct winsize ws;

	s->rows = 24;
	s->cols = 80;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0)
	{
		s->rows = ws.ws_row;
		s->cols = ws.ws_col;
	}
}

/* ---- frame buffer ---- */

static void
put(frame *f, const char *str, size_t n)
{
	if (f->len + n + 1 > f->cap)
	{
		size_t		cap = (f->len + n + 1) * 2;
		char	   *d = realloc(f->data, cap);

		if (d == NULL)
			return;
		f->data = d;
		f->cap = cap;
	}
	memcpy(f->data + f->len, str, n);
	f->len += n;
	f->data[f->len] = '\0';
}

static void
puts_(frame *f, const char *str)
{
	put(f, str, strlen(str));
}

/*
 * Append at most *room columns of text (UTF-8: a column per code point;
 * newlines and tabs become spaces) and take them off *room.
 */
static void
put_cols(frame *f, const char *text, int *room)
{
	const unsigned char *p = (const unsigned char *) text;

	while (*p && *room > 0)
	{
		size_t		n = 1;

		if (*p == '\n' || *p == '\t' || *p == '\r')
		{
			put(f, " ", 1);
			p++;
			(*room)--;
			continue;
		}
		if (*p >= 0xc0)
			while ((p[n] & 0xc0) == 0x80 && n < 4)
				n++;
		else if (*p >= 0x80 || *p < 0x20)
		{
			put(f, "?", 1);		/* a stray byte or control: not sent raw */
			p++;
			(*room)--;
			continue;
		}
		put(f, (const char *) p, n);
		p += n;
		(*room)--;
	}
}

static void
put_colsf(frame *f, int *room, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
put_colsf(frame *f, int *room, const char *fmt, ...)
{
	char		buf[1024];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	put_cols(f, buf, room);
}

/* Move to the start of screen line y (1-based). */
static void
line_start(frame *f, int y)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), "\x1b[%d;1H", y);
	puts_(f, buf);
}

/*
 * End a line: pad a bar to the full width, otherwise erase the rest (not
 * when the text filled the line: erasing there would take its last column).
 */
static void
line_end(frame *f, int room, bool bar)
{
	if (bar)
		while (room-- > 0)
			put(f, " ", 1);
	else if (room > 0)
		puts_(f, "\x1b[K");
	puts_(f, SGR_RESET);
}

static void
clock_text(double t, char *buf, size_t size)
{
	time_t		secs = (time_t) t;
	struct tm	tm;

	localtime_r(&secs, &tm);
	strftime(buf, size, "%H:%M:%S", &tm);
}

/* ---- rates ---- */

static void
update_rates(screen *s, double now)
{
	for (int i = 0; i < s->hooks->nsources; i++)
	{
		rate_state *r = &s->rates[i];
		int			last = (r->next + RATE_WINDOW) % (RATE_WINDOW + 1);
		int			oldest;

		if (r->count > 0 && now - r->at[last] < 1.0)
			continue;
		r->samples[r->next] = view_changes(s->v, i);
		r->at[r->next] = now;
		last = r->next;
		r->next = (r->next + 1) % (RATE_WINDOW + 1);
		if (r->count < RATE_WINDOW + 1)
			r->count++;
		oldest = r->count <= RATE_WINDOW ? 0 : r->next;
		if (r->count > 1 && r->at[last] > r->at[oldest])
			r->rate = (double) (r->samples[last] - r->samples[oldest]) /
				(r->at[last] - r->at[oldest]);
	}
}

/* ---- layout ---- */

typedef struct layout
{
	int			source_lines;
	int			body_top;		/* screen line of the first row */
	int			body_rows;
	int			recent_top;		/* divider line; 0 = no recent pane */
	int			recent_rows;
} layout;

static layout
compute_layout(const screen *s)
{
	layout		l = {0};
	int			free_rows;

	l.source_lines = s->hooks->nsources;
	if (l.source_lines > s->rows / 4)
		l.source_lines = s->rows / 4 > 0 ? s->rows / 4 : 1;
	/* title, sources, column names ... footer */
	free_rows = s->rows - (1 + l.source_lines + 1 + 1);
	if (free_rows >= 9)
	{
		l.recent_rows = free_rows / 3 > 12 ? 12 : free_rows / 3;
		free_rows -= l.recent_rows + 1;
	}
	l.body_top = 1 + l.source_lines + 2;
	l.body_rows = free_rows > 0 ? free_rows : 0;
	l.recent_top = l.recent_rows > 0 ? l.body_top + l.body_rows : 0;
	return l;
}

/* Keep top within range and on the anchor's row. */
static void
clamp_top(screen *s, int body_rows)
{
	size_t		n = view_count(s->v);
	size_t		max_top = n > (size_t) body_rows ? n - (size_t) body_rows : 0;

	if (s->at_end)
		s->top = max_top;
	else if (s->anchor != NULL)
		s->top = view_lower_bound(s->v, s->anchor);
	if (s->top > max_top)
		s->top = max_top;
}

static void
set_anchor(screen *s)
{
	const view_row *row = view_row_at(s->v, s->top);

	free(s->anchor);
	s->anchor = row ? strdup(row->key) : NULL;
}

/* ---- drawing ---- */

static void
draw_title(screen *s, double now)
{
	char		link[512],
				clock[16];
	int			room = s->cols;

	s->hooks->link_line(s->hooks->ctx, link, sizeof(link));
	clock_text(now, clock, sizeof(clock));
	line_start(&s->f, 1);
	puts_(&s->f, SGR_BAR);
	put_colsf(&s->f, &room, " para-sync-watch  %s  %s", s->title, link);
	if (room > (int) strlen(clock) + 1)
	{
		while (room > (int) strlen(clock) + 1)
		{
			put(&s->f, " ", 1);
			room--;
		}
		put_cols(&s->f, clock, &room);
	}
	line_end(&s->f, room, true);
}

static void
draw_sources(screen *s, const layout *l)
{
	char		buf[1024];

	for (int i = 0; i < l->source_lines; i++)
	{
		int			room = s->cols;

		line_start(&s->f, 2 + i);
		if (i == l->source_lines - 1 && l->source_lines < s->hooks->nsources)
			snprintf(buf, sizeof(buf), " ... %d more sources (a taller terminal shows them)",
					 s->hooks->nsources - i);
		else
			s->hooks->source_line(s->hooks->ctx, i, s->rates[i].rate, buf, sizeof(buf));
		put_cols(&s->f, buf, &room);
		line_end(&s->f, room, false);
	}
}

static int
key_column(const screen *s)
{
	int			w = (int) view_key_width(s->v);

	if (w < 8)
		w = 8;
	if (w > s->cols / 3)
		w = s->cols / 3 > 3 ? s->cols / 3 : 3;
	return w;
}

static void
draw_columns(screen *s, const layout *l, int kw)
{
	int			room = s->cols;

	line_start(&s->f, l->body_top - 1);
	puts_(&s->f, SGR_BOLD "\x1b[4m");
	put_colsf(&s->f, &room, "  %-*s %8s %-8s %s", kw, "KEY", "SEQ", "CHANGED", "VALUE");
	line_end(&s->f, room, true);
}

static void
draw_row(screen *s, const view_row *row, int y, int kw, double now)
{
	int64_t		seq = row->sequence;
	char		status[32] = "",
				changed[16] = "";
	const char *sgr = "";
	char		mark = ' ';
	bool		have;
	int			room = s->cols;

	if (row->state == VIEW_ROW_DELETED)
	{
		mark = 'x';
		sgr = SGR_DELETED;
	}
	else if (row->fresh && now - row->changed_at < MARK_SECONDS)
	{
		mark = '+';
		sgr = SGR_ADDED;
	}
	else if (row->changed_at > 0 && now - row->changed_at < MARK_SECONDS)
	{
		mark = '*';
		sgr = SGR_CHANGED;
	}
	if (row->changed_at > 0)
		clock_text(row->changed_at, changed, sizeof(changed));
	have = row->state == VIEW_ROW_LIVE &&
		s->hooks->row_value(s->hooks->ctx, row->source, row->key, &s->value, &seq,
							status, sizeof(status));
	line_start(&s->f, y);
	puts_(&s->f, sgr);
	if (s->focus != NULL && strcmp(s->focus, row->key) == 0)
		puts_(&s->f, "\x1b[7m");
	put_colsf(&s->f, &room, "%c %-*.*s %8lld %-8s ", mark, kw, kw, row->key, (long long) seq,
			  changed);
	if (row->state == VIEW_ROW_DELETED)
	{
		put_cols(&s->f, "DELETED  was ", &room);
		put_cols(&s->f, row->last_value ? row->last_value : "?", &room);
	}
	else if (have)
	{
		if (status[0] != '\0')
			put_colsf(&s->f, &room, "[%s] ", status);
		put_cols(&s->f, s->value.data ? s->value.data : "-", &room);
	}
	else
		put_cols(&s->f, status[0] ? status : "(not present)", &room);
	line_end(&s->f, room, false);
}

static void
draw_body(screen *s, const layout *l, int kw, double now)
{
	for (int i = 0; i < l->body_rows; i++)
	{
		const view_row *row = view_row_at(s->v, s->top + (size_t) i);

		if (row != NULL)
			draw_row(s, row, l->body_top + i, kw, now);
		else
		{
			line_start(&s->f, l->body_top + i);
			puts_(&s->f, "\x1b[K");
		}
	}
}

static void
draw_recent(screen *s, const layout *l, int kw)
{
	static const char *const kind[] = {"add", "upd", "DEL"};
	static const char *const sgr[] = {SGR_ADDED, SGR_CHANGED, SGR_DELETED};
	int			room = s->cols;

	if (l->recent_top == 0)
		return;
	line_start(&s->f, l->recent_top);
	puts_(&s->f, SGR_BOLD);
	put_cols(&s->f, "-- recent changes, newest first ", &room);
	while (room > 0)
	{
		put(&s->f, "-", 1);
		room--;
	}
	line_end(&s->f, room, false);
	for (int i = 0; i < l->recent_rows; i++)
	{
		const view_event *e = view_recent(s->v, (size_t) i);
		char		at[16];

		room = s->cols;
		line_start(&s->f, l->recent_top + 1 + i);
		if (e == NULL && i == 0)
			put_cols(&s->f, "(no changes since the start)", &room);
		if (e != NULL)
		{
			clock_text(e->at, at, sizeof(at));
			puts_(&s->f, sgr[e->kind]);
			put_colsf(&s->f, &room, "%s %s %-*.*s %8lld  ", at, kind[e->kind], kw, kw, e->key,
					  (long long) e->sequence);
			put_cols(&s->f, e->value ? e->value : "", &room);
		}
		line_end(&s->f, room, false);
	}
}

static void
draw_footer(screen *s, const layout *l)
{
	size_t		n = view_count(s->v);
	size_t		last = s->top + (size_t) l->body_rows;
	int			room = s->cols;
	char		from[32],
				to[32],
				total[32];

	if (last > n)
		last = n;
	from[0] = to[0] = '\0';	/* no room for rows (or none): just the count */
	line_start(&s->f, s->rows);
	puts_(&s->f, SGR_BAR);
	if (s->prompting)
	{
		put_colsf(&s->f, &room, " go to key: %s_   Enter: go   Esc: back", s->query);
		if (room > 0)
			room--;
		while (room-- > 0)
			put(&s->f, " ", 1);
		puts_(&s->f, "\x1b[K" SGR_RESET);
		return;
	}
	if (last > s->top)
	{
		view_grouped(s->top + 1, from, sizeof(from));
		view_grouped(last, to, sizeof(to));
	}
	put_colsf(&s->f, &room, " rows %s%s%s%s%s%s   Up/Down PgUp/PgDn Home/End scroll   /: go to key   n: newest change   q: quit",
			  from, from[0] ? "-" : "", to, from[0] ? " of " : "",
			  view_grouped(n, total, sizeof(total)),
			  view_deleted(s->v) ? " (deleted ones included)" : "");
	/* not the very last column (some terminals scroll when it is written): erase it */
	if (room > 0)
		room--;
	while (room-- > 0)
		put(&s->f, " ", 1);
	puts_(&s->f, "\x1b[K" SGR_RESET);
}

static void
draw(screen *s, double now, bool full)
{
	layout		l = compute_layout(s);
	int			kw = key_column(s);

	s->f.len = 0;
	s->body_rows = l.body_rows;
	clamp_top(s, l.body_rows);
	if (full)
		puts_(&s->f, SGR_RESET "\x1b[2J");
	draw_title(s, now);
	draw_sources(s, &l);
	draw_columns(s, &l, kw);
	draw_body(s, &l, kw, now);
	draw_recent(s, &l, kw);
	draw_footer(s, &l);
	write_all(s->f.data, s->f.len);
}

/* ---- keys ---- */

typedef enum key_action
{
	KEY_NONE,
	KEY_QUIT,
	KEY_UP,
	KEY_DOWN,
	KEY_PGUP,
	KEY_PGDN,
	KEY_HOME,
	KEY_END,
	KEY_NEWEST,
	KEY_FIND
} key_action;

/* Decode one key from buf[0..n); *used: bytes consumed. */
static key_action
decode_key(const char *buf, size_t n, size_t *used)
{
	*used = 1;
	if (buf[0] != '\x1b')
	{
		switch (buf[0])
		{
			case 'q': case 'Q': return KEY_QUIT;
			case 'k': return KEY_UP;
			case 'j': return KEY_DOWN;
			case 'b': return KEY_PGUP;
			case ' ': return KEY_PGDN;
			case 'g': return KEY_HOME;
			case 'G': return KEY_END;
			case 'n': return KEY_NEWEST;
			case '/': return KEY_FIND;
			default: return KEY_NONE;
		}
	}
	if (n >= 3 && (buf[1] == '[' || buf[1] == 'O'))
	{
		*used = 3;
		switch (buf[2])
		{
			case 'A': return KEY_UP;
			case 'B': return KEY_DOWN;
			case 'H': return KEY_HOME;
			case 'F': return KEY_END;
		}
		if (n >= 4 && buf[3] == '~')
		{
			*used = 4;
			switch (buf[2])
			{
				case '5': return KEY_PGUP;
				case '6': return KEY_PGDN;
				case '1': case '7': return KEY_HOME;
				case '4': case '8': return KEY_END;
			}
		}
		return KEY_NONE;
	}
	return KEY_NONE;
}

static void
scroll_by(screen *s, long delta)
{
	size_t		n = view_count(s->v);
	size_t		max_top = n > (size_t) s->body_rows ? n - (size_t) s->body_rows : 0;
	long		top = (long) s->top + delta;

	if (top < 0)
		top = 0;
	if ((size_t) top > max_top)
		top = (long) max_top;
	s->top = (size_t) top;
	s->at_end = false;
	set_anchor(s);
}

/* Show the row at key (or the first after it), in the middle of the body. */
static void
go_to(screen *s, const char *key)
{
	size_t		at = view_lower_bound(s->v, key);
	const view_row *row = view_row_at(s->v, at);

	s->top = at > (size_t) (s->body_rows / 2) ? at - (size_t) (s->body_rows / 2) : 0;
	scroll_by(s, 0);
	free(s->focus);
	s->focus = row ? strdup(row->key) : NULL;
}

/*
 * A byte typed at the "go to key" prompt.  Enter goes (a query without ':'
 * is taken in the table of the row on top: "2500" → "items:2500"), Esc or
 * any escape sequence goes back.  Returns the bytes used.
 */
static size_t
prompt_key(screen *s, const char *buf, size_t n)
{
	unsigned char c = (unsigned char) buf[0];

	if (c == '\r' || c == '\n')
	{
		const view_row *top = view_row_at(s->v, s->top);
		const char *colon = top ? strchr(top->key, ':') : NULL;
		char		key[2 * (PSYNC_MAX_KEY_LEN + 1)];

		if (strchr(s->query, ':') == NULL && colon != NULL)
			snprintf(key, sizeof(key), "%.*s%s", (int) (colon + 1 - top->key), top->key, s->query);
		else
			snprintf(key, sizeof(key), "%s", s->query);
		s->prompting = false;
		go_to(s, key);
	}
	else if (c == 0x1b)
	{
		s->prompting = false;
		return n;				/* the rest of an arrow key's sequence too */
	}
	else if ((c == 0x7f || c == 0x08) && s->query_len > 0)
		s->query[--s->query_len] = '\0';
	else if (c >= 0x20 && c < 0x7f && s->query_len < PSYNC_MAX_KEY_LEN)
	{
		s->query[s->query_len++] = (char) c;
		s->query[s->query_len] = '\0';
	}
	return 1;
}

/* Read and act on the keys waiting; false when q was pressed. */
static bool
handle_keys(screen *s, bool *moved)
{
	char		buf[64];
	ssize_t		n = read(STDIN_FILENO, buf, sizeof(buf));
	long		page = s->body_rows > 1 ? s->body_rows - 1 : 1;

	for (size_t i = 0; n > 0 && i < (size_t) n;)
	{
		size_t		used;
		key_action	a;
		const view_event *e;

		*moved = true;
		if (s->prompting)
		{
			i += prompt_key(s, buf + i, (size_t) n - i);
			continue;
		}
		a = decode_key(buf + i, (size_t) n - i, &used);
		i += used;
		switch (a)
		{
			case KEY_QUIT: return false;
			case KEY_UP: scroll_by(s, -1); break;
			case KEY_DOWN: scroll_by(s, 1); break;
			case KEY_PGUP: scroll_by(s, -page); break;
			case KEY_PGDN: scroll_by(s, page); break;
			case KEY_HOME: scroll_by(s, -(long) view_count(s->v)); break;
			case KEY_END:
				scroll_by(s, (long) view_count(s->v));
				s->at_end = true;
				break;
			case KEY_NEWEST:
				if ((e = view_recent(s->v, 0)) != NULL)
					go_to(s, e->key);
				break;
			case KEY_FIND:
				s->prompting = true;
				s->query_len = 0;
				s->query[0] = '\0';
				break;
			case KEY_NONE: *moved = false; break;
		}
	}
	return true;
}

/* ---- main loop ---- */

int
screen_run(view *v, const screen_hooks *hooks, const char *title, volatile sig_atomic_t *stop)
{
	screen		s = {.v = v, .hooks = hooks, .title = title};
	struct sigaction sa = {.sa_handler = on_winch};
	double		drawn_at = 0;
	bool		full = true,
				dirty = true;
	int			status = 0;

	s.rates = calloc((size_t) (hooks->nsources > 0 ? hooks->nsources : 1), sizeof(*s.rates));
	if (s.rates == NULL)
		return 1;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGWINCH, &sa, NULL);
	sa.sa_handler = on_suspend;
	sigaction(SIGTSTP, &sa, NULL);
	terminal_size(&s);
	terminal_enter();
	while (!*stop && (status = hooks->failed(hooks->ctx)) == 0)
	{
		struct pollfd in = {.fd = STDIN_FILENO, .events = POLLIN};
		double		now;
		bool		changed,
					moved = false;

		if (raw_mode && poll(&in, 1, (int) (FRAME_SECONDS * 1000)) > 0 &&
			!handle_keys(&s, &moved))
			break;
		if (!raw_mode)
			usleep((useconds_t) (FRAME_SECONDS * 1e6));
		now = now_seconds();
		changed = view_drain(v, now);
		dirty |= changed;
		update_rates(&s, now);
		if (resized)
		{
			resized = 0;
			terminal_size(&s);
			full = true;
		}
		if (full || moved || (dirty && now - drawn_at >= FRAME_SECONDS) ||
			now - drawn_at >= IDLE_REDRAW_SECONDS)
		{
			draw(&s, now, full);
			drawn_at = now;
			full = dirty = false;
		}
	}
	signal(SIGTSTP, SIG_DFL);
	terminal_leave();
	free(s.anchor);
	free(s.focus);
	free(s.rates);
	free(s.value.data);
	free(s.f.data);
	return status;
}
