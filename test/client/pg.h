/*
 * pg.h — libpq helpers for the client tests that need a real para_sync
 * database (PSYNC_TEST_CONNINFO, set up by run-tests).
 */
#ifndef PSYNC_TEST_PG_H
#define PSYNC_TEST_PG_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

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

/*
 * The start of a live test's main(): a connection to the para_sync database
 * (extension created), or NULL with *exit_code set: 0 (skip) when run
 * outside make client-check, 1 when the database is not usable.
 */
static inline PGconn *
pg_live_connect(int *exit_code)
{
	PGconn	   *c;

	if (getenv("PSYNC_TEST_CONNINFO") == NULL || getenv("PSYNC_TEST_NATS_URL") == NULL)
	{
		printf("skip - PSYNC_TEST_CONNINFO / PSYNC_TEST_NATS_URL not set (run through make client-check)\n");
		*exit_code = 0;
		return NULL;
	}
	c = pg_connect();
	if (c == NULL || pg_exec(c, "CREATE EXTENSION IF NOT EXISTS para_sync") == NULL)
	{
		printf("not ok - para_sync database not usable\n");
		*exit_code = 1;
		return NULL;
	}
	return c;
}

/*
 * Bring the extension to the installed version and check that the function
 * procedure (a regprocedure text) exists; false after printing "not ok".
 */
static inline bool
pg_live_require(PGconn *c, const char *procedure)
{
	char		sql[256];
	const char *has;

	pg_exec(c, "ALTER EXTENSION para_sync UPDATE");
	snprintf(sql, sizeof(sql), "SELECT to_regprocedure('%s') IS NOT NULL", procedure);
	has = pg_exec(c, sql);
	if (has == NULL || strcmp(has, "t") != 0)
	{
		printf("not ok - %s does not exist\n", procedure);
		return false;
	}
	return true;
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
