/*
 * psync_sub.c — test/bench subscriber for the para_sync publisher: records
 * every NATS message it receives.
 *
 *   psync_sub -u URL [-s SUBJECT] [-o FILE] [-r READYFILE]
 *             [-n COUNT] [-q|-p] [-l] [-j STREAM]
 *
 *   -s  subject to subscribe to (default "synced.>")
 *   -o  write one line per message: "<key> <sequence> <op> <hex envelope>"
 *       (default stdout; the file is flushed after every message)
 *   -r  create READYFILE once the subscription is registered with the server
 *   -n  exit after COUNT messages, printing "received N in S s (R msg/s)"
 *   -q  do not write lines (benchmarks)
 *   -p  write lines for people: "<key> #<sequence> <op> <value as JSON-ish>"
 *   -l  latency: each envelope's value has a timestamptz column "ts" (set by
 *       the writer); print p50/p90/p99/max of receive time - ts at exit
 *   -w  reconnect wait in ms (default 50); after every reconnect the
 *       file READYFILE.reconnected is created
 *   -C  create JetStream stream STREAM for SUBJECT (file storage), exit
 *   -R  with -C: number of replicas (default 1)
 *   -L  print the server name of JetStream stream STREAM's leader, exit
 *   -D  delete JetStream stream STREAM (already gone is success), exit
 *   -j  instead of subscribing, read every message stored in JetStream stream
 *       STREAM (from its first), write the lines, and exit
 *
 * Exits on SIGTERM/SIGINT after flushing.  Not part of the extension.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <nats/nats.h>

static FILE *out;
static bool quiet = false;
static bool pretty = false;
static bool latency = false;
static long want = -1;
static atomic_long received;
static volatile sig_atomic_t stop = 0;
static double first_at = 0,
			last_at = 0;
static int64_t *lat_us = NULL;
static long lat_n = 0,
			lat_cap = 0;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
on_signal(int sig)
{
	stop = 1;
}

static bool
str_eq(const msgpack_object *o, const char *s)
{
	return o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
		memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

static void
record(const char *data, int len)
{
	msgpack_unpacked up;
	size_t		off = 0;
	const char *key = "?";
	int			key_len = 1;
	const char *op = "?";
	int			op_len = 1;
	uint64_t	seq = 0;
	double		t = now_s();

	msgpack_unpacked_init(&up);
	if (msgpack_unpack_next(&up, data, len, &off) == MSGPACK_UNPACK_SUCCESS &&
		up.data.type == MSGPACK_OBJECT_MAP)
	{
		msgpack_object_map *m = &up.data.via.map;

		for (uint32_t i = 0; i < m->size; i++)
		{
			msgpack_object *k = &m->ptr[i].key;
			msgpack_object *v = &m->ptr[i].val;

			if (str_eq(k, "key") && v->type == MSGPACK_OBJECT_STR)
			{
				key = v->via.str.ptr;
				key_len = v->via.str.size;
			}
			else if (str_eq(k, "op") && v->type == MSGPACK_OBJECT_STR)
			{
				op = v->via.str.ptr;
				op_len = v->via.str.size;
			}
			else if (str_eq(k, "sequence") && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
				seq = v->via.u64;
			else if (latency && str_eq(k, "value") && v->type == MSGPACK_OBJECT_MAP)
			{
				for (uint32_t j = 0; j < v->via.map.size; j++)
				{
					msgpack_timestamp ts;

					if (str_eq(&v->via.map.ptr[j].key, "ts") &&
						msgpack_object_to_timestamp(&v->via.map.ptr[j].val, &ts))
					{
						int64_t		us = (int64_t) ((t - ts.tv_sec - ts.tv_nsec / 1e9) * 1e6);

						if (lat_n == lat_cap)
						{
							lat_cap = lat_cap ? lat_cap * 2 : 65536;
							lat_us = realloc(lat_us, lat_cap * sizeof(int64_t));
						}
						lat_us[lat_n++] = us;
					}
				}
			}
		}
	}
	if (pretty)
	{
		char		value[1024] = "";
		msgpack_object_map *m = up.data.type == MSGPACK_OBJECT_MAP ? &up.data.via.map : NULL;

		for (uint32_t i = 0; m != NULL && i < m->size; i++)
			if (str_eq(&m->ptr[i].key, "value"))
				msgpack_object_print_buffer(value, sizeof(value), m->ptr[i].val);
		fprintf(out, "%.*s #%" PRIu64 " %.*s %s\n", key_len, key, seq, op_len, op, value);
		fflush(out);
	}
	else if (!quiet)
	{
		fprintf(out, "%.*s %" PRIu64 " %.*s ", key_len, key, seq, op_len, op);
		for (int i = 0; i < len; i++)
			fprintf(out, "%02x", (unsigned char) data[i]);
		fputc('\n', out);
		fflush(out);
	}
	msgpack_unpacked_destroy(&up);
	if (first_at == 0)
		first_at = t;
	last_at = t;
	if (atomic_fetch_add(&received, 1) + 1 == want)
		stop = 1;
}

static void
on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	record(natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
	natsMsg_Destroy(msg);
}

static const char *ready = NULL;

static void
on_reconnected(natsConnection *nc, void *closure)
{
	char		path[4096];
	FILE	   *f;

	if (ready == NULL)
		return;
	snprintf(path, sizeof(path), "%s.reconnected", ready);
	f = fopen(path, "w");
	if (f)
		fclose(f);
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t		x = *(const int64_t *) a,
				y = *(const int64_t *) b;

	return (x > y) - (x < y);
}

static void
die(const char *what, natsStatus s)
{
	fprintf(stderr, "psync_sub: %s: %s\n", what, natsStatus_GetText(s));
	exit(1);
}

static int
dump_stream(natsConnection *nc, const char *stream, const char *subject)
{
	jsCtx	   *js = NULL;
	jsStreamInfo *si = NULL;
	natsSubscription *sub = NULL;
	jsSubOptions so;
	natsStatus	s;
	uint64_t	total;

	if ((s = natsConnection_JetStream(&js, nc, NULL)) != NATS_OK)
		die("jetstream", s);
	if ((s = js_GetStreamInfo(&si, js, stream, NULL, NULL)) != NATS_OK)
		die("stream info", s);
	total = si->State.Msgs;
	jsStreamInfo_Destroy(si);
	jsSubOptions_Init(&so);
	so.Stream = stream;
	so.Ordered = true;
	if (total > 0)
	{
		if ((s = js_SubscribeSync(&sub, js, subject, NULL, &so, NULL)) != NATS_OK)
			die("subscribe", s);
		for (uint64_t i = 0; i < total; i++)
		{
			natsMsg    *msg = NULL;

			if ((s = natsSubscription_NextMsg(&msg, sub, 10000)) != NATS_OK)
				die("next message", s);
			record(natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
			natsMsg_Destroy(msg);
		}
		natsSubscription_Destroy(sub);
	}
	jsCtx_Destroy(js);
	fprintf(stderr, "psync_sub: stream %s holds %" PRIu64 " messages\n", stream, total);
	return 0;
}

static int	replicas = 1;

static int
print_leader(natsConnection *nc, const char *stream)
{
	jsCtx	   *js = NULL;
	jsStreamInfo *si = NULL;
	natsStatus	s;

	if ((s = natsConnection_JetStream(&js, nc, NULL)) != NATS_OK)
		die("jetstream", s);
	if ((s = js_GetStreamInfo(&si, js, stream, NULL, NULL)) != NATS_OK)
	{
		fprintf(stderr, "psync_sub: stream %s: %s\n", stream, natsStatus_GetText(s));
		return 1;
	}
	printf("%s\n", si->Cluster && si->Cluster->Leader ? si->Cluster->Leader : "");
	jsStreamInfo_Destroy(si);
	jsCtx_Destroy(js);
	return 0;
}

static int
manage_stream(natsConnection *nc, const char *stream, const char *subject,
			  bool create)
{
	jsCtx	   *js = NULL;
	jsStreamConfig cfg;
	jsStreamInfo *si = NULL;
	jsErrCode	jerr = 0;
	natsStatus	s;

	if ((s = natsConnection_JetStream(&js, nc, NULL)) != NATS_OK)
		die("jetstream", s);
	if (create)
	{
		jsStreamConfig_Init(&cfg);
		cfg.Name = stream;
		cfg.Subjects = &subject;
		cfg.SubjectsLen = 1;
		cfg.Storage = js_FileStorage;
		cfg.Replicas = replicas;
		s = js_AddStream(&si, js, &cfg, NULL, &jerr);
		jsStreamInfo_Destroy(si);
	}
	else
	{
		s = js_DeleteStream(js, stream, NULL, &jerr);
		/*
		 * Gone is what was asked: an earlier attempt whose reply was lost
		 * (a cluster electing leaders) may have deleted it already.
		 */
		if (s != NATS_OK && jerr == JSStreamNotFoundErr)
			s = NATS_OK;
	}
	if (s != NATS_OK)
	{
		fprintf(stderr, "psync_sub: stream %s: %s (%d)\n", stream, natsStatus_GetText(s), (int) jerr);
		return 1;
	}
	jsCtx_Destroy(js);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *url = "nats://127.0.0.1:4222";
	const char *subject = "synced.>";
	const char *stream = NULL;
	const char *manage = NULL;
	const char *leader_of = NULL;
	bool		create = false;
	natsOptions *opts = NULL;
	int64_t		reconnect_wait = 50;
	natsConnection *nc = NULL;
	natsSubscription *sub = NULL;
	natsStatus	s;
	int			c;

	out = stdout;
	while ((c = getopt(argc, argv, "u:s:o:r:n:qplj:w:C:D:R:L:")) != -1)
	{
		switch (c)
		{
			case 'u':
				url = optarg;
				break;
			case 's':
				subject = optarg;
				break;
			case 'o':
				out = fopen(optarg, "a");
				if (out == NULL)
				{
					perror(optarg);
					return 1;
				}
				break;
			case 'r':
				ready = optarg;
				break;
			case 'n':
				want = atol(optarg);
				break;
			case 'q':
				quiet = true;
				break;
			case 'p':
				pretty = true;
				break;
			case 'l':
				latency = true;
				break;
			case 'j':
				stream = optarg;
				break;
			case 'C':
			case 'D':
				manage = optarg;
				create = (c == 'C');
				break;
			case 'L':
				leader_of = optarg;
				break;
			case 'R':
				replicas = atoi(optarg);
				break;
			case 'w':
				reconnect_wait = atol(optarg);
				break;
			default:
				fprintf(stderr, "usage: psync_sub -u URL [-s SUBJECT] [-o FILE] [-r READYFILE] [-n COUNT] [-q|-p] [-l] [-w MS] [-j STREAM | -C STREAM [-R N] | -D STREAM | -L STREAM]\n");
				return 2;
		}
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);

	/* -u may list several servers, comma-separated */
	{
		static const char *servers[16];
		int			nservers = 0;
		char	   *list = strdup(url);

		for (char *tok = strtok(list, ", "); tok != NULL && nservers < 16; tok = strtok(NULL, ", "))
			servers[nservers++] = tok;
		if ((s = natsOptions_Create(&opts)) != NATS_OK ||
			(s = natsOptions_SetServers(opts, servers, nservers)) != NATS_OK)
			die("options", s);
	}
	if ((s = natsOptions_SetMaxReconnect(opts, -1)) != NATS_OK ||
		(s = natsOptions_SetReconnectWait(opts, reconnect_wait)) != NATS_OK ||
		(s = natsOptions_SetReconnectedCB(opts, on_reconnected, NULL)) != NATS_OK)
		die("options", s);
	if ((s = natsConnection_Connect(&nc, opts)) != NATS_OK)
		die("connect", s);
	if (leader_of != NULL)
		return print_leader(nc, leader_of);
	if (manage != NULL)
		return manage_stream(nc, manage, subject, create);
	if (stream != NULL)
		return dump_stream(nc, stream, subject);

	if ((s = natsConnection_Subscribe(&sub, nc, subject, on_msg, NULL)) != NATS_OK)
		die("subscribe", s);
	natsSubscription_SetPendingLimits(sub, -1, -1);
	if ((s = natsConnection_Flush(nc)) != NATS_OK)
		die("flush", s);
	if (ready != NULL)
	{
		FILE	   *f = fopen(ready, "w");

		if (f)
			fclose(f);
	}
	while (!stop)
		usleep(2000);

	natsSubscription_Unsubscribe(sub);
	if (want > 0 || latency)
	{
		long		n = atomic_load(&received);

		printf("received %ld in %.3f s (%.0f msg/s)\n", n, last_at - first_at,
			   last_at > first_at ? (n - 1) / (last_at - first_at) : 0.0);
	}
	if (latency && lat_n > 0)
	{
		qsort(lat_us, lat_n, sizeof(int64_t), cmp_i64);
		printf("latency_us n=%ld p50=%" PRId64 " p90=%" PRId64 " p99=%" PRId64 " max=%" PRId64 "\n",
			   lat_n, lat_us[lat_n / 2], lat_us[lat_n * 9 / 10],
			   lat_us[lat_n * 99 / 100], lat_us[lat_n - 1]);
	}
	fflush(out);
	natsSubscription_Destroy(sub);
	natsConnection_Destroy(nc);
	return 0;
}
