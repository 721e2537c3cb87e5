/*
 * watch.c — para-sync-watch: live replicas of keys or whole tables, shown
 * in a terminal.
 *
 *   para-sync-watch [-s NATS_URL] [-d CONNINFO] [-p PREFIX] [--lines]
 *                   [--keep-deleted SECONDS] KEY|TABLE:*|TABLE@SCOPE:* ...
 *
 * Holds a libparasync replica (NATS transport, libpq refetcher, initial
 * refetch) per key named, and a collection (every row, loaded with
 * para_sync.snapshot_page() -- snapshot_table() from a server older than
 * 0.4 -- and then kept live) per "TABLE:*" pattern; the collections share
 * one page loader.
 * On a terminal it is a full-screen view (watch_screen.c over the model in
 * watch_view.c): the rows sorted by key, scrollable, with recent changes
 * and deletions marked; tables load in the background (a starter thread
 * each) while the view shows their progress.  Otherwise, or with --lines,
 * one line is printed per change.  Tables in the 'table' subject layout
 * (looked up in para_sync.synced_tables at start) are followed on
 * "<prefix>.<table>.>", filtered by the server.  "TABLE@SCOPE:*" follows
 * one scope of a table with a scope (docs/protocol.md "Scopes"; SCOPE is
 * the scope token, everything between '@' and the final ":*"): a
 * collection of that scope, on "<prefix>.<table>.<scope>.>"; the tables
 * with a scope are looked up in para_sync.synced_tables at start too.
 *
 * Threads: change callbacks run on nats.c, refetcher and collection loader
 * threads; they only print (lines mode, under print_lock) or post to the
 * view model (its own lock).  The main thread owns the lists of watched
 * keys and tables and does all terminal I/O of the full-screen view.
 */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "para_sync/client.h"
#include "watch_json.h"
#include "watch_screen.h"
#include "watch_view.h"

/* Longest value printed in line mode (bytes of JSON); longer ones end "...". */
#define LINE_VALUE_MAX 4096
/* Changes kept for the recent-changes pane. */
#define RECENT_MAX 256

typedef struct watched
{
	char	   *key;
	psync_replica *replica;
	int64_t		last_sequence;	/* callbacks only (serialised by the replica) */
	struct watched *next;
} watched;

typedef enum table_state
{
	TABLE_LOADING,
	TABLE_LIVE,
	TABLE_FAILED
} table_state;

typedef struct watched_table
{
	char	   *pattern;		/* "TABLE" of "TABLE:*", "TABLE@SCOPE" of "TABLE@SCOPE:*" */
	int			source;			/* its index in the view */
	psync_collection *collection;	/* set once loaded (by the starter) */
	atomic_int	state;
	bool		started;		/* a starter thread runs or ran */
	pthread_t	starter;
	char		error[512];		/* TABLE_FAILED: why */
	struct watched_table *next;
} watched_table;

static struct
{
	psync_transport *transport;
	psync_refetcher *refetcher;
	psync_pq_loader *loader;
	watched_table *tables;
	int			ntables;
	bool		lines;
	const char *nats_url;
	view	   *view;			/* full-screen mode */
	/* main thread only */
	watched    *head;
	watched   **tail;
	size_t		count;
	/* anywhere */
	pthread_mutex_t print_lock;
	bool		link_known;		/* our subscription for PSYNC_EVENT_LOST is there */
	atomic_uint lost;			/* PSYNC_EVENT_LOST seen */
	_Atomic double lost_at;
} w;

static volatile sig_atomic_t stop_requested;


static void
on_signal(int sig)
{
	(void) sig;
	stop_requested = 1;
}

/* ---- the parse gate: any value, kept as JSON text ---- */

static bool
parse_json(void *ctx, const uint8_t *msgpack, size_t len, const psync_envelope *env,
		   void *recycled, void **out, const char **error)
{
	json_text  *j = recycled ? recycled : calloc(1, sizeof(json_text));

	(void) ctx;
	(void) env;
	if (j == NULL || !msgpack_to_json(msgpack, len, j))
	{
		if (j != recycled && j != NULL)
		{
			free(j->data);
			free(j);
		}
		*error = "value not renderable";
		return false;
	}
	*out = j;
	return true;
}

static void
free_json(void *ctx, void *value)
{
	json_text  *j = value;

	(void) ctx;
	free(j->data);
	free(j);
}

/* ---- change callbacks (any thread) ---- */

static void
print_line(const char *key, const void *value, const psync_replica_metadata *meta)
{
	time_t		now = time(NULL);
	struct tm	tm;
	char		stamp[16];

	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
	const json_text *j = value;
	bool		cut = j != NULL && j->len > LINE_VALUE_MAX;

	pthread_mutex_lock(&w.print_lock);
	printf("%s %s seq=%" PRId64 " status=%s value=%.*s%s\n", stamp, key, meta->sequence,
		   psync_replica_status_name(meta->status),
		   j ? (int) (cut ? LINE_VALUE_MAX : j->len) : 1, j ? j->data : "-",
		   cut ? "..." : "");
	fflush(stdout);
	pthread_mutex_unlock(&w.print_lock);
}

/* A collection's member changed: a line like a replica's, or a view event. */
static void
on_member_change(void *ctx, psync_collection *collection, psync_member_change change,
				 const char *key, size_t key_len, const void *value, int64_t sequence)
{
	watched_table *t = ctx;

	(void) collection;
	if (w.lines)
	{
		static const json_text null_json = {"null", 4, 5};
		psync_replica_metadata meta = {.sequence = sequence, .status = PSYNC_REPLICA_OK};
		char		k[PSYNC_MAX_KEY_LEN + 1];

		snprintf(k, sizeof(k), "%.*s", (int) key_len, key);
		print_line(k, change == PSYNC_MEMBER_REMOVED ? &null_json : value, &meta);
	}
	else
	{
		const json_text *j = value;
		view_change kind = change == PSYNC_MEMBER_ADDED ? VIEW_ADDED :
			change == PSYNC_MEMBER_UPDATED ? VIEW_UPDATED : VIEW_REMOVED;

		view_post(w.view, t->source, kind, atomic_load(&t->state) == TABLE_LOADING,
				  key, key_len, sequence, j ? j->data : NULL, j ? j->len : 0);
	}
}

static void
on_change(void *ctx, psync_replica *replica, const void *value,
		  const psync_replica_metadata *meta)
{
	watched    *entry = ctx;

	(void) replica;
	if (w.lines)
		print_line(entry->key, value, meta);
	else if (meta->sequence != entry->last_sequence)
	{
		const json_text *j = value;

		/* the first value (the initial refetch) is the load, not a change */
		view_post(w.view, w.ntables, VIEW_UPDATED, entry->last_sequence < 0, entry->key,
				  strlen(entry->key), meta->sequence, j ? j->data : NULL, j ? j->len : 0);
	}
	entry->last_sequence = meta->sequence;
}

/* Our own subscription's events: only PSYNC_EVENT_LOST matters (link state). */
static void
on_transport_event(void *ctx, const psync_event *event)
{
	struct timespec now;

	(void) ctx;
	if (event->kind != PSYNC_EVENT_LOST)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	atomic_store(&w.lost_at, (double) now.tv_sec + now.tv_nsec / 1e9);
	atomic_fetch_add(&w.lost, 1);
}

/* ---- main-thread bookkeeping ---- */

static bool
watch_key(const char *key)
{
	watched    *entry = calloc(1, sizeof(*entry));
	psync_replica_options o;
	psync_status st;

	if (entry == NULL || (entry->key = strdup(key)) == NULL)
	{
		free(entry);
		return false;
	}
	entry->last_sequence = -1;
	psync_replica_options_init(&o);
	o.key = entry->key;
	o.schema = (psync_schema) {parse_json, free_json, NULL};
	o.transport = w.transport;
	o.refetch = psync_pq_refetch_fn();
	o.refetch_ctx = psync_pq_refetch_ctx(w.refetcher);
	o.initial_refetch = true;
	o.on_change = on_change;
	o.on_change_ctx = entry;
	/* the row is on screen from the start, even before it has a value */
	if (w.view != NULL)
		view_post(w.view, w.ntables, VIEW_ADDED, true, key, strlen(key), -1, NULL, 0);
	if ((st = psync_replica_new(&o, &entry->replica)) != PSYNC_OK)
	{
		fprintf(stderr, "para-sync-watch: %s: %s\n", key, psync_status_text(st));
		free(entry->key);
		free(entry);
		return false;
	}
	*w.tail = entry;
	w.tail = &entry->next;
	w.count++;
	return true;
}

/* Load a table's collection (blocks until every page is in). */
static bool
load_table(watched_table *t)
{
	psync_collection_options o;
	psync_status st;
	char		err[400];
	char		table[64];
	const char *at = strchr(t->pattern, '@');

	psync_collection_options_init(&o);
	/* "TABLE@SCOPE": one scope */
	snprintf(table, sizeof(table), "%.*s",
			 at != NULL ? (int) (at - t->pattern) : (int) strlen(t->pattern), t->pattern);
	o.table = table;
	o.scope = at != NULL ? at + 1 : NULL;
	o.schema = (psync_schema) {parse_json, free_json, NULL};
	o.transport = w.transport;
	o.load_page = psync_pq_load_page_fn();
	o.load_ctx = psync_pq_load_page_ctx(w.loader);
	o.refetch = psync_pq_refetch_fn();
	o.refetch_ctx = psync_pq_refetch_ctx(w.refetcher);
	o.on_change = on_member_change;
	o.on_change_ctx = t;
	if ((st = psync_collection_new(&o, &t->collection)) != PSYNC_OK)
	{
		psync_last_error(err, sizeof(err));
		snprintf(t->error, sizeof(t->error), "%s:*: %s: %s", t->pattern, psync_status_text(st), err);
		atomic_store(&t->state, TABLE_FAILED);
		return false;
	}
	atomic_store(&t->state, TABLE_LIVE);
	return true;
}

static void *
table_starter(void *arg)
{
	load_table(arg);
	return NULL;
}

/*
 * Every row of the table, from the start, then live: a collection.  Lines
 * mode loads it here; the full-screen view on a starter thread.
 */
static bool
watch_table(watched_table *t)
{
	if (w.lines)
	{
		if (!load_table(t))
		{
			fprintf(stderr, "para-sync-watch: %s\n", t->error);
			return false;
		}
		return true;
	}
	if (pthread_create(&t->starter, NULL, table_starter, t) != 0)
	{
		snprintf(t->error, sizeof(t->error), "%s:*: cannot start a thread", t->pattern);
		return false;
	}
	t->started = true;
	return true;
}

/* ---- drawing (line mode has none; the full-screen view's hooks) ---- */

static watched_table *
table_of(int source)
{
	for (watched_table *t = w.tables; t != NULL; t = t->next)
		if (t->source == source)
			return t;
	return NULL;
}

typedef struct value_visit
{
	json_text  *out;
	int64_t    *sequence;
	char	   *status;
	size_t		status_size;
} value_visit;

static void
copy_json(json_text *out, const void *value)
{
	const json_text *j = value;
	const char *text = j ? j->data : "-";
	size_t		len = j ? j->len : 1;

	if (out->cap < len + 1)
	{
		char	   *d = realloc(out->data, len + 1);

		if (d == NULL)
		{
			out->len = 0;
			return;
		}
		out->data = d;
		out->cap = len + 1;
	}
	memcpy(out->data, text, len);
	out->data[len] = '\0';
	out->len = len;
}

static void
visit_member(void *ctx, const char *key, size_t key_len, const void *value, int64_t sequence)
{
	value_visit *v = ctx;

	(void) key;
	(void) key_len;
	copy_json(v->out, value);
	*v->sequence = sequence;
}

static void
visit_replica(void *ctx, const void *value, const psync_replica_metadata *meta)
{
	value_visit *v = ctx;

	copy_json(v->out, value);
	*v->sequence = meta->sequence;
	if (meta->status != PSYNC_REPLICA_OK)
		snprintf(v->status, v->status_size, "%s", psync_replica_status_name(meta->status));
}

static bool
hook_row_value(void *ctx, int source, const char *key, json_text *out, int64_t *sequence,
			   char *status, size_t status_size)
{
	value_visit v = {out, sequence, status, status_size};
	watched_table *t = table_of(source);

	(void) ctx;
	if (t != NULL)
	{
		/* values are read once the table is loaded: the handle is ours then */
		if (atomic_load(&t->state) != TABLE_LIVE)
		{
			snprintf(status, status_size, "(loading)");
			return false;
		}
		return psync_collection_get(t->collection, key, visit_member, &v);
	}
	for (watched *e = w.head; e != NULL; e = e->next)
		if (strcmp(e->key, key) == 0)
		{
			psync_replica_get(e->replica, visit_replica, &v);
			return true;
		}
	return false;
}

static void
table_line(watched_table *t, double rate, char *buf, size_t size)
{
	psync_collection_counters c;
	char		rows[32],
				applied[32],
				refetches[32],
				err[256] = "";
	int			state = atomic_load(&t->state);

	if (state == TABLE_LOADING)
	{
		snprintf(buf, size, "%s:*  loading... %s rows so far", t->pattern,
				 view_grouped(view_loaded(w.view, t->source), rows, sizeof(rows)));
		return;
	}
	if (state == TABLE_FAILED)
	{
		snprintf(buf, size, "%s", t->error);
		return;
	}
	psync_collection_stats(t->collection, &c);
	psync_collection_last_error(t->collection, err, sizeof(err));
	snprintf(buf, size, "%s:*  %s  rows %s  changes/s %.1f  applied %s  refetches %s"
			 "  reloads %" PRIu64 "  gaps %" PRIu64 "  parse errors %" PRIu64 "%s%s",
			 t->pattern,
			 psync_collection_wait_idle(t->collection, 0) == PSYNC_OK ? "live" : "catching up",
			 view_grouped(psync_collection_count(t->collection), rows, sizeof(rows)), rate,
			 view_grouped(c.applied, applied, sizeof(applied)),
			 view_grouped(c.row_refetches, refetches, sizeof(refetches)),
			 c.loads > 0 ? c.loads - 1 : 0, c.gaps, c.parse_errors,
			 err[0] ? "  last error: " : "", err);
}

static void
keys_line(double rate, char *buf, size_t size)
{
	psync_replica_counters total = {0};
	size_t		ok = 0;
	char		applied[32],
				refetches[32];

	for (watched *e = w.head; e != NULL; e = e->next)
	{
		psync_replica_counters c;
		psync_replica_metadata m;

		psync_replica_stats(e->replica, &c);
		psync_replica_meta(e->replica, &m);
		total.applied += c.applied;
		total.refetches += c.refetches;
		total.gaps += c.gaps;
		total.parse_errors += c.parse_errors;
		ok += m.status == PSYNC_REPLICA_OK;
	}
	snprintf(buf, size, "keys  %zu watched, %zu ok  changes/s %.1f  applied %s  refetches %s"
			 "  gaps %" PRIu64 "  parse errors %" PRIu64,
			 w.count, ok, rate, view_grouped(total.applied, applied, sizeof(applied)),
			 view_grouped(total.refetches, refetches, sizeof(refetches)), total.gaps,
			 total.parse_errors);
}

static void
hook_source_line(void *ctx, int source, double rate, char *buf, size_t size)
{
	watched_table *t = table_of(source);

	(void) ctx;
	if (t != NULL)
		table_line(t, rate, buf, size);
	else
		keys_line(rate, buf, size);
}

static void
hook_link_line(void *ctx, char *buf, size_t size)
{
	unsigned	lost = atomic_load(&w.lost);
	char		err[256] = "",
				at[16];

	(void) ctx;
	psync_transport_last_error(w.transport, err, sizeof(err));
	if (lost == 0)
		snprintf(buf, size, "NATS %s%s%s%s", w.nats_url,
				 w.link_known ? "" : "  (link losses not followed)", err[0] ? "  error: " : "", err);
	else
	{
		time_t		t = (time_t) atomic_load(&w.lost_at);
		struct tm	tm;

		localtime_r(&t, &tm);
		strftime(at, sizeof(at), "%H:%M:%S", &tm);
		snprintf(buf, size, "NATS %s  messages lost %ux (reconnect or slow consumer), last %s,"
				 " reloaded%s%s", w.nats_url, lost, at, err[0] ? "  error: " : "", err);
	}
}

static int
hook_failed(void *ctx)
{
	(void) ctx;
	for (watched_table *t = w.tables; t != NULL; t = t->next)
		if (atomic_load(&t->state) == TABLE_FAILED)
			return 2;
	return 0;
}

/* ---- main ---- */

/*
 * The sync names of para_sync.synced_tables that pass where,
 * NULL-terminated (static; empty when the database does not say: a 0.1
 * schema has only the 'key' layout, one before 0.4 no scopes).
 */
static const char *const *
synced_table_names(const char *conninfo, const char *where)
{
	static const char *none[1] = {NULL};
	const char **names;
	PGconn	   *c = PQconnectdb(conninfo);
	PGresult   *r = NULL;
	char		query[256];
	int			n;

	snprintf(query, sizeof(query), "SELECT sync_name FROM para_sync.synced_tables WHERE %s", where);
	if (PQstatus(c) == CONNECTION_OK)
		r = PQexec(c, query);
	if (PQresultStatus(r) != PGRES_TUPLES_OK ||
		(names = calloc((size_t) PQntuples(r) + 1, sizeof(char *))) == NULL)
	{
		PQclear(r);
		PQfinish(c);
		return none;
	}
	n = PQntuples(r);
	for (int i = 0; i < n; i++)
		names[i] = strdup(PQgetvalue(r, i, 0));
	PQclear(r);
	PQfinish(c);
	return names;
}

static void
usage(FILE *f)
{
	fprintf(f,
			"usage: para-sync-watch [options] KEY|TABLE:*|TABLE@SCOPE:* ...\n"
			"  -s, --nats URL       NATS server (default $NATS_URL or nats://127.0.0.1:4222)\n"
			"  -d, --db CONNINFO    libpq connection string for refetches (default: libpq's PG* env)\n"
			"  -p, --prefix PREFIX  subject prefix, as para_sync.subject_prefix (default synced)\n"
			"  -l, --lines          one line per change (the default when stdout is not a terminal)\n"
			"  -k, --keep-deleted S seconds a deleted row stays on the screen, marked (default 60)\n"
			"  -h, --help\n"
			"TABLE@SCOPE:* follows one scope of a table with a scope, e.g. 'orders@acme:*'.\n"
			"On a terminal: Up/Down, PgUp/PgDn, Home/End scroll, / goes to a key, n to the newest\n"
			"change, q quits.\n");
}

static void
shutdown_all(void)
{
	while (w.head != NULL)
	{
		watched    *e = w.head;

		w.head = e->next;
		psync_replica_destroy(e->replica);
		free(e->key);
		free(e);
	}
	while (w.tables != NULL)
	{
		watched_table *t = w.tables;

		w.tables = t->next;
		if (t->started)
			pthread_join(t->starter, NULL);
		if (atomic_load(&t->state) == TABLE_LIVE)
			psync_collection_destroy(t->collection);
		free(t->pattern);
		free(t);
	}
	psync_pq_loader_destroy(w.loader);
	psync_refetcher_destroy(w.refetcher);
	psync_transport_destroy(w.transport);
	view_free(w.view);
}

static bool
is_pattern(const char *arg)
{
	size_t		len = strlen(arg);

	return len > 2 && strcmp(arg + len - 2, ":*") == 0;
}

/* The tables named, in argument order, numbered as view sources 0, 1, ... */
static bool
list_tables(int argc, char **argv)
{
	watched_table **tail = &w.tables;

	for (int i = optind; i < argc; i++)
	{
		watched_table *t;

		if (!is_pattern(argv[i]))
			continue;
		if ((t = calloc(1, sizeof(*t))) == NULL || (t->pattern = strdup(argv[i])) == NULL)
		{
			free(t);
			return false;
		}
		t->pattern[strlen(t->pattern) - 2] = '\0';	/* TABLE or TABLE@SCOPE */
		t->source = w.ntables++;
		atomic_init(&t->state, TABLE_LOADING);
		*tail = t;
		tail = &t->next;
	}
	return true;
}

static watched_table *
table_named(const char *arg)
{
	for (watched_table *t = w.tables; t != NULL; t = t->next)
		if (strncmp(t->pattern, arg, strlen(arg) - 2) == 0 && t->pattern[strlen(arg) - 2] == '\0' &&
			!t->started && atomic_load(&t->state) == TABLE_LOADING)
			return t;
	return NULL;
}

/* Every argument's replica or collection; false (after a message) on failure. */
static bool
watch_all(int argc, char **argv)
{
	for (int i = optind; i < argc; i++)
	{
		watched_table *t = is_pattern(argv[i]) ? table_named(argv[i]) : NULL;
		bool		ok = is_pattern(argv[i]) ? t != NULL && watch_table(t) : watch_key(argv[i]);

		if (!ok)
		{
			fprintf(stderr, "para-sync-watch: cannot watch \"%s\"%s%s\n", argv[i],
					t != NULL && t->error[0] ? ": " : "", t != NULL ? t->error : "");
			return false;
		}
	}
	return true;
}

/* The full-screen view until q or a signal; the exit status. */
static int
run_screen(int argc, char **argv)
{
	psync_subscription_id sub;
	screen_hooks hooks = {
		.nsources = w.ntables + (w.count > 0 ? 1 : 0),
		.row_value = hook_row_value,
		.source_line = hook_source_line,
		.link_line = hook_link_line,
		.failed = hook_failed,
	};
	char		title[512] = "";
	int			rc;

	for (int i = optind; i < argc; i++)
		snprintf(title + strlen(title), sizeof(title) - strlen(title), "%s%s",
				 i > optind ? " " : "", argv[i]);
	/* one more subscriber to the first argument's subject: it sees link losses */
	w.link_known = psync_transport_subscribe(w.transport, argv[optind], on_transport_event,
											 NULL, &sub) == PSYNC_OK;
	rc = screen_run(w.view, &hooks, title, &stop_requested);
	for (watched_table *t = w.tables; t != NULL; t = t->next)
		if (atomic_load(&t->state) == TABLE_FAILED)
			fprintf(stderr, "para-sync-watch: %s\n", t->error);
	for (watched_table *t = w.tables; t != NULL; t = t->next)
		if (atomic_load(&t->state) == TABLE_LOADING)
		{
			/* psync_collection_new cannot be interrupted: leave without waiting */
			fflush(NULL);
			_exit(rc);
		}
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"nats", required_argument, NULL, 's'},
		{"db", required_argument, NULL, 'd'},
		{"prefix", required_argument, NULL, 'p'},
		{"lines", no_argument, NULL, 'l'},
		{"keep-deleted", required_argument, NULL, 'k'},
		{"max-keys", required_argument, NULL, 'm'},	/* before the view scrolled; ignored */
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *conninfo = "";
	double		keep_deleted = 60;
	psync_nats_options no;
	psync_status st;
	sigset_t	own_signals;
	int			opt,
				rc = 0;

	w.nats_url = getenv("NATS_URL") ? getenv("NATS_URL") : "nats://127.0.0.1:4222";
	psync_nats_options_init(&no);
	while ((opt = getopt_long(argc, argv, "s:d:p:lk:m:h", longopts, NULL)) != -1)
	{
		switch (opt)
		{
			case 's': w.nats_url = optarg; break;
			case 'd': conninfo = optarg; break;
			case 'p': no.subject_prefix = optarg; break;
			case 'l': w.lines = true; break;
			case 'k': keep_deleted = strtod(optarg, NULL); break;
			case 'm': break;
			case 'h': usage(stdout); return 0;
			default: usage(stderr); return 2;
		}
	}
	if (optind >= argc)
	{
		usage(stderr);
		return 2;
	}
	if (!isatty(STDOUT_FILENO))
		w.lines = true;
	w.tail = &w.head;
	pthread_mutex_init(&w.print_lock, NULL);
	/*
	 * The threads started from here on (nats.c's, the refetcher's, the
	 * loaders', the table starters') inherit a mask without our signals, so
	 * that Ctrl-C, Ctrl-Z and resizes reach the main thread only.
	 */
	sigemptyset(&own_signals);
	sigaddset(&own_signals, SIGINT);
	sigaddset(&own_signals, SIGTERM);
	sigaddset(&own_signals, SIGWINCH);
	sigaddset(&own_signals, SIGTSTP);
	pthread_sigmask(SIG_BLOCK, &own_signals, NULL);
	if (!list_tables(argc, argv) ||
		(!w.lines && (w.view = view_new(w.ntables + 1, keep_deleted, RECENT_MAX)) == NULL))
	{
		fprintf(stderr, "para-sync-watch: out of memory\n");
		return 1;
	}

	no.url = w.nats_url;
	no.name = "para-sync-watch";
	no.table_layout = synced_table_names(conninfo, "subject_layout = 'table'");
	no.scoped_tables = synced_table_names(conninfo, "scope_columns IS NOT NULL");
	if ((st = psync_nats_transport_connect(&no, &w.transport)) != PSYNC_OK)
	{
		fprintf(stderr, "para-sync-watch: NATS %s: %s\n", w.nats_url, psync_status_text(st));
		return 1;
	}
	if ((st = psync_pq_refetcher_new_conninfo(conninfo, &w.refetcher)) != PSYNC_OK)
	{
		fprintf(stderr, "para-sync-watch: refetcher: %s\n", psync_status_text(st));
		psync_transport_destroy(w.transport);
		return 1;
	}
	if ((st = psync_pq_loader_new_conninfo(conninfo, &w.loader)) != PSYNC_OK)
	{
		fprintf(stderr, "para-sync-watch: loader: %s\n", psync_status_text(st));
		psync_refetcher_destroy(w.refetcher);
		psync_transport_destroy(w.transport);
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	if (!watch_all(argc, argv))
	{
		shutdown_all();
		return 2;
	}
	fprintf(stderr, "para-sync-watch: watching %d argument(s) on %s\n", argc - optind, w.nats_url);
	pthread_sigmask(SIG_UNBLOCK, &own_signals, NULL);
	if (!w.lines)
		rc = run_screen(argc, argv);
	else
		while (!stop_requested)
			usleep(100000);
	shutdown_all();
	return rc;
}
