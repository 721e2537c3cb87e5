/*
 * nats_conn.c — the publisher's NATS side: connection options built from the
 * para_sync.* settings, connect/reconnect state, and publishing a batch with
 * its confirmation (core NATS: one PING/PONG flush round trip; JetStream:
 * asynchronous publishes with Nats-Msg-Id "<key>:<sequence>", then waiting
 * for every publish ack).
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

static natsConnection *conn = NULL;
static jsCtx *js = NULL;
static Latch *wake_latch = NULL;

/* written by nats.c threads */
static pg_atomic_uint32 nats_events;
static pg_atomic_uint32 async_error_status;
static pg_atomic_uint64 js_ack_errors;
static pthread_mutex_t js_err_mutex = PTHREAD_MUTEX_INITIALIZER;
static char js_err_text[256];
static bool atomics_ready = false;

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

static void
on_js_ack_error(jsCtx *ctx, jsPubAckErr *pae, void *closure)
{
	const char *status = natsStatus_GetText(pae->Err);
	bool		extra = pae->ErrText != NULL && strcmp(pae->ErrText, status) != 0;

	pthread_mutex_lock(&js_err_mutex);
	snprintf(js_err_text, sizeof(js_err_text), "%s%s%s", status,
			 extra ? ": " : "", extra ? pae->ErrText : "");
	pthread_mutex_unlock(&js_err_mutex);
	pg_atomic_fetch_add_u64(&js_ack_errors, 1);
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
strip_url_credentials(const char *in, char *out, size_t outlen)
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
nats_settings_fingerprint(void)
{
	return psprintf("%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%d\x1f%d\x1f%d\x1f%s",
					psync_nats_url, psync_nats_token, psync_nats_user,
					psync_nats_password, psync_nats_credentials_file,
					psync_tls_ca_file, psync_tls_cert_file,
					psync_tls_key_file, psync_jetstream_stream,
					psync_tls_required, psync_connect_timeout_ms,
					psync_reconnect_wait_ms, psync_subject_prefix);
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
		psync_tls_cert_file[0] != '\0')
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

static bool
connect_blocked(char *errbuf, size_t errlen)
{
	natsOptions *o;
	natsStatus	s;
	char		safe_urls[512];

	strip_url_credentials(psync_nats_url, safe_urls, sizeof(safe_urls));
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
		jsOptions	jo;
		jsStreamInfo *si = NULL;
		jsErrCode	jerr = 0;

		jsOptions_Init(&jo);
		jo.Wait = psync_confirm_timeout_ms;
		jo.PublishAsync.MaxPending = 1000000;
		jo.PublishAsync.ErrHandler = on_js_ack_error;
		s = natsConnection_JetStream(&js, conn, &jo);
		if (s == NATS_OK)
			s = js_GetStreamInfo(&si, js, psync_jetstream_stream, NULL, &jerr);
		if (s != NATS_OK)
		{
			if (s == NATS_NOT_FOUND)
				snprintf(errbuf, errlen, "JetStream stream \"%s\" does not exist on NATS at %s",
						 psync_jetstream_stream, safe_urls);
			else
				snprintf(errbuf, errlen, "could not use JetStream stream \"%s\" on NATS at %s: %s (JetStream error %d)",
						 psync_jetstream_stream, safe_urls,
						 natsStatus_GetText(s), (int) jerr);
			nats_disconnect();
			return false;
		}
		jsStreamInfo_Destroy(si);
	}
	return true;
}

/* Connect with the current settings.  false: errbuf says why. */
bool
nats_connect(char *errbuf, size_t errlen)
{
	sigset_t	saved;
	bool		ok;
	char		url[256];

	if (!atomics_ready)
	{
		pg_atomic_init_u32(&nats_events, 0);
		pg_atomic_init_u32(&async_error_status, 0);
		pg_atomic_init_u64(&js_ack_errors, 0);
		atomics_ready = true;
	}
	nats_disconnect();
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
		strip_url_credentials(raw, url, sizeof(url));
		status_set_nats(PSN_CONNECTED, url);
	}
	else
		status_set_nats(PSN_FAILED, "");
	return ok;
}

void
nats_disconnect(void)
{
	if (js != NULL)
		jsCtx_Destroy(js);
	js = NULL;
	if (conn != NULL)
	{
		natsConnection_Close(conn);
		natsConnection_Destroy(conn);
	}
	conn = NULL;
	if (psync_shared != NULL)
		status_set_nats(PSN_DISCONNECTED, "");
}

bool
nats_is_connected(void)
{
	return conn != NULL && natsConnection_Status(conn) == NATS_CONN_STATUS_CONNECTED;
}

int64
nats_max_payload(void)
{
	return conn ? natsConnection_GetMaxPayload(conn) : 0;
}

/*
 * Digest what the callbacks reported since the last call: update the status
 * and return true with a message when the connection state changed.
 */
bool
nats_poll_events(char *errbuf, size_t errlen)
{
	uint32		ev;

	if (!atomics_ready || conn == NULL)
		return false;
	ev = pg_atomic_exchange_u32(&nats_events, 0);
	if (ev == 0)
		return false;
	errbuf[0] = '\0';
	if (nats_is_connected())
	{
		char		raw[256],
					url[256];

		if (natsConnection_GetConnectedUrl(conn, raw, sizeof(raw)) != NATS_OK)
			raw[0] = '\0';
		strip_url_credentials(raw, url, sizeof(url));
		status_set_nats(PSN_CONNECTED, url);
		if (ev & (EV_RECONNECTED | EV_DISCONNECTED))
			snprintf(errbuf, errlen, "reconnected to NATS at %s", url);
	}
	else if (natsConnection_Status(conn) == NATS_CONN_STATUS_CLOSED)
	{
		status_set_nats(PSN_FAILED, "");
		snprintf(errbuf, errlen, "NATS connection closed");
	}
	else
	{
		status_set_nats(PSN_RECONNECTING, NULL);
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
nats_is_closed(void)
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
		int			slice = Min(1000, psync_confirm_timeout_ms - waited);

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

/* Hand every message to nats.c, in order: core publish or JetStream async. */
static bool
send_all(PsyncOutMsg *msgs, int n, char *errbuf, size_t errlen)
{
	StringInfoData subject;
	int			prefix_len;
	natsStatus	s;
	char		msgid[PSYNC_MAX_KEY_LEN + 32];

	initStringInfo(&subject);
	appendStringInfo(&subject, "%s.", psync_subject_prefix);
	prefix_len = subject.len;
	for (int i = 0; i < n; i++)
	{
		subject.len = prefix_len;
		appendBinaryStringInfo(&subject, msgs[i].key, msgs[i].key_len);
		if (js != NULL)
		{
			jsPubOptions po;

			snprintf(msgid, sizeof(msgid), "%.*s:" INT64_FORMAT,
					 msgs[i].key_len, msgs[i].key, msgs[i].seq);
			jsPubOptions_Init(&po);
			po.MsgId = msgid;
			po.ExpectStream = psync_jetstream_stream;
			s = js_PublishAsync(js, subject.data, msgs[i].data, msgs[i].len, &po);
		}
		else
			s = natsConnection_Publish(conn, subject.data, msgs[i].data, msgs[i].len);
		if (s != NATS_OK)
		{
			format_nats_error(errbuf, errlen, js ? "could not publish to JetStream" : "could not publish to NATS", s);
			return false;
		}
	}
	pfree(subject.data);
	return true;
}

static PsyncPubResult
publish_core(PsyncOutMsg *msgs, int n, char *errbuf, size_t errlen)
{
	natsStatus	s;

	if (!send_all(msgs, n, errbuf, errlen))
		return PSP_FAILED;
	s = flush_confirm();
	if (s != NATS_OK)
	{
		format_nats_error(errbuf, errlen, "NATS did not confirm the batch", s);
		return PSP_FAILED;
	}
	return PSP_OK;
}

static PsyncPubResult
publish_js_blocked(PsyncOutMsg *msgs, int n, char *errbuf, size_t errlen)
{
	natsStatus	s;
	jsPubOptions po;
	uint64		errors_before;

	/* nothing of an earlier, failed batch may still be in flight */
	jsPubOptions_Init(&po);
	po.MaxWait = psync_confirm_timeout_ms;
	s = js_PublishAsyncComplete(js, &po);
	if (s != NATS_OK)
	{
		format_nats_error(errbuf, errlen, "JetStream publishes of an earlier batch are still unconfirmed", s);
		return PSP_FAILED;
	}
	errors_before = pg_atomic_read_u64(&js_ack_errors);

	if (!send_all(msgs, n, errbuf, errlen))
		return PSP_FAILED;
	/* push the publishes out now rather than when nats.c's flusher runs */
	s = flush_confirm();
	if (s == NATS_OK)
		s = js_PublishAsyncComplete(js, &po);
	if (s != NATS_OK)
	{
		format_nats_error(errbuf, errlen, "JetStream did not acknowledge the batch", s);
		return PSP_FAILED;
	}
	if (pg_atomic_read_u64(&js_ack_errors) != errors_before)
	{
		pthread_mutex_lock(&js_err_mutex);
		snprintf(errbuf, errlen, "JetStream stream \"%s\" refused a publish: %s",
				 psync_jetstream_stream, js_err_text);
		pthread_mutex_unlock(&js_err_mutex);
		return PSP_FAILED;
	}
	return PSP_OK;
}

/*
 * Publish msgs[0..n-1] in order and wait until NATS confirmed all of them.
 * PSP_OK is the only outcome after which they may be removed.
 */
PsyncPubResult
nats_publish_batch(PsyncOutMsg *msgs, int n, char *errbuf, size_t errlen)
{
	if (!nats_is_connected())
	{
		snprintf(errbuf, errlen, "not connected to NATS");
		return PSP_NOT_CONNECTED;
	}
	if (js != NULL)
	{
		sigset_t	saved;
		PsyncPubResult r;

		/* the first async publish starts the ack-delivery thread */
		block_signals(&saved);
		r = publish_js_blocked(msgs, n, errbuf, errlen);
		restore_signals(&saved);
		return r;
	}
	return publish_core(msgs, n, errbuf, errlen);
}
