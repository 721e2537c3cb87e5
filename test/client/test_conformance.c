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
 * Skips when node or the seed is not there (argv[1] = seed dir).
 */
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define NSCRIPTS 400
#define NEVENTS 40
#define OUT_MAX (NSCRIPTS * (NEVENTS + 2) * 96)

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

/* ---- compare ---- */

static const char *seed_dir;

static void
libparasync_agrees_with_the_seed(void)
{
	static script scripts[NSCRIPTS];
	char	   *c_out = malloc(OUT_MAX),
			   *js_out = malloc(OUT_MAX);
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
	json_scripts(f, scripts, NSCRIPTS);
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
		CHECK_EQ_INT(lines, NSCRIPTS * (NEVENTS + 2));
	}
	if (c_len != js_len || memcmp(c_out, js_out, c_len) != 0)
	{
		/* show the first differing line and its script */
		const char *a = c_out,
				   *b = js_out;
		int			line = 0;

		while (*a && *a == *b)
		{
			if (*a == '\n')
				line++;
			a++;
			b++;
		}
		fprintf(stderr, "  first difference at output line %d:\n  C:  %.120s\n  JS: %.120s\n",
				line + 1, a, b);
		harness_case_failed = 1;
	}
	free(c_out);
	free(js_out);
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
