/*
 * publisher_nats.c — the publisher's NATS side: connection options built
 * from the para_sync.* settings, connect/reconnect state, publishing a batch
 * with its confirmation, and what the JetStream headers add to an
 * envelope's size (publisher_nats_overhead()).  Its names start with
 * publisher_nats_, outside nats.c's own nats_ namespace.  The confirmation
 * (core NATS: one PING/PONG flush round trip; JetStream: every envelope
 * published with the header Nats-Msg-Id "<key>:<sequence>" and a reply
 * subject of our own, then waiting for each one's ack).
 *
 * JetStream acks are collected here rather than by nats.c's asynchronous
 * publishing: each attempt of a batch has its own reply subjects
 * (<inbox>.<attempt>.<index>), so an ack that never comes (leader change,
 * lost connection, deleted stream) only fails this attempt, and the worker
 * re-sends the batch with the same Nats-Msg-Ids; the stream drops the
 * copies it already has.  Nothing waits more than PSYNC_WAIT_SLICE_MS
 * without checking for shutdown.
 *
 * Threads: nats.c runs its own threads (reader, flusher, timers, reconnect,
 * JetStream ack delivery).  They never touch PostgreSQL state: the callbacks
 * below only set atomic flags, copy an error text under a pthread mutex and
 * SetLatch() the worker.  Every call that may create a nats.c thread runs
 * with all signals blocked, so the threads inherit a blocked mask and
 * PostgreSQL's signals always reach the worker's main thread.
 *
 * Everything else here runs in the worker's main thread and may palloc and
 * ereport.
 */
#include "para_sync.h"
#include "publisher.h"

#include <pthread.h>
#include <signal.h>

#include <nats/nats.h>

#include "miscadmin.h"
#include "port/atomics.h"
#include "postmaster/interrupt.h"

#define EV_DISCONNECTED	0x01
#define EV_RECONNECTED	0x02
#define EV_CLOSED		0x04
#define EV_ASYNC_ERROR	0x08

/* longest uninterrupted wait inside a nats.c call */
#define PSYNC_WAIT_SLICE_MS 100

static natsConnection *conn = NULL;
static Latch *wake_latch = NULL;

/* JetStream mode: our reply inbox and the attempt counter */
static natsSubscription *ack_sub = NULL;
static natsInbox *ack_inbox = NULL;
static uint64 ack_attempt = 0;

/* written by nats.c threads */
static pg_atomic_uint32 nats_events;
static pg_atomic_uint32 async_error_status;
static bool atomics_ready = false;

/* reconnect_count() when the core batch in flight was sent */
static uint64_t batch_reconnects = 0;

/* ---- callbacks: nats.c threads; no PostgreSQL calls but SetLatch */

static void
wake(void)
{
	Latch	   *latch = wake_latch;

	if (latch != NULL)
		SetLatch(latch);
}

static void
on_disconnected(natsConnection *nc, void *closure)
{
	pg_atomic_fetch_or_u32(&nats_events, EV_DISCONNECTED);
	wake();
}

static void
on_reconnected(natsConnection *nc, void *closure)
{
	pg_atomic_fetch_or_u32(&nats_events, EV_RECONNECTED);
	wake();
}

static void
on_closed(natsConnection *nc, void *closure)
{
	pg_atomic_fetch_or_u32(&nats_events, EV_CLOSED);
	wake();
}

static void
on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err,
			   void *closure)
{
	pg_atomic_write_u32(&async_error_status, (uint32) err);
	pg_atomic_fetch_or_u32(&nats_events, EV_ASYNC_ERROR);
	wake();
}

/* ---- main thread */

static void
block_signals(sigset_t *saved)
{
	sigset_t	all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, saved);
}

static void
restore_signals(const sigset_t *saved)
{
	pthread_sigmask(SIG_SETMASK, saved, NULL);
}

/*
 * Copy a comma-separated URL list without any user:password@ part, so that
 * it can be logged and shown in para_sync.status.
 */
void
publisher_nats_strip_credentials(const char *in, char *out, size_t outlen)
{
	size_t		o = 0;
	const char *p = in;

	while (*p && o + 1 < outlen)
	{
		const char *end = strchr(p, ',');
		const char *scheme = strstr(p, "://");
		const char *host = p;
		const char *at;

		if (end == NULL)
			end = p + strlen(p);
		if (scheme != NULL && scheme < end)
			host = scheme + 3;
		at = memchr(host, '@', end - host);
		for (const char *c = p; c < end && o + 1 < outlen; c++)
		{
			if (at != NULL && c == host)
				c = at + 1;
			out[o++] = *c;
		}
		if (*end == ',' && o + 1 < outlen)
			out[o++] = ',';
		p = *end ? end + 1 : end;
	}
	out[o] = '\0';
}

/* Everything that needs a reconnect when it changes (secrets included). */
char *
publisher_nats_settings_fingerprint(void)
{
	return psprintf("%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%d\x1f%d\x1f%d\x1f%s",
					psync_nats_url, psync_nats_token, psync_nats_user,
					psync_nats_password, psync_nats_credentials_file,
					psync_tls_ca_file, psync_tls_cert_file,
					psync_tls_key_file, psync_jetstream_stream,
					psync_tls_required, psync_connect_timeout_ms,
					psync_reconnect_wait_ms, psync_subject_prefix);
}

/* Does any URL of the list have the tls:// scheme? */
static bool
url_list_wants_tls(const char *urls)
{
	for (const char *p = urls; (p = strstr(p, "://")) != NULL; p += 3)
	{
		if (p - urls >= 3 && pg_strncasecmp(p - 3, "tls", 3) == 0)
			return true;
	}
	return false;
}

#define NATS_TRY(call) \
	do { if ((s = (call)) != NATS_OK) { what = #call; goto fail; } } while (0)

/* Build the options from the settings.  Returns NULL and fills errbuf. */
static natsOptions *
build_options(char *errbuf, size_t errlen)
{
	natsOptions *o = NULL;
	natsStatus	s;
	const char *what = NULL;
	char	   *urls = pstrdup(psync_nats_url);
	const char *servers[64];
	int			nservers = 0;
	char	   *tok;
	char	   *save = NULL;

	for (tok = strtok_r(urls, ", \t", &save); tok != NULL && nservers < 64;
		 tok = strtok_r(NULL, ", \t", &save))
		servers[nservers++] = tok;
	if (nservers == 0)
	{
		snprintf(errbuf, errlen, "para_sync.nats_url is empty");
		return NULL;
	}

	NATS_TRY(natsOptions_Create(&o));
	NATS_TRY(natsOptions_SetServers(o, servers, nservers));
	NATS_TRY(natsOptions_SetNoRandomize(o, true));
	NATS_TRY(natsOptions_SetName(o, "para_sync publisher"));
	NATS_TRY(natsOptions_SetTimeout(o, psync_connect_timeout_ms));
	NATS_TRY(natsOptions_SetAllowReconnect(o, true));
	NATS_TRY(natsOptions_SetMaxReconnect(o, -1));
	NATS_TRY(natsOptions_SetReconnectWait(o, psync_reconnect_wait_ms));
	NATS_TRY(natsOptions_SetPingInterval(o, 5000));
	NATS_TRY(natsOptions_SetMaxPingsOut(o, 2));
	NATS_TRY(natsOptions_SetIOBufSize(o, 256 * 1024));

	/*
	 * No publishing into nats.c's reconnect buffer: what it holds goes out
	 * after a reconnect, behind the lost part of the same batch (a key's
	 * later envelopes before its earlier ones).  A publish while
	 * reconnecting fails instead, and the batch is sent again in order.
	 */
	NATS_TRY(natsOptions_SetReconnectBufSize(o, 1));
	NATS_TRY(natsOptions_SetDisconnectedCB(o, on_disconnected, NULL));
	NATS_TRY(natsOptions_SetReconnectedCB(o, on_reconnected, NULL));
	NATS_TRY(natsOptions_SetClosedCB(o, on_closed, NULL));
	NATS_TRY(natsOptions_SetErrorHandler(o, on_async_error, NULL));
	if (psync_nats_token[0] != '\0')
		NATS_TRY(natsOptions_SetToken(o, psync_nats_token));
	if (psync_nats_user[0] != '\0')
		NATS_TRY(natsOptions_SetUserInfo(o, psync_nats_user, psync_nats_password));
	if (psync_nats_credentials_file[0] != '\0')
		NATS_TRY(natsOptions_SetUserCredentialsFromFiles(o, psync_nats_credentials_file, NULL));
	if (psync_tls_required || psync_tls_ca_file[0] != '\0' ||
		psync_tls_cert_file[0] != '\0' || url_list_wants_tls(psync_nats_url))
		NATS_TRY(natsOptions_SetSecure(o, true));
	if (psync_tls_ca_file[0] != '\0')
		NATS_TRY(natsOptions_LoadCATrustedCertificates(o, psync_tls_ca_file));
	if (psync_tls_cert_file[0] != '\0')
		NATS_TRY(natsOptions_LoadCertificatesChain(o, psync_tls_cert_file,
												   psync_tls_key_file[0] ? psync_tls_key_file : psync_tls_cert_file));
	pfree(urls);
	return o;

fail:
	{
		const char *detail = nats_GetLastError(NULL);

		snprintf(errbuf, errlen, "invalid NATS settings (%s): %s%s%s",
				 what, natsStatus_GetText(s),
				 detail && detail[0] ? ": " : "", detail ? detail : "");
	}
	natsOptions_Destroy(o);
	pfree(urls);
	return NULL;
}

static void format_nats_error(char *errbuf, size_t errlen, const char *what,
							  natsStatus s);

static bool
connect_blocked(char *errbuf, size_t errlen)
{
	natsOptions *o;
	natsStatus	s;
	char		safe_urls[512];

	publisher_nats_strip_credentials(psync_nats_url, safe_urls, sizeof(safe_urls));
	o = build_options(errbuf, errlen);
	if (o == NULL)
		return false;
	s = natsConnection_Connect(&conn, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK)
	{
		const char *detail = nats_GetLastError(NULL);

		snprintf(errbuf, errlen, "could not connect to NATS at %s: %s%s%s",
				 safe_urls, natsStatus_GetText(s),
				 detail && detail[0] && strcmp(detail, natsStatus_GetText(s)) != 0 ? ": " : "",
				 detail && detail[0] && strcmp(detail, natsStatus_GetText(s)) != 0 ? detail : "");
		conn = NULL;
		return false;
	}

	if (psync_jetstream_stream[0] != '\0')
	{
		jsCtx	   *js = NULL;
		jsOptions	jo;
		jsStreamInfo *si = NULL;
		jsErrCode	jerr = 0;
		char	   *subject;

		jsOptions_Init(&jo);
		jo.Wait = Min(psync_confirm_timeout_ms, 1000);
		s = natsConnection_JetStream(&js, conn, &jo);
		if (s == NATS_OK)
			s = js_GetStreamInfo(&si, js, psync_jetstream_stream, NULL, &jerr);
		if (js != NULL)
			jsCtx_Destroy(js);
		if (s != NATS_OK)
		{
			if (s == NATS_NOT_FOUND)
				snprintf(errbuf, errlen, "JetStream stream \"%s\" does not exist on NATS at %s",
						 psync_jetstream_stream, safe_urls);
			else
				snprintf(errbuf, errlen, "could not use JetStream stream \"%s\" on NATS at %s: %s (JetStream error %d)",
						 psync_jetstream_stream, safe_urls,
						 natsStatus_GetText(s), (int) jerr);
			publisher_nats_disconnect();
			return false;
		}
		jsStreamInfo_Destroy(si);

		/* the reply inbox every publish ack comes back to */
		s = natsInbox_Create(&ack_inbox);
		if (s == NATS_OK)
		{
			subject = psprintf("%s.>", (const char *) ack_inbox);
			s = natsConnection_SubscribeSync(&ack_sub, conn, subject);
			pfree(subject);
		}
		if (s == NATS_OK)
			s = natsSubscription_SetPendingLimits(ack_sub, -1, -1);
		if (s != NATS_OK)
		{
			format_nats_error(errbuf, errlen, "could not subscribe to JetStream acks", s);
			publisher_nats_disconnect();
			return false;
		}
	}
	return true;
}

/* Connect with the current settings.  false: errbuf says why. */
bool
publisher_nats_connect(char *errbuf, size_t errlen)
{
	sigset_t	saved;
	bool		ok;
	char		url[256];

	if (!atomics_ready)
	{
		pg_atomic_init_u32(&nats_events, 0);
		pg_atomic_init_u32(&async_error_status, 0);
		atomics_ready = true;
	}
	publisher_nats_disconnect();
	wake_latch = MyLatch;
	pg_atomic_write_u32(&nats_events, 0);

	block_signals(&saved);
	ok = connect_blocked(errbuf, errlen);
	restore_signals(&saved);

	if (ok)
	{
		char		raw[256];

		if (natsConnection_GetConnectedUrl(conn, raw, sizeof(raw)) != NATS_OK)
			raw[0] = '\0';
		publisher_nats_strip_credentials(raw, url, sizeof(url));
		publisher_status_set_nats(PSN_CONNECTED, url);
	}
	else
		publisher_status_set_nats(PSN_FAILED, "");
	return ok;
}

void
publisher_nats_disconnect(void)
{
	if (ack_sub != NULL)
		natsSubscription_Destroy(ack_sub);
	ack_sub = NULL;
	if (ack_inbox != NULL)
		natsInbox_Destroy(ack_inbox);
	ack_inbox = NULL;
	if (conn != NULL)
	{
		natsConnection_Close(conn);
		natsConnection_Destroy(conn);
	}
	conn = NULL;
	if (publisher_shared != NULL)
		publisher_status_set_nats(PSN_DISCONNECTED, "");
}

bool
publisher_nats_is_connected(void)
{
	return conn != NULL && natsConnection_Status(conn) == NATS_CONN_STATUS_CONNECTED;
}

int64
publisher_nats_max_payload(void)
{
	return conn ? natsConnection_GetMaxPayload(conn) : 0;
}

/*
 * Digest what the callbacks reported since the last call: update the status
 * and return true with a message when the connection state changed.
 */
bool
publisher_nats_poll_events(char *errbuf, size_t errlen)
{
	uint32		ev;

	if (!atomics_ready || conn == NULL)
		return false;
	ev = pg_atomic_exchange_u32(&nats_events, 0);
	if (ev == 0)
		return false;
	errbuf[0] = '\0';
	if (publisher_nats_is_connected())
	{
		char		raw[256],
					url[256];

		if (natsConnection_GetConnectedUrl(conn, raw, sizeof(raw)) != NATS_OK)
			raw[0] = '\0';
		publisher_nats_strip_credentials(raw, url, sizeof(url));
		publisher_status_set_nats(PSN_CONNECTED, url);
		if (ev & (EV_RECONNECTED | EV_DISCONNECTED))
			snprintf(errbuf, errlen, "reconnected to NATS at %s", url);
	}
	else if (natsConnection_Status(conn) == NATS_CONN_STATUS_CLOSED)
	{
		publisher_status_set_nats(PSN_FAILED, "");
		snprintf(errbuf, errlen, "NATS connection closed");
	}
	else
	{
		publisher_status_set_nats(PSN_RECONNECTING, NULL);
		snprintf(errbuf, errlen, "lost the connection to NATS; reconnecting");
	}
	if (ev & EV_ASYNC_ERROR)
	{
		natsStatus	s = (natsStatus) pg_atomic_read_u32(&async_error_status);

		snprintf(errbuf, errlen, "NATS reported an error: %s", natsStatus_GetText(s));
	}
	return errbuf[0] != '\0';
}

bool
publisher_nats_is_closed(void)
{
	return conn == NULL || natsConnection_Status(conn) == NATS_CONN_STATUS_CLOSED;
}

/* Wait for the server's PONG, in slices, so SIGTERM is noticed promptly. */
static natsStatus
flush_confirm(void)
{
	int			waited = 0;
	natsStatus	s = NATS_TIMEOUT;

	while (waited < psync_confirm_timeout_ms)
	{
		int			slice = Min(PSYNC_WAIT_SLICE_MS, psync_confirm_timeout_ms - waited);

		s = natsConnection_FlushTimeout(conn, slice);
		if (s != NATS_TIMEOUT || ShutdownRequestPending)
			break;
		waited += slice;
	}
	return s;
}

static void
format_nats_error(char *errbuf, size_t errlen, const char *what, natsStatus s)
{
	const char *detail = NULL;

	if (conn != NULL)
		natsConnection_GetLastError(conn, &detail);
	snprintf(errbuf, errlen, "%s: %s%s%s", what, natsStatus_GetText(s),
			 detail && detail[0] && strcmp(detail, natsStatus_GetText(s)) != 0 ? ": " : "",
			 detail && detail[0] && strcmp(detail, natsStatus_GetText(s)) != 0 ? detail : "");
}

/*
 * The subject of m: <prefix>.<key>, or <prefix>.<sync name>.<key> in the
 * 'table' layout (the sync name is the key up to its first colon, or the
 * whole key for a table event, whose key is the sync name), or
 * <prefix>.<sync name>.<scope>.<key> for a change captured with a scope
 * (docs/protocol.md, "Scopes").
 */
static char *
subject_of(StringInfo subject, int prefix_len, const PsyncOutMsg *m)
{
	subject->len = prefix_len;
	if (m->by_table || m->scope != NULL)
	{
		const char *colon = memchr(m->key, ':', m->key_len);
		int			name_len = colon ? (int) (colon - m->key) : m->key_len;

		appendBinaryStringInfo(subject, m->key, name_len);
		appendStringInfoChar(subject, '.');
	}
	if (m->scope != NULL)
	{
		appendBinaryStringInfo(subject, m->scope, m->scope_len);
		appendStringInfoChar(subject, '.');
	}
	appendBinaryStringInfo(subject, m->key, m->key_len);
	return subject->data;
}

/* How often nats.c reconnected this connection (0 if it cannot tell). */
static uint64_t
reconnect_count(void)
{
	natsStatistics *stats = NULL;
	uint64_t	reconnects = 0;

	if (conn != NULL && natsStatistics_Create(&stats) == NATS_OK)
	{
		if (natsConnection_GetStats(conn, stats) == NATS_OK)
			natsStatistics_GetCounts(stats, NULL, NULL, NULL, NULL, &reconnects);
		natsStatistics_Destroy(stats);
	}
	return reconnects;
}

/* Core NATS: hand every message to nats.c (its flusher thread sends them). */
static PsyncPubResult
send_core(PsyncOutMsg *msgs, int n, char *errbuf, size_t errlen)
{
	StringInfoData subject;
	int			prefix_len;
	natsStatus	s;

	batch_reconnects = reconnect_count();
	initStringInfo(&subject);
	appendStringInfo(&subject, "%s.", psync_subject_prefix);
	prefix_len = subject.len;
	for (int i = 0; i < n; i++)
	{
		if (msgs[i].skip)
			continue;
		s = natsConnection_Publish(conn, subject_of(&subject, prefix_len, &msgs[i]),
								   msgs[i].data, msgs[i].len);
		if (s != NATS_OK)
		{
			format_nats_error(errbuf, errlen, "could not publish to NATS", s);
			return PSP_FAILED;
		}
	}
	pfree(subject.data);
	return PSP_OK;
}

/*
 * Core NATS: one PING/PONG round trip confirms everything sent before, on
 * the same connection.  If nats.c reconnected in between (a flush slice that
 * timed out and the next one's PING on the new connection, or a reconnect
 * before the first PING), what went to the old connection may be lost and
 * the PONG proves nothing: the batch is sent again.
 */
static PsyncPubResult
confirm_core(char *errbuf, size_t errlen)
{
	natsStatus	s = flush_confirm();

	if (s != NATS_OK)
	{
		format_nats_error(errbuf, errlen, "NATS did not confirm the batch", s);
		return PSP_FAILED;
	}
	if (reconnect_count() != batch_reconnects)
	{
		snprintf(errbuf, errlen, "NATS reconnected while the batch was in flight; sending it again");
		return PSP_FAILED;
	}
	return PSP_OK;
}

/* Send every message with its Nats-Msg-Id and a reply subject of this attempt. */
static bool
js_send_all(PsyncOutMsg *msgs, int n, char *errbuf, size_t errlen)
{
	StringInfoData subject;
	int			prefix_len;
	char		reply[128];
	char		msgid[PSYNC_MAX_KEY_LEN + 32];

	initStringInfo(&subject);
	appendStringInfo(&subject, "%s.", psync_subject_prefix);
	prefix_len = subject.len;
	for (int i = 0; i < n; i++)
	{
		natsMsg    *m = NULL;
		natsStatus	s;

		if (msgs[i].skip)
			continue;
		snprintf(reply, sizeof(reply), "%s." UINT64_FORMAT ".%d",
				 (const char *) ack_inbox, ack_attempt, i);
		snprintf(msgid, sizeof(msgid), "%.*s:" INT64_FORMAT,
				 msgs[i].key_len, msgs[i].key, msgs[i].seq);
		s = natsMsg_Create(&m, subject_of(&subject, prefix_len, &msgs[i]), reply,
						   msgs[i].data, msgs[i].len);
		if (s == NATS_OK)
			s = natsMsgHeader_Set(m, "Nats-Msg-Id", msgid);
		if (s == NATS_OK)
			s = natsMsgHeader_Set(m, "Nats-Expected-Stream", psync_jetstream_stream);
		if (s == NATS_OK)
			s = natsConnection_PublishMsg(conn, m);
		natsMsg_Destroy(m);
		if (s != NATS_OK)
		{
			format_nats_error(errbuf, errlen, "could not publish to JetStream", s);
			return false;
		}
	}
	pfree(subject.data);
	return true;
}

/*
 * One JetStream ack: the index of the publish it answers (-1 when it is
 * from an earlier attempt or not ours), and whether the stream stored it
 * (an error reply fills errbuf).
 */
static int
js_parse_ack(natsMsg *m, bool *stored, char *errbuf, size_t errlen)
{
	const char *subj = natsMsg_GetSubject(m);
	size_t		plen = strlen((const char *) ack_inbox);
	const char *data = natsMsg_GetData(m);
	int			len = natsMsg_GetDataLength(m);
	char		body[512];
	const char *err;
	char	   *end;
	uint64		attempt;
	long		index;

	*stored = false;
	if (strncmp(subj, (const char *) ack_inbox, plen) != 0 || subj[plen] != '.')
		return -1;
	attempt = strtoull(subj + plen + 1, &end, 10);
	if (attempt != ack_attempt || *end != '.')
		return -1;
	index = strtol(end + 1, NULL, 10);

	snprintf(body, sizeof(body), "%.*s", Min(len, (int) sizeof(body) - 1), data ? data : "");
	err = strstr(body, "\"description\"");
	if (strstr(body, "\"error\"") != NULL)
	{
		const char *d = err ? strchr(err + 13, '"') : NULL;
		const char *e = d ? strchr(d + 1, '"') : NULL;

		snprintf(errbuf, errlen, "JetStream stream \"%s\" refused a publish: %.*s",
				 psync_jetstream_stream, d && e ? (int) (e - d - 1) : len,
				 d && e ? d + 1 : body);
		return (int) index;
	}
	*stored = strstr(body, "\"seq\"") != NULL;
	if (!*stored)
		snprintf(errbuf, errlen, "JetStream sent an unexpected ack: %s", body);
	return (int) index;
}

/*
 * Wait for the acks of this attempt.  Stops at the first refusal (the batch
 * is re-sent as a whole later), at "no responders" (no stream, or no leader
 * right now), at the timeout, or on shutdown.
 */
static PsyncPubResult
js_collect_acks(PsyncOutMsg *msgs, int n, char *errbuf, size_t errlen)
{
	bool	   *acked = palloc0(sizeof(bool) * n);
	int			pending = 0;
	int			waited = 0;

	for (int i = 0; i < n; i++)
	{
		if (msgs[i].skip)
			acked[i] = true;
		else
			pending++;
	}
	while (pending > 0)
	{
		natsMsg    *m = NULL;
		natsStatus	s = natsSubscription_NextMsg(&m, ack_sub, PSYNC_WAIT_SLICE_MS);

		if (s == NATS_TIMEOUT)
		{
			waited += PSYNC_WAIT_SLICE_MS;
			if (ShutdownRequestPending)
			{
				snprintf(errbuf, errlen, "shutting down with %d JetStream publishes unconfirmed", pending);
				return PSP_FAILED;
			}
			if (waited >= psync_confirm_timeout_ms)
			{
				snprintf(errbuf, errlen, "JetStream did not acknowledge %d of %d publishes within para_sync.confirm_timeout",
						 pending, n);
				return PSP_FAILED;
			}
			continue;
		}
		if (s == NATS_NO_RESPONDERS)
		{
			snprintf(errbuf, errlen, "JetStream stream \"%s\" did not answer: no responders (stream missing or without a leader)",
					 psync_jetstream_stream);
			return PSP_FAILED;
		}
		if (s != NATS_OK)
		{
			format_nats_error(errbuf, errlen, "JetStream acks could not be read", s);
			return PSP_FAILED;
		}
		{
			bool		stored;
			int			i = js_parse_ack(m, &stored, errbuf, errlen);

			natsMsg_Destroy(m);
			if (i < 0 || i >= n)
				continue;
			if (!stored)
				return PSP_FAILED;
			if (!acked[i])
			{
				acked[i] = true;
				pending--;
			}
		}
	}
	pfree(acked);
	return PSP_OK;
}

/* JetStream: a new attempt; send every message with its reply subject. */
static PsyncPubResult
send_js(PsyncOutMsg *msgs, int n, char *errbuf, size_t errlen)
{
	natsMsg    *stale = NULL;
	natsStatus	st;

	/*
	 * Drop what earlier attempts left in the inbox: their acks are filtered
	 * by subject anyway, but nats.c hands out a "no responders" reply as a
	 * bare status, which cannot be told apart.
	 */
	while ((st = natsSubscription_NextMsg(&stale, ack_sub, 0)) == NATS_OK ||
		   st == NATS_NO_RESPONDERS)
	{
		if (stale != NULL)
			natsMsg_Destroy(stale);
		stale = NULL;
	}
	ack_attempt++;
	if (!js_send_all(msgs, n, errbuf, errlen))
		return PSP_FAILED;
	return PSP_OK;
}

/*
 * Publish msgs[0..n-1] (but those marked skip) in order, without waiting:
 * publisher_nats_confirm_batch() must follow, with the same messages,
 * before the next batch is sent.
 */
PsyncPubResult
publisher_nats_send_batch(PsyncOutMsg *msgs, int n, char *errbuf,
						  size_t errlen)
{
	if (!publisher_nats_is_connected())
	{
		snprintf(errbuf, errlen, "not connected to NATS");
		return PSP_NOT_CONNECTED;
	}
	if (ack_sub != NULL)
		return send_js(msgs, n, errbuf, errlen);
	return send_core(msgs, n, errbuf, errlen);
}

/*
 * Wait until NATS confirmed every message of the batch
 * publisher_nats_send_batch() sent.  PSP_OK is the only outcome after which
 * they may be removed.
 */
PsyncPubResult
publisher_nats_confirm_batch(PsyncOutMsg *msgs, int n, char *errbuf,
							 size_t errlen)
{
	if (conn == NULL)
	{
		snprintf(errbuf, errlen, "not connected to NATS");
		return PSP_NOT_CONNECTED;
	}
	if (ack_sub != NULL)
		return js_collect_acks(msgs, n, errbuf, errlen);
	return confirm_core(errbuf, errlen);
}

/*
 * Bytes beyond its own that an envelope of key key_len counts against the
 * server's max_payload: under JetStream, the Nats-Msg-Id and
 * Nats-Expected-Stream headers count too; core NATS adds none.
 */
int64
publisher_nats_overhead(int key_len)
{
	bool		jetstream = psync_jetstream_stream[0] != '\0';

	return jetstream ? 96 + 2 * key_len + strlen(psync_jetstream_stream) : 0;
}
