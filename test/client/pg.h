/*
 * pg.h — libpq helpers for the client tests that need a real para_sync
 * database (PSYNC_TEST_CONNINFO, set up by run-tests).
 */
#ifndef PSYNC_TEST_PG_H
#define PSYNC_TEST_PG_H

#include <libpq-fe.h>

static inline PGconn *
pg_connect(void)
{
	const char *conninfo = getenv("PSYNC_TEST_CONNINFO");
	PGconn	   *c;

	if (conninfo == NULL)
		return NULL;
	c = PQconnectdb(conninfo);
	if (PQstatus(c) != CONNECTION_OK)
	{
		fprintf(stderr, "  connect: %s", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	return c;
}

/* Run sql; returns the first column of the first row (static), "" if none, NULL on error. */
static inline const char *
pg_exec(PGconn *c, const char *sql)
{
	static __thread char result[1024];
	PGresult   *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);

	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
	{
		fprintf(stderr, "  SQL failed: %s\n  %s", sql, PQerrorMessage(c));
		PQclear(r);
		return NULL;
	}
	result[0] = '\0';
	if (st == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
		snprintf(result, sizeof(result), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return result;
}

/* A table name unique to this process, for tests that share a cluster. */
static inline const char *
pg_table_name(const char *stem)
{
	static __thread char name[64];

	snprintf(name, sizeof(name), "%s_%d", stem, (int) getpid());
	return name;
}

#endif							/* PSYNC_TEST_PG_H */
