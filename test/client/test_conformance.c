/*
 * test_conformance.c — libparasync's reconciler against the seed's own.
 *
 * Generates random scripts (a seed or none, a stream of receipts with
 * sequences around the current one, some failing the parse gate, some
 * deletes, and a queue of refetch outcomes: snapshot, bad snapshot or
 * failure), runs each through a psync_replica whose refetches complete at
 * once, and through the seed's createClientReplica in node
 * (conformance_seed.mjs, importing the seed package from PSYNC_SEED_DIR), then
 * compares the state after every step: sequence, status, schema version,
 * the five counters and the value.  With refetches that finish before the
 * next message, libparasync's additions (single refetch in flight,
 * buffering) never engage, so the two must agree exactly.
 *
 * The same rules (src/client/reconcile.c) reconcile each member of a
 * collection, so the same kind of scripts also drive a collection member
 * ("conf:1" of table "conf": the seed is its page row, the receipts are
 * live envelopes, the refetches row refetches), and after every step its
 * sequence, value and the counters both have (ignored_stale, gaps,
 * parse_errors, refetches) must equal the seed's.  These scripts keep to
 * what a collection member shares with a replica: a row that is in the
 * table from the start and is not deleted, and refetches that succeed
 * with a snapshot no older than the member (a collection retries a failed
 * row refetch later, keeps the newer of the two, and has no status).
 *
 * Skips when node or the seed is not there (argv[1] = seed dir).
 */
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define NSCRIPTS 400
#define NMEMBER_SCRIPTS 200
#define NEVENTS 40
#define OUT_MAX ((NSCRIPTS + NMEMBER_SCRIPTS) * (NEVENTS + 2) * 96)

typedef struct step
{
	uint64_t	seq;
	bool		bad;
	bool		del;
	bool		fail;
	char		sv[4];
	char		name[16];
} step;

typedef struct script
{
	bool		has_seed;
	bool		no_refetch;
	step		seed;
	step		events[NEVENTS];
	step		refetches[NEVENTS + 2];
	int			nrefetches;
} script;

static unsigned rnd_state = 12345;

static unsigned
rnd(unsigned n)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return (rnd_state >> 8) % n;
}

static step
random_step(uint64_t around, int i)
{
	step		s = {0};
	int64_t		seq = (int64_t) around + (int64_t) rnd(6) - 2;

	s.seq = seq < 0 ? 0 : (uint64_t) seq;
	s.bad = rnd(10) == 0;
	s.del = !s.bad && rnd(10) == 0;
	snprintf(s.sv, sizeof(s.sv), "%u", 1 + rnd(2));
	snprintf(s.name, sizeof(s.name), "v%d", i);
	return s;
}

static void
make_script(script *sc)
{
	uint64_t	cur = rnd(5);

	memset(sc, 0, sizeof(*sc));
	sc->has_seed = rnd(3) != 0;
	sc->no_refetch = rnd(8) == 0;
	if (sc->has_seed)
		sc->seed = random_step(cur, 100);
	for (int i = 0; i < NEVENTS; i++)
	{
		sc->events[i] = random_step(cur, i);
		if (rnd(3) != 0)
			cur++;				/* the "server" moves on */
	}
	sc->nrefetches = (int) rnd(NEVENTS + 2);
	for (int i = 0; i < sc->nrefetches; i++)
	{
		sc->refetches[i] = random_step(cur + rnd(3), 200 + i);
		sc->refetches[i].fail = rnd(8) == 0;
	}
}

/*
 * A script a collection member can follow as a replica does (see the top):
 * a good seed (its page row), no deletes, and a successful refetch for
 * every event that could ask for one, never older than anything received
 * before: the snapshots' sequences rise, from past the last receipt's.
 */
static void
make_member_script(script *sc)
{
	make_script(sc);
	sc->has_seed = true;
	sc->no_refetch = false;
	if (sc->seed.name[0] == '\0')
		sc->seed = random_step(rnd(5), 100);
	sc->seed.bad = sc->seed.del = false;
	for (int i = 0; i < NEVENTS; i++)
		sc->events[i].del = false;
	sc->nrefetches = NEVENTS + 2;
	for (int i = 0; i < sc->nrefetches; i++)
	{
		sc->refetches[i] = random_step(0, 200 + i);
		sc->refetches[i].seq = sc->events[NEVENTS - 1].seq + 6 + (uint64_t) i;
		sc->refetches[i].bad = sc->refetches[i].del = sc->refetches[i].fail = false;
	}
}

/* ---- JSON for node ---- */

static void
json_step(FILE *f, const step *s)
{
	fprintf(f, "{\"seq\":%llu,\"bad\":%s,\"del\":%s,\"fail\":%s,\"sv\":\"%s\",\"name\":\"%s\"}",
			(unsigned long long) s->seq, s->bad ? "true" : "false", s->del ? "true" : "false",
			s->fail ? "true" : "false", s->sv, s->name);
}

static void
json_scripts(FILE *f, const script *scripts, int n)
{
	fputc('[', f);
	for (int k = 0; k < n; k++)
	{
		const script *sc = &scripts[k];

		fprintf(f, "%s{\"noRefetch\":%s,\"seed\":", k ? "," : "", sc->no_refetch ? "true" : "false");
		if (sc->has_seed)
			json_step(f, &sc->seed);
		else
			fputs("null", f);
		fputs(",\"events\":[", f);
		for (int i = 0; i < NEVENTS; i++)
		{
			if (i)
				fputc(',', f);
			json_step(f, &sc->events[i]);
		}
		fputs("],\"refetches\":[", f);
		for (int i = 0; i < sc->nrefetches; i++)
		{
			if (i)
				fputc(',', f);
			json_step(f, &sc->refetches[i]);
		}
		fputs("]}", f);
	}
	fputs("]\n", f);
}

/* ---- the C side ---- */

static bool
conf_parse(void *ctx, const uint8_t *mp, size_t len, const psync_envelope *env,
		   void *recycled, void **out, const char **error)
{
	char	   *v = recycled ? recycled : malloc(16);

	(void) ctx;
	(void) env;
	if (len == 1 && mp[0] == 0xc0)
		snprintf(v, 16, "null");
	else
		test_value_name(mp, len, v, 16);
	if (strcmp(v, "BAD") == 0)
	{
		if (v != recycled)
			free(v);
		*error = "bad";
		return false;
	}
	*out = v;
	return true;
}

static psync_envelope
envelope_of(const step *s)
{
	psync_envelope env = test_envelope("conf:1", s->seq, s->bad ? "BAD" : s->name);

	if (s->del)
	{
		env.value = (const uint8_t *) "\xc0";
		env.value_len = 1;
		env.op = PSYNC_OP_DELETE;
	}
	env.schema_version = s->sv;
	env.schema_version_len = strlen(s->sv);
	return env;
}

typedef struct outcomes
{
	const script *sc;
	int			next;
} outcomes;

static void
conf_refetch(void *ctx, const char *key, psync_refetch_request *req)
{
	outcomes   *o = ctx;
	const step *s = o->next < o->sc->nrefetches ? &o->sc->refetches[o->next++] : NULL;
	psync_envelope env;
	test_buf	b;

	(void) key;
	if (s == NULL || s->fail)
	{
		psync_refetch_fail(req, "scripted failure");
		return;
	}
	env = envelope_of(s);
	env.op = PSYNC_OP_SNAPSHOT;
	b = test_encode(&env);
	psync_refetch_complete(req, b.data, b.len);
	free(b.data);
}

static void
format_value(void *ctx, const void *value, const psync_replica_metadata *meta)
{
	(void) meta;
	snprintf(ctx, 16, "%s", value ? (const char *) value : "undefined");
}

static size_t
print_state(psync_replica *r, char *out)
{
	psync_replica_metadata m;
	psync_replica_counters s;
	char		value[16];

	psync_replica_meta(r, &m);
	psync_replica_stats(r, &s);
	psync_replica_get(r, format_value, value);
	return (size_t) sprintf(out, "%lld %s %s %llu %llu %llu %llu %llu %s\n",
							(long long) m.sequence, psync_replica_status_name(m.status),
							m.has_schema_version ? m.schema_version : "-",
							(unsigned long long) s.applied, (unsigned long long) s.ignored_stale,
							(unsigned long long) s.gaps, (unsigned long long) s.parse_errors,
							(unsigned long long) s.refetches, value);
}

static size_t
run_c(const script *sc, char *out)
{
	psync_transport *t;
	psync_replica *r;
	psync_replica_options o;
	outcomes	oc = {sc, 0};
	test_buf	seed = {NULL, 0};
	size_t		n = 0;

	psync_inprocess_transport_new(&t);
	psync_replica_options_init(&o);
	o.key = "conf:1";
	o.schema = (psync_schema) {conf_parse, test_free_value, NULL};
	o.transport = t;
	if (!sc->no_refetch)
	{
		o.refetch = conf_refetch;
		o.refetch_ctx = &oc;
	}
	if (sc->has_seed)
	{
		psync_envelope env = envelope_of(&sc->seed);

		seed = test_encode(&env);
		o.seed = seed.data;
		o.seed_len = seed.len;
	}
	psync_replica_new(&o, &r);
	free(seed.data);
	n += print_state(r, out + n);
	for (int i = 0; i < NEVENTS; i++)
	{
		psync_envelope env = envelope_of(&sc->events[i]);

		psync_transport_publish(t, &env);
		n += print_state(r, out + n);
	}
	psync_replica_destroy(r);
	psync_transport_destroy(t);
	n += (size_t) sprintf(out + n, "--\n");
	return n;
}

/* ---- the C side: a collection member ---- */

typedef struct page
{
	const script *sc;
} page;

/* The only page: the seed as the row's snapshot. */
static psync_status
conf_load(void *ctx, const char *table, const char *after_key, int max_rows,
		  psync_page_row_fn row, void *row_ctx, char *error, size_t error_size)
{
	page	   *p = ctx;
	psync_envelope env;
	test_buf	b;

	(void) table, (void) max_rows, (void) error, (void) error_size;
	if (after_key != NULL)
		return PSYNC_OK;
	env = envelope_of(&p->sc->seed);
	env.op = PSYNC_OP_SNAPSHOT;
	b = test_encode(&env);
	row(row_ctx, b.data, b.len);
	free(b.data);
	return PSYNC_OK;
}

typedef struct member_state
{
	int64_t		seq;
	char		value[16];
} member_state;

static void
visit_member(void *ctx, const char *key, size_t key_len, const void *value, int64_t seq)
{
	member_state *m = ctx;

	(void) key, (void) key_len;
	m->seq = seq;
	snprintf(m->value, sizeof(m->value), "%s", (const char *) value);
}

/* sequence ignored_stale gaps parse_errors refetches value */
static size_t
print_member(psync_collection *c, char *out)
{
	member_state m = {-1, "undefined"};
	psync_collection_counters s;

	psync_collection_get(c, "conf:1", visit_member, &m);
	psync_collection_stats(c, &s);
	return (size_t) sprintf(out, "%lld %llu %llu %llu %llu %s\n", (long long) m.seq,
							(unsigned long long) s.ignored_stale, (unsigned long long) s.gaps,
							(unsigned long long) s.parse_errors,
							(unsigned long long) s.row_refetches, m.value);
}

static size_t
run_member(const script *sc, char *out)
{
	psync_transport *t;
	psync_collection *c = NULL;
	psync_collection_options o;
	outcomes	oc = {sc, 0};
	page		pg = {sc};
	size_t		n = 0;

	psync_inprocess_transport_new(&t);
	psync_collection_options_init(&o);
	o.table = "conf";
	o.schema = (psync_schema) {conf_parse, test_free_value, NULL};
	o.transport = t;
	o.load_page = conf_load;
	o.load_ctx = &pg;
	o.refetch = conf_refetch;
	o.refetch_ctx = &oc;
	CHECK_EQ_INT(psync_collection_new(&o, &c), PSYNC_OK);
	n += print_member(c, out + n);
	for (int i = 0; i < NEVENTS; i++)
	{
		psync_envelope env = envelope_of(&sc->events[i]);

		psync_transport_publish(t, &env);
		n += print_member(c, out + n);
	}
	psync_collection_destroy(c);
	psync_transport_destroy(t);
	n += (size_t) sprintf(out + n, "--\n");
	return n;
}

/*
 * The seed's lines cut to what a collection member has: fields 1 (sequence),
 * 5-8 (ignored_stale, gaps, parse_errors, refetches) and 9 (value).
 */
static size_t
member_columns(const char *js, char *out)
{
	size_t		n = 0;

	while (*js)
	{
		const char *eol = strchr(js, '\n');
		char		f[9][24];

		if (strncmp(js, "--", 2) == 0)
			n += (size_t) sprintf(out + n, "--\n");
		else if (sscanf(js, "%23s %23s %23s %23s %23s %23s %23s %23s %23s",
						f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]) == 9)
			n += (size_t) sprintf(out + n, "%s %s %s %s %s %s\n",
								  f[0], f[4], f[5], f[6], f[7], f[8]);
		if (eol == NULL)
			break;
		js = eol + 1;
	}
	out[n] = '\0';
	return n;
}

/* ---- compare ---- */

/* Some member ended a script having seen stale ones, gaps and parse errors. */
static bool
exercised(const char *out)
{
	unsigned long long stale = 0,
				gaps = 0,
				bad = 0;

	for (const char *l = out; l != NULL && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
	{
		long long	seq;
		unsigned long long s,
					g,
					b;

		if (sscanf(l, "%lld %llu %llu %llu", &seq, &s, &g, &b) == 4)
		{
			stale = s > stale ? s : stale;
			gaps = g > gaps ? g : gaps;
			bad = b > bad ? b : bad;
		}
	}
	return stale > 0 && gaps > 0 && bad > 0;
}

/* Report the first line where a and b differ; false if they do. */
static bool
same_output(const char *what, const char *a, const char *b)
{
	int			line = 0;

	if (strcmp(a, b) == 0)
		return true;
	while (*a && *a == *b)
	{
		if (*a == '\n')
			line++;
		a++;
		b++;
	}
	fprintf(stderr, "  %s: first difference at output line %d:\n  C:  %.120s\n  JS: %.120s\n",
			what, line + 1, a, b);
	return false;
}

static const char *seed_dir;

static void
libparasync_agrees_with_the_seed(void)
{
	static script scripts[NSCRIPTS + NMEMBER_SCRIPTS];
	char	   *c_out = malloc(OUT_MAX),
			   *js_out = malloc(OUT_MAX),
			   *m_out = malloc(OUT_MAX),
			   *js_m_out = malloc(OUT_MAX);
	size_t		m_len = 0;
	const char *js_members;
	char		path[] = "/tmp/psync-conformance-XXXXXX";
	char		cmd[1024];
	size_t		c_len = 0,
				js_len = 0,
				got;
	int			fd = mkstemp(path);
	FILE	   *f = fd >= 0 ? fdopen(fd, "w") : NULL,
			   *p;

	CHECK(f != NULL);
	if (f == NULL)
		return;
	for (int k = 0; k < NSCRIPTS; k++)
	{
		make_script(&scripts[k]);
		c_len += run_c(&scripts[k], c_out + c_len);
	}
	for (int k = NSCRIPTS; k < NSCRIPTS + NMEMBER_SCRIPTS; k++)
	{
		make_member_script(&scripts[k]);
		c_len += run_c(&scripts[k], c_out + c_len);
		m_len += run_member(&scripts[k], m_out + m_len);
	}
	m_out[m_len] = '\0';
	json_scripts(f, scripts, NSCRIPTS + NMEMBER_SCRIPTS);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "node test/client/conformance_seed.mjs '%s' '%s'", seed_dir, path);
	p = popen(cmd, "r");
	while (p != NULL && (got = fread(js_out + js_len, 1, OUT_MAX - js_len - 1, p)) > 0)
		js_len += got;
	CHECK(p != NULL && pclose(p) == 0);
	unlink(path);
	c_out[c_len] = js_out[js_len] = '\0';
	/* the scripts must exercise the rules, and node must have answered */
	CHECK(strstr(c_out, " ok ") && strstr(c_out, " stale ") && strstr(c_out, " skew "));
	CHECK(js_len > 0);
	{
		int			lines = 0;

		for (const char *q = js_out; *q; q++)
			lines += *q == '\n';
		CHECK_EQ_INT(lines, (NSCRIPTS + NMEMBER_SCRIPTS) * (NEVENTS + 2));
	}
	CHECK(same_output("replica", c_out, js_out));
	/* the collection member against the seed, on the member scripts */
	js_members = js_out;
	for (int k = 0; k < NSCRIPTS && js_members != NULL; k++)
		if ((js_members = strstr(js_members, "--\n")) != NULL)
			js_members += 3;
	CHECK(js_members != NULL);
	if (js_members != NULL)
	{
		member_columns(js_members, js_m_out);
		/* they too must exercise the rules: stale, gaps, parse errors */
		CHECK(exercised(m_out));
		CHECK(same_output("collection member", m_out, js_m_out));
	}
	free(c_out);
	free(js_out);
	free(m_out);
	free(js_m_out);
}

int
main(int argc, char **argv)
{
	struct stat st;

	seed_dir = argc > 1 ? argv[1] : getenv("PSYNC_SEED_DIR");
	if (seed_dir == NULL || seed_dir[0] == '\0')
	{
		printf("skip - seed conformance: PSYNC_SEED_DIR not set\n");
		return 0;
	}
	if (stat(seed_dir, &st) != 0 || system("node --version >/dev/null 2>&1") != 0)
	{
		printf("skip - seed conformance: node or %s not available\n", seed_dir);
		return 0;
	}
	RUN(libparasync_agrees_with_the_seed);
	return harness_finish();
}
