/*
 * nats_ceiling.c — what nats-server and nats.c manage on this machine
 * without PostgreSQL: publish N messages of 161 bytes (the bench's average
 * envelope) to synced.bench:<1..10000>, as the publisher would, and print
 * the rate until the last one was confirmed.  Run by bench/nats-ceiling.
 *
 *   nats_ceiling URL core N          publish, flush every 5,000
 *   nats_ceiling URL js N W          JetStream: Nats-Msg-Id and
 *                                    Nats-Expected-Stream headers, a reply
 *                                    subject per message on an inbox of our
 *                                    own, at most W unacknowledged
 *   nats_ceiling URL js-batch N W    the same, W at a time: all acks, then
 *                                    the next W (the publisher's pattern)
 *   nats_ceiling URL js-async N W    js_PublishMsgAsync, MaxPending W
 *
 * NOID=1 leaves the headers out (no duplicate detection).  Not part of the
 * extension.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

#define MSG_LEN 161
#define KEYS 10000
#define FLUSH_EVERY 5000

static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void
fail(const char *what, natsStatus s)
{
	fprintf(stderr, "nats_ceiling: %s: %s\n", what, natsStatus_GetText(s));
	exit(1);
}

static natsMsg *
make_msg(int i, const char *reply, const char *data)
{
	char		subject[64],
				id[64];
	natsMsg    *m = NULL;
	natsStatus	s;

	snprintf(subject, sizeof(subject), "synced.bench:%d", i % KEYS + 1);
	snprintf(id, sizeof(id), "bench:%d:%d", i % KEYS + 1, i);
	s = natsMsg_Create(&m, subject, reply, data, MSG_LEN);
	if (s == NATS_OK && getenv("NOID") == NULL)
	{
		s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
		if (s == NATS_OK)
			s = natsMsgHeader_Set(m, "Nats-Expected-Stream", "BENCH");
	}
	if (s != NATS_OK)
		fail("natsMsg_Create", s);
	return m;
}

static void
run_core(natsConnection *nc, int n, const char *data)
{
	char		subject[64];
	natsStatus	s;

	for (int i = 0; i < n; i++)
	{
		snprintf(subject, sizeof(subject), "synced.bench:%d", i % KEYS + 1);
		if ((s = natsConnection_Publish(nc, subject, data, MSG_LEN)) != NATS_OK)
			fail("publish", s);
		if ((i + 1) % FLUSH_EVERY == 0 && (s = natsConnection_Flush(nc)) != NATS_OK)
			fail("flush", s);
	}
	if ((s = natsConnection_Flush(nc)) != NATS_OK)
		fail("flush", s);
}

static void
run_js(natsConnection *nc, int n, int window, bool batchwise, const char *data)
{
	natsInbox  *inbox = NULL;
	natsSubscription *sub = NULL;
	char		wildcard[128],
				reply[128];
	int			sent = 0,
				acked = 0;
	natsStatus	s;

	if ((s = natsInbox_Create(&inbox)) != NATS_OK)
		fail("inbox", s);
	snprintf(wildcard, sizeof(wildcard), "%s.>", (const char *) inbox);
	if ((s = natsConnection_SubscribeSync(&sub, nc, wildcard)) != NATS_OK ||
		(s = natsSubscription_SetPendingLimits(sub, -1, -1)) != NATS_OK)
		fail("subscribe", s);
	while (acked < n)
	{
		while (sent < n && (batchwise ? sent == acked || sent % window != 0
							: sent - acked < window))
		{
			natsMsg    *m;

			snprintf(reply, sizeof(reply), "%s.%d", (const char *) inbox, sent);
			m = make_msg(sent, reply, data);
			if ((s = natsConnection_PublishMsg(nc, m)) != NATS_OK)
				fail("publish", s);
			natsMsg_Destroy(m);
			sent++;
		}
		{
			natsMsg    *ack = NULL;

			if ((s = natsSubscription_NextMsg(&ack, sub, 10000)) != NATS_OK)
				fail("ack", s);
			if (natsMsg_GetData(ack) == NULL || strstr(natsMsg_GetData(ack), "\"seq\"") == NULL)
			{
				fprintf(stderr, "nats_ceiling: not stored: %s\n", natsMsg_GetData(ack));
				exit(1);
			}
			natsMsg_Destroy(ack);
			acked++;
		}
	}
	natsSubscription_Destroy(sub);
	natsInbox_Destroy(inbox);
}

static void
run_js_async(natsConnection *nc, int n, int window, const char *data)
{
	jsCtx	   *js = NULL;
	jsOptions	jo;
	jsPubOptions po;
	natsStatus	s;

	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = window;
	if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK)
		fail("JetStream context", s);
	for (int i = 0; i < n; i++)
	{
		natsMsg    *m = make_msg(i, NULL, data);

		if ((s = js_PublishMsgAsync(js, &m, NULL)) != NATS_OK)
			fail("js_PublishMsgAsync", s);
	}
	jsPubOptions_Init(&po);
	po.MaxWait = 60000;
	if ((s = js_PublishAsyncComplete(js, &po)) != NATS_OK)
		fail("js_PublishAsyncComplete", s);
	jsCtx_Destroy(js);
}

int
main(int argc, char **argv)
{
	natsConnection *nc = NULL;
	natsOptions *o = NULL;
	const char *mode;
	char		data[MSG_LEN];
	int			n,
				window;
	double		t0,
				t;
	natsStatus	s;

	if (argc < 4)
	{
		fprintf(stderr, "usage: nats_ceiling URL core|js|js-batch|js-async N [W]\n");
		return 2;
	}
	mode = argv[2];
	n = atoi(argv[3]);
	window = argc > 4 ? atoi(argv[4]) : 5000;
	memset(data, 'x', sizeof(data));
	if ((s = natsOptions_Create(&o)) != NATS_OK ||
		(s = natsOptions_SetURL(o, argv[1])) != NATS_OK ||
		(s = natsOptions_SetIOBufSize(o, 256 * 1024)) != NATS_OK ||
		(s = natsConnection_Connect(&nc, o)) != NATS_OK)
		fail("connect", s);

	t0 = now();
	if (strcmp(mode, "core") == 0)
		run_core(nc, n, data);
	else if (strcmp(mode, "js") == 0)
		run_js(nc, n, window, false, data);
	else if (strcmp(mode, "js-batch") == 0)
		run_js(nc, n, window, true, data);
	else if (strcmp(mode, "js-async") == 0)
		run_js_async(nc, n, window, data);
	else
	{
		fprintf(stderr, "nats_ceiling: unknown mode \"%s\"\n", mode);
		return 2;
	}
	t = now() - t0;
	printf("[%s%s] %d messages, window %d: %.3f s, %.0f msg/s confirmed\n",
		   mode, getenv("NOID") ? ", no Nats-Msg-Id" : "", n, window, t, n / t);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(o);
	return 0;
}
