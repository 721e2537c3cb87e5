/*
 * client_bench.c — decode + reconcile throughput of libparasync.
 *
 * Builds ROUNDS x N in-order envelopes of about 150 bytes for one key (a
 * users row: int id, two strings, an int, a bool, a timestamp), then times,
 * on one core, the client's receive path for each: psync_envelope_decode,
 * psync_transport_publish on the in-process transport, and the replica's
 * parse gate (psync_schema_raw: keeps the value bytes) + sequence check +
 * apply.  This is the same path the seed's JS client runs (msgpackr unpack →
 * InProcessTransport.publish → createClientReplica ingest).
 *
 * Writes the envelopes (u32 little-endian length + bytes each) to the file
 * given as argv[1], so the JS half of the benchmark decodes the very same
 * bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>

#include "para_sync/client.h"

#define N 500000
#define ROUNDS 5

typedef struct corpus
{
	char	   *data;
	size_t		len;
	size_t		cap;
	size_t	   *offsets;
	size_t	   *lengths;
} corpus;

static int
corpus_write(void *ctx, const char *bytes, size_t len)
{
	corpus	   *c = ctx;

	if (c->len + len > c->cap)
	{
		c->cap = (c->len + len) * 2;
		c->data = realloc(c->data, c->cap);
		if (c->data == NULL)
			return -1;
	}
	memcpy(c->data + c->len, bytes, len);
	c->len += len;
	return 0;
}

static void
build_value(msgpack_sbuffer *sb, uint64_t seq)
{
	msgpack_packer pk;
	msgpack_timestamp ts = {1700000000 + (int64_t) seq, 0};
	char		name[32];

	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	snprintf(name, sizeof(name), "ada lovelace %llu", (unsigned long long) (seq % 1000));
	msgpack_pack_map(&pk, 6);
	msgpack_pack_str_with_body(&pk, "id", 2);
	msgpack_pack_int64(&pk, 123);
	msgpack_pack_str_with_body(&pk, "name", 4);
	msgpack_pack_str_with_body(&pk, name, strlen(name));
	msgpack_pack_str_with_body(&pk, "email", 5);
	msgpack_pack_str_with_body(&pk, "ada@example.com", 15);
	msgpack_pack_str_with_body(&pk, "score", 5);
	msgpack_pack_int64(&pk, (int64_t) (seq * 7 % 100000));
	msgpack_pack_str_with_body(&pk, "active", 6);
	msgpack_pack_true(&pk);
	msgpack_pack_str_with_body(&pk, "updated_at", 10);
	msgpack_pack_timestamp(&pk, &ts);
}

/* Envelopes with sequences 1..N for each round (a fresh replica per round). */
static void
build_corpus(corpus *c)
{
	msgpack_sbuffer sb;

	c->offsets = malloc(sizeof(size_t) * N);
	c->lengths = malloc(sizeof(size_t) * N);
	msgpack_sbuffer_init(&sb);
	for (uint64_t i = 0; i < N; i++)
	{
		psync_envelope env = {0};
		size_t		start = c->len;

		msgpack_sbuffer_clear(&sb);
		build_value(&sb, i + 1);
		env.key = "users:123";
		env.key_len = 9;
		env.value = (const uint8_t *) sb.data;
		env.value_len = sb.size;
		env.has_value = true;
		env.schema_version = "3.1";
		env.schema_version_len = 3;
		env.sequence = i + 1;
		env.op = PSYNC_OP_UPSERT;
		env.has_txid = true;
		env.txid = 750000 + i;
		if (psync_envelope_encode(&env, corpus_write, c) != 0)
		{
			fprintf(stderr, "encode failed\n");
			exit(1);
		}
		c->offsets[i] = start;
		c->lengths[i] = c->len - start;
	}
	msgpack_sbuffer_destroy(&sb);
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static double
run_decode_only(const corpus *c)
{
	double		t0 = now_seconds();
	uint64_t	check = 0;

	for (size_t i = 0; i < N; i++)
	{
		psync_envelope env;

		if (psync_envelope_decode(c->data + c->offsets[i], c->lengths[i], &env) != PSYNC_DECODE_OK)
			exit(2);
		check += env.sequence;
	}
	if (check != (uint64_t) N * (N + 1) / 2)
		exit(3);
	return N / (now_seconds() - t0);
}

static double
run_reconcile(const corpus *c)
{
	psync_transport *t;
	psync_replica *r;
	psync_replica_options o;
	psync_replica_counters stats;
	double		t0,
				elapsed;

	psync_inprocess_transport_new(&t);
	psync_replica_options_init(&o);
	o.key = "users:123";
	psync_schema_raw(&o.schema);
	o.transport = t;
	if (psync_replica_new(&o, &r) != PSYNC_OK)
		exit(4);
	t0 = now_seconds();
	for (size_t i = 0; i < N; i++)
	{
		psync_envelope env;

		if (psync_envelope_decode(c->data + c->offsets[i], c->lengths[i], &env) != PSYNC_DECODE_OK)
			exit(2);
		psync_transport_publish(t, &env);
	}
	elapsed = now_seconds() - t0;
	psync_replica_stats(r, &stats);
	if (stats.applied != N || stats.gaps != 0 || stats.ignored_stale != 0)
	{
		fprintf(stderr, "wrong result: applied %llu\n", (unsigned long long) stats.applied);
		exit(5);
	}
	psync_replica_destroy(r);
	psync_transport_destroy(t);
	return N / elapsed;
}

static int
compare_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

static void
write_corpus(const corpus *c, const char *path)
{
	FILE	   *f = fopen(path, "wb");

	if (f == NULL)
	{
		perror(path);
		exit(6);
	}
	for (size_t i = 0; i < N; i++)
	{
		uint32_t	len = (uint32_t) c->lengths[i];
		unsigned char le[4] = {len & 0xff, (len >> 8) & 0xff, (len >> 16) & 0xff, len >> 24};

		fwrite(le, 1, 4, f);
		fwrite(c->data + c->offsets[i], 1, c->lengths[i], f);
	}
	fclose(f);
}

int
main(int argc, char **argv)
{
	corpus		c = {0};
	double		decode[ROUNDS],
				full[ROUNDS];

	build_corpus(&c);
	for (int i = 0; i < ROUNDS; i++)
	{
		decode[i] = run_decode_only(&c);
		full[i] = run_reconcile(&c);
	}
	qsort(decode, ROUNDS, sizeof(double), compare_double);
	qsort(full, ROUNDS, sizeof(double), compare_double);
	printf("envelopes: %d per round, %d rounds, mean size %.0f bytes\n", N, ROUNDS,
		   (double) c.len / N);
	printf("C decode only:          %12.0f envelopes/s (median)\n", decode[ROUNDS / 2]);
	printf("C decode + reconcile:   %12.0f envelopes/s (median; best %.0f)\n",
		   full[ROUNDS / 2], full[ROUNDS - 1]);
	if (argc > 1)
		write_corpus(&c, argv[1]);
	free(c.data);
	free(c.offsets);
	free(c.lengths);
	return 0;
}
