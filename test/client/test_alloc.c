/*
 * test_alloc.c — the in-order receive path allocates nothing.
 *
 * Linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc so that every
 * allocation made by libparasync (linked statically) is counted.  After a
 * warm-up, decoding and reconciling in-order envelopes through the
 * in-process transport with psync_schema_raw must not allocate at all.
 */
#include "harness.h"

void	   *__real_malloc(size_t size);
void	   *__real_calloc(size_t n, size_t size);
void	   *__real_realloc(void *p, size_t size);

static long allocations;

void *
__wrap_malloc(size_t size)
{
	allocations++;
	return __real_malloc(size);
}

void *
__wrap_calloc(size_t n, size_t size)
{
	allocations++;
	return __real_calloc(n, size);
}

void *
__wrap_realloc(void *p, size_t size)
{
	allocations++;
	return __real_realloc(p, size);
}

static void
in_order_path_does_not_allocate(void)
{
	psync_transport *t;
	psync_replica *r;
	psync_replica_options o;
	test_buf	encoded[200];
	psync_replica_counters stats;

	for (int i = 0; i < 200; i++)
	{
		psync_envelope env = test_envelope("users:1", (uint64_t) i + 1, "steady");

		encoded[i] = test_encode(&env);
	}
	CHECK_EQ_INT(psync_inprocess_transport_new(&t), PSYNC_OK);
	psync_replica_options_init(&o);
	o.key = "users:1";
	psync_schema_raw(&o.schema);
	o.transport = t;
	CHECK_EQ_INT(psync_replica_new(&o, &r), PSYNC_OK);

	for (int i = 0; i < 200; i++)
	{
		psync_envelope env;

		if (i == 10)
			allocations = 0;	/* warmed up: two values exist */
		CHECK_EQ_INT(psync_envelope_decode(encoded[i].data, encoded[i].len, &env), PSYNC_DECODE_OK);
		CHECK_EQ_INT(psync_transport_publish(t, &env), PSYNC_OK);
	}
	CHECK_EQ_INT(allocations, 0);
	psync_replica_stats(r, &stats);
	CHECK_EQ_INT(stats.applied, 200);
	psync_replica_destroy(r);
	psync_transport_destroy(t);
	for (int i = 0; i < 200; i++)
		free(encoded[i].data);
}

/* The wrap is in force for the library's own calls. */
static void
counting_works(void)
{
	long		before = allocations;
	psync_transport *t;

	CHECK_EQ_INT(psync_inprocess_transport_new(&t), PSYNC_OK);
	CHECK(allocations > before);
	psync_transport_destroy(t);
}

int
main(void)
{
	RUN(counting_works);
	RUN(in_order_path_does_not_allocate);
	return harness_finish();
}
