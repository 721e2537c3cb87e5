/*
 * transport_nats.c — the NATS transport backend (nats.c).
 *
 * The C twin of the seed's NatsTransport: subject "<prefix>.<key>"
 * (docs/protocol.md, "Subjects"), one NATS subscription per key shared by
 * every local subscriber (the transport core fans out), torn down with the
 * last one; each message is decoded once.  In the default 'key' layout a
 * table pattern "<table>:*" cannot be a NATS wildcard (a key is one subject
 * token), so it subscribes to "<prefix>.*" and drops keys outside
 * "<table>:" before decoding, but the table's own events (key "<table>").  Tables named in the table_layout option are
 * published on "<prefix>.<table>.<key>": their keys subscribe there and
 * their patterns to "<prefix>.<table>.>", which the server filters.  In
 * both layouts the key is the subject's last token.  Tables named in the
 * scoped_tables option (docs/protocol.md "Scopes") are published on
 * "<prefix>.<table>.<scope>.<key>": a key subscribes to
 * "<prefix>.<table>.*.<key>" (wherever its scope goes), "<table>:*" to
 * "<prefix>.<table>.>", a scope pattern "<table>@<scope>:*" to
 * "<prefix>.<table>.<scope>.>" and the table's events to
 * "<prefix>.<table>.<table>".
 *
 * Subject permissions: the server answers a subscription it refuses with
 * -ERR before the PONG of the round trip that follows every subscribe;
 * nats.c keeps that text as the connection's last error (and posts
 * NATS_NOT_PERMITTED to the error handler, without the subscription).  So
 * attach checks the last error after its flush and fails with
 * PSYNC_ERR_PERMISSION when it names this subject; a refusal the error
 * handler sees later (a reconnect's resubscription) is delivered to the
 * subject's subscribers as PSYNC_EVENT_REFUSED.
 *
 * Core NATS is at-most-once: after a reconnect, or when nats.c reports a
 * slow consumer (it dropped messages), every subscriber gets
 * PSYNC_EVENT_LOST and replicas refetch.
 *
 * Lifetime: a message callback may still run after natsSubscription_
 * Unsubscribe returns, so the per-key context is freed by nats.c's
 * on-complete callback, and destroy waits for all of them.  nats.c 3.4's
 * read loop can also still be touching a subscription just removed from
 * its table (nats.c issue #637, fixed in 3.6): a subscription object is
 * therefore only destroyed after a flush round trip proves the read loop
 * has moved past it, or, failing that, after the connection is closed.
 *
 * Deliveries use nats.c's global delivery thread pool, not one thread per
 * subscription: a process may hold replicas of many thousands of keys.
 */
#include "client_error.h"
#include "transport_internal.h"
#include "sized.h"
#include "para_sync/key.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

#define DESTROY_WAIT_SECONDS 10
#define SUBSCRIBE_FLUSH_MS 2000

typedef struct nats_backend
{
	natsConnection *conn;
	psync_transport *transport;
	char	   *prefix;
	size_t		prefix_len;
	char	  **table_layout;	/* sync names in the 'table' layout */
	size_t		ntable_layout;
	bool		all_table_layout;	/* the option held "*" */
	char	  **scoped;			/* sync names with a scope */
	size_t		nscoped;
	bool		all_scoped;		/* the option held "*" */
	struct nats_key_sub *subs;	/* attached subscriptions (under lock) */
	pthread_mutex_t lock;
	pthread_cond_t completed;
	int			live_subs;		/* key subscriptions not yet completed */
	bool		closed;			/* nats.c ran the closed callback */
	natsSubscription **graveyard;	/* unsubscribed, destroyed after close */
	size_t		ngraveyard;
	size_t		graveyard_cap;
} nats_backend;

/* One NATS subscription, for one key or one table pattern. */
typedef struct nats_key_sub
{
	nats_backend *backend;
	natsSubscription *sub;
	bool		is_pattern;
	struct nats_key_sub *next;	/* in backend->subs */
	char	   *key;			/* the transport key ("users:1", "users:*") */
	size_t		key_len;
	size_t		table_len;		/* of its sync name */
	char		subject[];		/* what the NATS subscription is for */
} nats_key_sub;

static void backend_free(nats_backend *b);

static nats_backend *
backend_of(psync_transport *t)
{
	return (nats_backend *) t->backend;
}

static void
on_message(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	nats_key_sub *ks = closure;
	nats_backend *b = ks->backend;
	const char *subject = natsMsg_GetSubject(msg);
	size_t		subject_len = strlen(subject);
	const char *key = subject_len > b->prefix_len + 1 ? subject + b->prefix_len + 1 : "";
	const char *dot = strrchr(key, '.');
	psync_envelope env;
	psync_event event = {0};

	(void) nc;
	(void) sub;
	/* the key is the last token: "<prefix>.<key>" or "<prefix>.<table>.<key>" */
	if (dot != NULL)
		key = dot + 1;
	/*
	 * a pattern "<table>:*" keeps only keys of the table ("<table>:" too) and
	 * the table's own events (key "<table>", docs/protocol.md "Table events")
	 */
	if (ks->is_pattern && !psync_key_in_table(key, strlen(key), ks->key, ks->table_len) &&
		!(strlen(key) == ks->table_len && memcmp(key, ks->key, ks->table_len) == 0))
	{
		natsMsg_Destroy(msg);
		return;
	}
	event.key = key;
	event.key_len = strlen(event.key);
	event.decode_error = psync_envelope_decode(natsMsg_GetData(msg),
											   (size_t) natsMsg_GetDataLength(msg), &env);
	event.kind = event.decode_error == PSYNC_DECODE_OK ?
		PSYNC_EVENT_ENVELOPE : PSYNC_EVENT_MALFORMED;
	event.envelope = event.kind == PSYNC_EVENT_ENVELOPE ? &env : NULL;
	transport_deliver(b->transport, ks->key, ks->key_len, &event);
	natsMsg_Destroy(msg);
}

static void
on_complete(void *closure)
{
	nats_key_sub *ks = closure;
	nats_backend *b = ks->backend;

	pthread_mutex_lock(&b->lock);
	for (nats_key_sub **p = &b->subs; *p != NULL; p = &(*p)->next)
		if (*p == ks)
		{
			*p = ks->next;
			break;
		}
	free(ks->key);
	free(ks);
	b->live_subs--;
	pthread_cond_broadcast(&b->completed);
	pthread_mutex_unlock(&b->lock);
}

/* Is the table of key (its sync name part) in names, or names "*"? */
static bool
table_listed(char *const *names, size_t n, bool all, const char *key, size_t len)
{
	size_t		name_len = transport_table_len(key, len);

	if (all)
		return true;
	for (size_t i = 0; i < n; i++)
		if (strlen(names[i]) == name_len && memcmp(names[i], key, name_len) == 0)
			return true;
	return false;
}

/* Does the table of key publish in the 'table' layout? */
static bool
uses_table_layout(const nats_backend *b, const char *key, size_t len)
{
	return table_listed(b->table_layout, b->ntable_layout, b->all_table_layout, key, len);
}

/* Does the table of key have a scope? */
static bool
uses_scope(const nats_backend *b, const char *key, size_t len)
{
	return table_listed(b->scoped, b->nscoped, b->all_scoped, key, len);
}

/*
 * transport_ops.table_layout: the layout this transport subscribes in
 * ("scope" for a table with a scope, as para_sync.synced_tables says).
 */
static const char *
nats_table_layout(psync_transport *t, const char *table)
{
	if (uses_scope(t->backend, table, strlen(table)))
		return "scope";
	return uses_table_layout(t->backend, table, strlen(table)) ? "table" : "key";
}

/*
 * Write the subject of key into out (room for prefix_len + 2 * len +
 * PSYNC_MAX_SCOPE_LEN + 5): "<prefix>.<key>" or "<prefix>.<table>.<key>";
 * a pattern "<table>:*" becomes "<prefix>.*" or "<prefix>.<table>.>".  For
 * a table with a scope: an object key goes to "<prefix>.<table>.<scope>.<key>"
 * (scope: the envelope's, to publish) or "<prefix>.<table>.*.<key>" (scope
 * NULL, to subscribe); "<table>@<scope>:*" to "<prefix>.<table>.<scope>.>";
 * the table's events (key "<table>") to "<prefix>.<table>.<table>".
 */
static void
subject_for(const nats_backend *b, const char *key, size_t len, bool is_pattern,
			const char *scope, size_t scope_len, char *out)
{
	size_t		name_len = transport_table_len(key, len);
	const char *pattern_scope = NULL;
	size_t		pattern_scope_len = 0;
	bool		scoped = uses_scope(b, key, len);
	bool		by_table;
	size_t		n = 0;

	if (is_pattern && transport_pattern_scope(key, len, &pattern_scope, &pattern_scope_len))
		scoped = true;
	by_table = scoped || uses_table_layout(b, key, len);
	memcpy(out, b->prefix, b->prefix_len);
	n = b->prefix_len;
	out[n++] = '.';
	if (by_table)
	{
		memcpy(out + n, key, name_len);
		n += name_len;
		out[n++] = '.';
	}
	if (is_pattern && pattern_scope != NULL)
	{
		memcpy(out + n, pattern_scope, pattern_scope_len);
		n += pattern_scope_len;
		out[n++] = '.';
		out[n++] = '>';
	}
	else if (is_pattern)
		out[n++] = by_table ? '>' : '*';
	else
	{
		if (scoped && name_len < len)
		{
			/* an object key of a table with a scope */
			if (scope != NULL)
			{
				memcpy(out + n, scope, scope_len);
				n += scope_len;
			}
			else
				out[n++] = '*';
			out[n++] = '.';
		}
		memcpy(out + n, key, len);
		n += len;
	}
	out[n] = '\0';
}

#define SUBJECT_ROOM(b, len) ((b)->prefix_len + 2 * (len) + PSYNC_MAX_SCOPE_LEN + 5)

static nats_key_sub *
key_sub_new(nats_backend *b, const char *key, size_t len, bool is_pattern)
{
	nats_key_sub *ks = calloc(1, sizeof(*ks) + SUBJECT_ROOM(b, len));

	if (ks == NULL || (ks->key = strndup(key, len)) == NULL)
	{
		free(ks);
		return NULL;
	}
	ks->backend = b;
	ks->is_pattern = is_pattern;
	ks->key_len = len;
	ks->table_len = transport_table_len(key, len);
	subject_for(b, key, len, is_pattern, NULL, 0, ks->subject);
	return ks;
}

static void nats_detach(psync_transport *t, void *data);

/*
 * Does the connection's last error say that the server refused a
 * subscription to subject?  nats.c keeps the server's text, e.g.
 * Permissions Violation for Subscription to "synced.orders.globex.>".
 * If so, keep it as the transport's last error.
 */
static bool
refused(nats_backend *b, const char *subject)
{
	const char *text = NULL;
	char		quoted[2 * PSYNC_MAX_KEY_LEN + PSYNC_MAX_SCOPE_LEN + 256];
	char		what[sizeof(quoted) + 64];

	if (natsConnection_GetLastError(b->conn, &text) != NATS_NOT_PERMITTED || text == NULL)
		return false;
	snprintf(quoted, sizeof(quoted), "\"%s\"", subject);
	if (strcasestr(text, "subscription") == NULL || strstr(text, quoted) == NULL)
		return false;
	snprintf(what, sizeof(what), "the NATS server refused the subscription to %s", subject);
	transport_set_error(b->transport, what, text);
	return true;
}

static psync_status
nats_attach(psync_transport *t, const char *key, size_t len, bool is_pattern,
			void **data)
{
	nats_backend *b = backend_of(t);
	nats_key_sub *ks = key_sub_new(b, key, len, is_pattern);
	natsStatus	s;

	if (ks == NULL)
		return PSYNC_ERR_NO_MEMORY;
	s = natsConnection_Subscribe(&ks->sub, b->conn, ks->subject, on_message, ks);
	if (s == NATS_OK)
		s = natsSubscription_SetOnCompleteCB(ks->sub, on_complete, ks);
	if (s != NATS_OK)
	{
		if (ks->sub != NULL)
		{
			natsSubscription_Unsubscribe(ks->sub);
			natsSubscription_Destroy(ks->sub);
		}
		transport_set_error(t, "could not subscribe", nats_GetLastError(NULL));
		free(ks->key);
		free(ks);			/* no callback can have run: it was never set up */
		return PSYNC_ERR_NATS;
	}
	pthread_mutex_lock(&b->lock);
	b->live_subs++;
	ks->next = b->subs;
	b->subs = ks;
	pthread_mutex_unlock(&b->lock);

	/*
	 * One round trip, so that the server has the subscription when
	 * subscribe returns: a replica's initial refetch then cannot miss a
	 * change published in between.  When disconnected this times out and
	 * the subscription is sent on reconnect (which raises LOST anyway).
	 * A refusal (-ERR) comes before the round trip's PONG.
	 */
	if (natsConnection_FlushTimeout(b->conn, SUBSCRIBE_FLUSH_MS) == NATS_OK &&
		refused(b, ks->subject))
	{
		nats_detach(t, ks);
		return PSYNC_ERR_PERMISSION;
	}
	*data = ks;
	return PSYNC_OK;
}

/* Keep sub until the connection is closed; false when out of memory. */
static bool
bury(nats_backend *b, natsSubscription *sub)
{
	bool		ok = true;

	pthread_mutex_lock(&b->lock);
	if (b->ngraveyard == b->graveyard_cap)
	{
		size_t		cap = b->graveyard_cap ? b->graveyard_cap * 2 : 16;
		natsSubscription **g = realloc(b->graveyard, cap * sizeof(*g));

		if (g == NULL)
			ok = false;
		else
		{
			b->graveyard = g;
			b->graveyard_cap = cap;
		}
	}
	if (ok)
		b->graveyard[b->ngraveyard++] = sub;
	pthread_mutex_unlock(&b->lock);
	return ok;
}

static void
nats_detach(psync_transport *t, void *data)
{
	nats_backend *b = backend_of(t);
	nats_key_sub *ks = data;
	natsSubscription *sub = ks->sub;

	natsSubscription_Unsubscribe(sub);	/* on_complete frees ks */
	if (natsConnection_FlushTimeout(b->conn, SUBSCRIBE_FLUSH_MS) == NATS_OK)
		natsSubscription_Destroy(sub);	/* the read loop is past it */
	else
		(void) bury(b, sub);	/* out of memory: leaked rather than crash */
}

static psync_status
nats_publish_raw(psync_transport *t, const char *key, size_t key_len,
				 const void *bytes, size_t len)
{
	nats_backend *b = backend_of(t);
	char		stack[2 * PSYNC_MAX_KEY_LEN + PSYNC_MAX_SCOPE_LEN + 256];
	char	   *subject = stack;
	size_t		need = SUBJECT_ROOM(b, key_len);
	psync_envelope env = {0};
	natsStatus	s;

	/* a row of a table with a scope goes to its scope's subject */
	if (uses_scope(b, key, key_len) && transport_table_len(key, key_len) < key_len &&
		(psync_envelope_decode(bytes, len, &env) != PSYNC_DECODE_OK || env.scope == NULL))
	{
		transport_set_error(t, "could not publish", "a row of a table with a scope needs "
							"an envelope with its scope");
		return PSYNC_ERR_INVALID_ARGUMENT;
	}
	if (need > sizeof(stack) && (subject = malloc(need)) == NULL)
		return PSYNC_ERR_NO_MEMORY;
	subject_for(b, key, key_len, false, env.scope, env.scope_len, subject);
	s = natsConnection_Publish(b->conn, subject, bytes, (int) len);
	if (subject != stack)
		free(subject);
	if (s != NATS_OK)
		transport_set_error(t, "could not publish", nats_GetLastError(NULL));
	return s == NATS_OK ? PSYNC_OK : PSYNC_ERR_NATS;
}

static psync_status
nats_publish(psync_transport *t, const psync_envelope *env)
{
	char	   *bytes;
	size_t		len;
	psync_status st = transport_encode_alloc(env, &bytes, &len);

	if (st != PSYNC_OK)
		return st;
	st = nats_publish_raw(t, env->key, env->key_len, bytes, len);
	free(bytes);
	return st;
}

static psync_status
nats_flush(psync_transport *t, int timeout_ms)
{
	natsStatus	s = natsConnection_FlushTimeout(backend_of(t)->conn,
												timeout_ms < 0 ? 60000 : timeout_ms);

	if (s != NATS_OK)
		transport_set_error(t, "flush failed", nats_GetLastError(NULL));
	return s == NATS_OK ? PSYNC_OK : s == NATS_TIMEOUT ? PSYNC_ERR_TIMEOUT : PSYNC_ERR_NATS;
}

/* Wait until *flag (read under b->lock) or the deadline; false on timeout. */
static bool
wait_until(nats_backend *b, bool (*done) (nats_backend *b))
{
	struct timespec deadline;
	bool		ok = true;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += DESTROY_WAIT_SECONDS;
	pthread_mutex_lock(&b->lock);
	while (!done(b) && ok)
		ok = pthread_cond_timedwait(&b->completed, &b->lock, &deadline) != ETIMEDOUT || done(b);
	pthread_mutex_unlock(&b->lock);
	return ok;
}

static bool
subscriptions_completed(nats_backend *b)
{
	return b->live_subs == 0;
}

static bool
connection_closed(nats_backend *b)
{
	return b->closed;
}

/*
 * Connection callbacks (reconnected, errors) run on nats.c's own thread with
 * the transport as closure.  nats.c runs them in order, and the closed
 * callback last: once it ran, none of ours can run again, and the
 * transport may be freed.  (On a timeout: leak, never crash.)
 */
static bool
nats_destroy(psync_transport *t)
{
	nats_backend *b = backend_of(t);
	bool		safe = wait_until(b, subscriptions_completed);

	if (b->conn != NULL)
	{
		natsConnection_Close(b->conn);	/* joins the read loop */
		safe = wait_until(b, connection_closed) && safe;
		for (size_t i = 0; i < b->ngraveyard; i++)
			natsSubscription_Destroy(b->graveyard[i]);
		natsConnection_Destroy(b->conn);
	}
	free(b->graveyard);
	if (!safe)
		return false;
	pthread_cond_destroy(&b->completed);
	pthread_mutex_destroy(&b->lock);
	backend_free(b);
	return true;
}

static const transport_ops nats_ops = {
	.attach = nats_attach,
	.detach = nats_detach,
	.publish = nats_publish,
	.publish_raw = nats_publish_raw,
	.flush = nats_flush,
	.destroy = nats_destroy,
	.table_layout = nats_table_layout,
};

/* ---- connection events: messages may have been lost ---- */

static void
on_reconnected(natsConnection *nc, void *closure)
{
	psync_event event = {.kind = PSYNC_EVENT_LOST};

	(void) nc;
	transport_deliver_all(closure, &event);
}

static void
on_closed(natsConnection *nc, void *closure)
{
	nats_backend *b = backend_of(closure);

	(void) nc;
	pthread_mutex_lock(&b->lock);
	b->closed = true;
	pthread_cond_broadcast(&b->completed);
	pthread_mutex_unlock(&b->lock);
}

/*
 * A refusal after the fact (nats.c resubscribes after a reconnect): tell
 * the subscribers of the subject the server's text names.
 */
static void
deliver_refused(psync_transport *t, const char *text)
{
	nats_backend *b = backend_of(t);
	const char *open = text != NULL ? strchr(text, '"') : NULL;
	const char *close = open != NULL ? strchr(open + 1, '"') : NULL;
	char	   *key = NULL;
	psync_event event = {.kind = PSYNC_EVENT_REFUSED, .detail = text};

	if (close == NULL || strcasestr(text, "subscription") == NULL)
		return;
	pthread_mutex_lock(&b->lock);
	for (nats_key_sub *ks = b->subs; ks != NULL && key == NULL; ks = ks->next)
		if (strlen(ks->subject) == (size_t) (close - open - 1) &&
			memcmp(ks->subject, open + 1, close - open - 1) == 0)
			key = strdup(ks->key);
	pthread_mutex_unlock(&b->lock);
	if (key == NULL)
		return;
	transport_set_error(t, "the NATS server refused a subscription", text);
	event.key = key;
	event.key_len = strlen(key);
	transport_deliver(t, key, event.key_len, &event);
	free(key);
}

static void
on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err,
			   void *closure)
{
	psync_event event = {.kind = PSYNC_EVENT_LOST};
	const char *text = NULL;

	(void) sub;
	if (err == NATS_SLOW_CONSUMER)
		transport_deliver_all(closure, &event);
	else if (err == NATS_NOT_PERMITTED &&
			 natsConnection_GetLastError(nc, &text) == NATS_NOT_PERMITTED)
		deliver_refused(closure, text);
}

/* ---- connect ---- */

static void
nats_options_defaults(psync_nats_options *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->size = sizeof(*opts);
	opts->subject_prefix = "synced";
	opts->max_reconnect = -1;
	opts->reconnect_wait_ms = 250;
	opts->connect_timeout_ms = 2000;
}

void
psync_nats_options_init_sized(psync_nats_options *opts, size_t size)
{
	psync_nats_options d;

	nats_options_defaults(&d);
	sized_init(opts, size, &d, sizeof(d));
}

static bool
prefix_is_valid(const char *prefix)
{
	size_t		len = strlen(prefix);

	if (len == 0 || len > 200 || prefix[0] == '.' || prefix[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++)
		if (prefix[i] <= ' ' || prefix[i] == '*' || prefix[i] == '>' || prefix[i] == 0x7f)
			return false;
	return true;
}

static natsStatus
make_nats_options(const psync_nats_options *o, psync_transport *t, natsOptions **out)
{
	natsOptions *no = NULL;
	natsStatus	s = natsOptions_Create(&no);

	if (s == NATS_OK)
		s = natsOptions_SetURL(no, o->url);
	if (s == NATS_OK && o->name != NULL)
		s = natsOptions_SetName(no, o->name);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(no, o->max_reconnect);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(no, o->reconnect_wait_ms > 0 ? o->reconnect_wait_ms : 250);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(no, o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 2000);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(no, on_reconnected, t);
	if (s == NATS_OK)
		s = natsOptions_SetErrorHandler(no, on_async_error, t);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(no, on_closed, t);
	if (s == NATS_OK)
		s = natsOptions_UseGlobalMessageDelivery(no, true);
	if (s != NATS_OK)
		natsOptions_Destroy(no);
	else
		*out = no;
	return s;
}

/* Free a list copy_names() made. */
static void
free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static void
backend_free(nats_backend *b)
{
	free_names(b->table_layout, b->ntable_layout);
	free_names(b->scoped, b->nscoped);
	free(b->prefix);
	free(b);
}

/* A copy of a list of sync names (table_layout, scoped_tables); false when out of memory. */
static bool
copy_names(const char *const *names, char ***out, size_t *nout, bool *all)
{
	size_t		n = 0;

	while (names != NULL && names[n] != NULL)
		n++;
	if (n == 0)
		return true;
	if ((*out = calloc(n, sizeof(char *))) == NULL)
		return false;
	for (size_t i = 0; i < n; i++)
	{
		if (strcmp(names[i], "*") == 0)
			*all = true;
		if (((*out)[i] = strdup(names[i])) == NULL)
			return false;
		*nout = i + 1;
	}
	return true;
}

/* Sync names (docs/protocol.md), or "*". */
static bool
table_layout_is_valid(const char *const *names)
{
	for (size_t i = 0; names != NULL && names[i] != NULL; i++)
		if (strcmp(names[i], "*") != 0 &&
			!psync_sync_name_is_valid(names[i], strlen(names[i])))
			return false;
	return true;
}

static nats_backend *
backend_new(const psync_nats_options *opts)
{
	nats_backend *b = calloc(1, sizeof(*b));
	const char *prefix = opts->subject_prefix ? opts->subject_prefix : "synced";

	if (b == NULL || (b->prefix = strdup(prefix)) == NULL)
	{
		free(b);
		return NULL;
	}
	if (!copy_names(opts->table_layout, &b->table_layout, &b->ntable_layout,
					&b->all_table_layout) ||
		!copy_names(opts->scoped_tables, &b->scoped, &b->nscoped, &b->all_scoped))
	{
		backend_free(b);
		return NULL;
	}
	b->prefix_len = strlen(prefix);
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->completed, NULL);
	return b;
}

psync_status
psync_nats_transport_connect(const psync_nats_options *caller_opts, psync_transport **out)
{
	psync_nats_options o;
	const psync_nats_options *opts = &o;
	psync_transport *t;
	nats_backend *b;
	natsOptions *no = NULL;
	psync_status st;

	if (out == NULL)
		return PSYNC_ERR_INVALID_ARGUMENT;
	*out = NULL;
	nats_options_defaults(&o);
	if (caller_opts == NULL || !sized_read(&o, sizeof(o), caller_opts) || opts->url == NULL ||
		(opts->subject_prefix != NULL && !prefix_is_valid(opts->subject_prefix)) ||
		!table_layout_is_valid(opts->table_layout) ||
		!table_layout_is_valid(opts->scoped_tables))
		return PSYNC_ERR_INVALID_ARGUMENT;
	t = malloc(sizeof(*t));
	b = backend_new(opts);
	if (t == NULL || b == NULL || (st = transport_init(t, &nats_ops, b)) != PSYNC_OK)
	{
		if (b != NULL)
			backend_free(b);
		free(t);
		return PSYNC_ERR_NO_MEMORY;
	}
	b->transport = t;
	if (make_nats_options(opts, t, &no) != NATS_OK ||
		natsConnection_Connect(&b->conn, no) != NATS_OK)
	{
		const char *text = nats_GetLastError(NULL);

		client_error_thread("could not connect to NATS at %s: %s", opts->url,
							text != NULL ? text : "unknown error");
		natsOptions_Destroy(no);
		b->conn = NULL;
		t->ops = &nats_ops;
		psync_transport_destroy(t);
		return PSYNC_ERR_NATS;
	}
	natsOptions_Destroy(no);
	*out = t;
	return PSYNC_OK;
}
