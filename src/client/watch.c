/*
 * watch.c — para-sync-watch: live replicas of keys or whole tables, shown
 * in a terminal.
 *
 *   para-sync-watch [-s NATS_URL] [-d CONNINFO] [-p PREFIX] [--lines]
 *                   [--max-keys N] KEY|TABLE:* ...
 *
 * Holds a libparasync replica (NATS transport, libpq refetcher, initial
 * refetch) per key named, and a collection (every row, loaded with
 * para_sync.snapshot_table() and then kept live) per "TABLE:*" pattern.
 * On a terminal the table of keys is redrawn in place (at most 10 times a
 * second); otherwise, or with --lines, one line is printed per change.
 * Tables in the 'table' subject layout (looked up in para_sync.synced_tables
 * at start) are followed on "<prefix>.<table>.>", filtered by the server.
 *
 * Threads: change callbacks run on nats.c, refetcher and collection loader
 * threads; they only print (lines mode, under print_lock) or raise the
 * atomic "dirty" flag.  The main thread owns the lists of watched keys and
 * tables and does all drawing.
 */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "para_sync/client.h"
#include "watch_json.h"

/* Longest value printed in line mode (bytes of JSON); longer ones end "...". */
#define LINE_VALUE_MAX 4096

typedef struct watched
{
	char	   *key;
	psync_replica *replica;
	struct watched *next;
} watched;

typedef struct watched_table
{
	char	   *pattern;
	psync_collection *collection;
	struct watched_table *next;
} watched_table;

static struct
{
	psync_transport *transport;
	psync_refetcher *refetcher;
	psync_pq_loader *loader;
	watched_table *tables;
	bool		lines;
	size_t		max_keys;
	/* main thread only */
	watched    *head;
	watched   **tail;
	size_t		count;
	/* anywhere */
	pthread_mutex_t print_lock;
	atomic_bool dirty;
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

/* A collection's member changed: a line like a replica's. */
static void
on_member_change(void *ctx, psync_collection *collection, psync_member_change change,
				 const char *key, size_t key_len, const void *value, int64_t sequence)
{
	(void) ctx;
	(void) collection;
	if (w.lines)
	{
		static const json_text null_json = {"null", 4, 5};
		psync_replica_metadata meta = {.sequence = sequence, .status = PSYNC_REPLICA_OK};
		char		k[PSYNC_MAX_KEY_LEN + 1];

		snprintf(k, sizeof(k), "%.*s", (int) key_len, key);
		print_line(k, change == PSYNC_MEMBER_REMOVED ? &null_json : value, &meta);
	}
	atomic_store(&w.dirty, true);
}

static void
on_change(void *ctx, psync_replica *replica, const void *value,
		  const psync_replica_metadata *meta)
{
	(void) replica;
	if (w.lines)
		print_line(ctx, value, meta);
	atomic_store(&w.dirty, true);
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
	psync_replica_options_init(&o);
	o.key = entry->key;
	o.schema = (psync_schema) {parse_json, free_json, NULL};
	o.transport = w.transport;
	o.refetch = psync_pq_refetch_fn();
	o.refetch_ctx = psync_pq_refetch_ctx(w.refetcher);
	o.initial_refetch = true;
	o.on_change = on_change;
	o.on_change_ctx = entry->key;
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

/* Every row of the table, from the start, then live: a collection. */
static bool
watch_table(const char *pattern)
{
	watched_table *t = calloc(1, sizeof(*t));
	psync_collection_options o;
	psync_status st;
	char		err[512];

	if (t == NULL || (t->pattern = strdup(pattern)) == NULL)
	{
		free(t);
		return false;
	}
	t->pattern[strlen(t->pattern) - 2] = '\0';	/* the sync name */
	psync_collection_options_init(&o);
	o.table = t->pattern;
	o.schema = (psync_schema) {parse_json, free_json, NULL};
	o.transport = w.transport;
	o.load_page = psync_pq_load_page_fn();
	o.load_ctx = psync_pq_load_page_ctx(w.loader);
	o.refetch = psync_pq_refetch_fn();
	o.refetch_ctx = psync_pq_refetch_ctx(w.refetcher);
	o.on_change = on_member_change;
	if ((st = psync_collection_new(&o, &t->collection)) != PSYNC_OK)
	{
		psync_last_error(err, sizeof(err));
		fprintf(stderr, "para-sync-watch: %s: %s: %s\n", pattern, psync_status_text(st), err);
		free(t->pattern);
		free(t);
		return false;
	}
	t->next = w.tables;
	w.tables = t;
	return true;
}

/* ---- drawing (main thread) ---- */

typedef struct row_ctx
{
	char	   *buf;
	size_t		size;
	int			width;
	const char *key;
	psync_replica_counters stats;
} row_ctx;

static void
format_row(void *ctx, const void *value, const psync_replica_metadata *meta)
{
	row_ctx    *r = ctx;
	const char *v = value ? ((const json_text *) value)->data : "-";

	snprintf(r->buf, r->size, "%-24s %8" PRId64 "  %-10s %7" PRIu64 " %5" PRIu64 " %4" PRIu64
			 " %4" PRIu64 " %5" PRIu64 "  %s",
			 r->key, meta->sequence, psync_replica_status_name(meta->status),
			 r->stats.applied, r->stats.ignored_stale, r->stats.gaps,
			 r->stats.parse_errors, r->stats.refetches, v);
	if (r->width > 0 && strlen(r->buf) > (size_t) r->width)
		r->buf[r->width] = '\0';
}

typedef struct member_ctx
{
	char	   *buf;
	size_t		size;
	int			width;
	size_t		shown;
	psync_collection_counters stats;
} member_ctx;

/* One collection member as a row (at most --max-keys per table). */
static void
format_member(void *ctx, const char *key, size_t key_len, const void *value, int64_t seq)
{
	member_ctx *m = ctx;
	const char *v = value ? ((const json_text *) value)->data : "-";

	if (m->shown >= w.max_keys)
		return;
	m->shown++;
	snprintf(m->buf, m->size, "%-24.*s %8" PRId64 "  %-10s %7" PRIu64 " %5" PRIu64 " %4" PRIu64
			 " %4" PRIu64 " %5" PRIu64 "  %s",
			 (int) key_len, key, seq, "ok", m->stats.applied, m->stats.ignored_stale,
			 m->stats.gaps, m->stats.parse_errors, m->stats.row_refetches, v);
	if (m->width > 0 && strlen(m->buf) > (size_t) m->width)
		m->buf[m->width] = '\0';
	printf("%s\x1b[K\n", m->buf);
}

static int
terminal_width(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	return 120;
}

static void
redraw(const char *nats_url)
{
	static char line[8192];
	int			width = terminal_width();

	printf("\x1b[H");
	snprintf(line, sizeof(line), "para-sync-watch  %s  %zu keys%s  (Ctrl-C quits)", nats_url,
			 w.count, w.tables ? "  + tables" : "");
	printf("%.*s\x1b[K\n\x1b[K\n", width, line);
	snprintf(line, sizeof(line), "%-24s %8s  %-10s %7s %5s %4s %4s %5s  %s", "KEY", "SEQ",
			 "STATUS", "APPLIED", "STALE", "GAPS", "ERR", "REFET", "VALUE");
	printf("%.*s\x1b[K\n", width, line);
	for (watched *e = w.head; e != NULL; e = e->next)
	{
		row_ctx		r = {line, sizeof(line), width, e->key};

		psync_replica_stats(e->replica, &r.stats);
		psync_replica_get(e->replica, format_row, &r);
		printf("%s\x1b[K\n", line);
	}
	for (watched_table *t = w.tables; t != NULL; t = t->next)
	{
		member_ctx	m = {line, sizeof(line), width, 0};

		psync_collection_stats(t->collection, &m.stats);
		psync_collection_foreach(t->collection, format_member, &m);
		if (m.shown < psync_collection_count(t->collection))
			printf("%s:* ... %zu more rows (--max-keys)\x1b[K\n", t->pattern,
				   psync_collection_count(t->collection) - m.shown);
	}
	printf("\x1b[J");
	fflush(stdout);
}

/* ---- main ---- */

/*
 * The sync names in the 'table' subject layout, NULL-terminated (static;
 * empty when the database does not say: a 0.1 schema has only 'key').
 */
static const char *const *
table_layout_names(const char *conninfo)
{
	static const char *none[1] = {NULL};
	const char **names;
	PGconn	   *c = PQconnectdb(conninfo);
	PGresult   *r = NULL;
	int			n;

	if (PQstatus(c) == CONNECTION_OK)
		r = PQexec(c, "SELECT sync_name FROM para_sync.synced_tables"
				   " WHERE subject_layout = 'table'");
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
			"usage: para-sync-watch [options] KEY|TABLE:* ...\n"
			"  -s, --nats URL       NATS server (default $NATS_URL or nats://127.0.0.1:4222)\n"
			"  -d, --db CONNINFO    libpq connection string for refetches (default: libpq's PG* env)\n"
			"  -p, --prefix PREFIX  subject prefix, as para_sync.subject_prefix (default synced)\n"
			"  -l, --lines          one line per change (the default when stdout is not a terminal)\n"
			"  -m, --max-keys N     rows of a TABLE:* shown on a terminal (default 1000)\n"
			"  -h, --help\n");
}

static void
shutdown_all(void)
{
	while (w.head != NULL)
	{
		watched    *e = w.head;

		w.head = e->next;
		psync_replica_dispose(e->replica);
		free(e->key);
		free(e);
	}
	while (w.tables != NULL)
	{
		watched_table *t = w.tables;

		w.tables = t->next;
		psync_collection_destroy(t->collection);
		free(t->pattern);
		free(t);
	}
	psync_pq_loader_destroy(w.loader);
	psync_refetcher_destroy(w.refetcher);
	psync_transport_destroy(w.transport);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"nats", required_argument, NULL, 's'},
		{"db", required_argument, NULL, 'd'},
		{"prefix", required_argument, NULL, 'p'},
		{"lines", no_argument, NULL, 'l'},
		{"max-keys", required_argument, NULL, 'm'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *nats_url = getenv("NATS_URL") ? getenv("NATS_URL") : "nats://127.0.0.1:4222";
	const char *conninfo = "";
	psync_nats_options no;
	psync_status st;
	int			opt;

	psync_nats_options_init(&no);
	w.max_keys = 1000;
	while ((opt = getopt_long(argc, argv, "s:d:p:lm:h", longopts, NULL)) != -1)
	{
		switch (opt)
		{
			case 's': nats_url = optarg; break;
			case 'd': conninfo = optarg; break;
			case 'p': no.subject_prefix = optarg; break;
			case 'l': w.lines = true; break;
			case 'm': w.max_keys = strtoul(optarg, NULL, 10); break;
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

	no.url = nats_url;
	no.name = "para-sync-watch";
	no.table_layout = table_layout_names(conninfo);
	if ((st = psync_nats_transport_connect(&no, &w.transport)) != PSYNC_OK)
	{
		fprintf(stderr, "para-sync-watch: NATS %s: %s\n", nats_url, psync_status_text(st));
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

	for (int i = optind; i < argc; i++)
	{
		size_t		len = strlen(argv[i]);

		if (len > 2 && strcmp(argv[i] + len - 2, ":*") == 0)
			st = watch_table(argv[i]) ? PSYNC_OK : PSYNC_ERR_INVALID_ARGUMENT;
		else
		{
			st = watch_key(argv[i]) ? PSYNC_OK : PSYNC_ERR_INVALID_ARGUMENT;
		}
		if (st != PSYNC_OK)
		{
			fprintf(stderr, "para-sync-watch: cannot watch \"%s\": %s\n", argv[i], psync_status_text(st));
			shutdown_all();
			return 2;
		}
	}
	fprintf(stderr, "para-sync-watch: watching %d argument(s) on %s\n", argc - optind, nats_url);
	if (!w.lines)
		printf("\x1b[2J");
	atomic_store(&w.dirty, true);
	while (!stop_requested)
	{
		if (!w.lines && atomic_exchange(&w.dirty, false))
			redraw(nats_url);
		usleep(100000);
	}
	shutdown_all();
	return 0;
}
