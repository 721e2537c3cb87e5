/*
 * outbox_backlog.c — the outbox's backlog: how many envelopes wait in
 * para_sync.outbox and since when (the oldest queued_at).
 *
 * One query, used by the publisher's status (publisher_status.c: the
 * worker measures the backlog at most once a second, every ten seconds
 * while it drains a large one, and the para_sync.status view counts it
 * itself while no worker runs).  It
 * reads the outbox through SPI: a count(*) costs time in proportion to the
 * backlog, which is why its callers ration it.  And DROP EXTENSION's
 * check (ddl_guard_drop.c): is the outbox empty, how many objects' last
 * sequences would the drop discard (outbox_backlog_at_drop()).
 *
 * The outbox family: outbox_append.c (sequences, append, counters),
 * outbox_consume.c (read, remove), outbox_backlog.c (count),
 * outbox_vacuum.c (vacuum after a drain).
 */
#include "para_sync.h"
#include "publisher.h"

#include "executor/spi.h"
#include "utils/timestamp.h"

/*
 * Count the outbox: its rows and the oldest queued_at (0 when empty).
 * Inside SPI_connect.  With plan, the plan is prepared once and kept there
 * (the worker); without, planned for this call.  false: the query failed.
 */
bool
outbox_backlog_count(SPIPlanPtr *plan, int64 *count, TimestampTz *oldest)
{
	static const char sql[] = "SELECT pg_catalog.count(*), pg_catalog.min(o.queued_at)"
		"  FROM para_sync.outbox o";
	int			rc;
	bool		null1,
				null2;
	Datum		min;

	if (plan != NULL && *plan == NULL)
	{
		*plan = SPI_prepare(sql, 0, NULL);
		if (*plan == NULL || SPI_keepplan(*plan) != 0)
			elog(ERROR, "para_sync: could not prepare the backlog query: %s",
				 SPI_result_code_string(SPI_result));
	}
	rc = plan != NULL ? SPI_execute_plan(*plan, NULL, NULL, true, 1) :
		SPI_execute(sql, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		return false;
	*count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &null1));
	min = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &null2);
	*oldest = null2 ? 0 : DatumGetTimestampTz(min);
	return true;
}

/*
 * DROP EXTENSION's question (ddl_guard_drop.c): does the outbox hold
 * envelopes, and how many objects' last sequences do the counters keep
 * (objects only: a sync name's own counter numbers its table events)?  As
 * the extension owner; caller is connected to SPI.
 */
void
outbox_backlog_at_drop(bool *queued, int64 *objects)
{
	bool		isnull;

	if (catalog_execute_as_owner("SELECT (SELECT pg_catalog.count(*) FROM (SELECT 1 FROM para_sync.outbox LIMIT 1) o),"
								 " (SELECT pg_catalog.count(*) FROM para_sync.counters c"
								 "   WHERE pg_catalog.strpos(c.key, ':') OPERATOR(pg_catalog.>) 0)",
								 0, NULL, NULL, NULL) != SPI_OK_SELECT)
		elog(ERROR, "para_sync outbox look-up failed");
	*queued = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) > 0;
	*objects = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
}
