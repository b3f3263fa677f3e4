/*
 * db: kmsctl's statements against the KM-S's database. Connecting goes
 * through pgconn_open() like the service's; a failure becomes kmsctl's one
 * line on stderr here, at the libpq boundary, so that the commands only
 * choose their exit codes. The changes' admin audit rows are written here
 * too: every change goes through db_change(), so none can skip its row.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "db.h"
#include "pgconn.h"
PGconn *db_connect(const char *dsn)
{
	char why[512];
	PGconn *c = pgconn_open(dsn, why, sizeof why);
	if (c == NULL)
		cli_fail(0, "cannot connect to PostgreSQL", why);
	return c;
}

PGresult *db_run_quiet(PGconn *c, const char *sql, int n, const char *const *params,
                       const char *quiet_state, int *quiet)
{
	PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);
	if (r != NULL && (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK))
		return r;
	const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (quiet_state != NULL && state != NULL && strcmp(state, quiet_state) == 0)
		*quiet = 1;
	else
		cli_fail(0, "database", msg != NULL ? msg : PQerrorMessage(c));
	PQclear(r);
	return NULL;
}

PGresult *db_run(PGconn *c, const char *sql, int n, const char *const *params)
{
	return db_run_quiet(c, sql, n, params, NULL, NULL);
}

const char *db_cell(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

int db_snapshot(PGconn *c)
{
	PGresult *r = db_run(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL);
	if (r == NULL)
		return -1;
	PQclear(r);
	return 0;
}

/* Read only: there is nothing a failed COMMIT could lose. */
void db_snapshot_end(PGconn *c)
{
	PQclear(PQexec(c, "COMMIT"));
}

/* ---- changes and their audit rows ---- */

int db_begin(PGconn *c)
{
	PGresult *r = db_run(c, "BEGIN", 0, NULL);
	if (r == NULL)
		return -1;
	PQclear(r);
	return 0;
}

void db_rollback(PGconn *c)
{
	PQclear(PQexec(c, "ROLLBACK"));
}

PGresult *db_lock_row(PGconn *c, const char *sql, int n, const char *const *params,
                      const char *what, int *rc)
{
	PGresult *b;
	*rc = CLI_EXIT_RUNTIME;
	if (db_begin(c) != 0)
		return NULL;
	b = db_run(c, sql, n, params);
	if (b != NULL && PQntuples(b) == 0) {
		char line[80];
		snprintf(line, sizeof line, "no such %s", what);
		*rc = cli_fail(CLI_EXIT_NOT_FOUND, line, NULL);
		PQclear(b);
		b = NULL;
	}
	if (b == NULL)
		db_rollback(c);
	return b;
}

/* COMMIT of a failed transaction answers "ROLLBACK" without an error:
 * only the command tag tells. */
static int db_commit(PGconn *c)
{
	PGresult *r = db_run(c, "COMMIT", 0, NULL);
	int ok = r != NULL && strcmp(PQcmdStatus(r), "COMMIT") == 0;
	if (r != NULL && !ok)
		cli_fail(0, "database", "the change was rolled back");
	PQclear(r);
	return ok ? 0 : -1;
}

/* The change's admin audit row, inside its transaction. before and after
 * are JSON texts of the row (NULL: it did not exist). */
static int audit_change(PGconn *c, const char *actor, const char *action, const char *subject,
                        const char *before, const char *after)
{
	const char *p[5] = {actor, action, subject, before, after};
	PGresult *r = db_run(c,
	                     "INSERT INTO admin_audit (actor, action, subject, before, after)"
	                     " VALUES ($1, $2, $3, $4::jsonb, $5::jsonb)",
	                     5, p);
	if (r == NULL)
		return -1;
	PQclear(r);
	return 0;
}

int db_change(PGconn *c, const char *actor, const char *action, const char *subject,
              const char *before, const char *after)
{
	if (audit_change(c, actor, action, subject, before, after) != 0 || db_commit(c) != 0) {
		db_rollback(c);
		return -1;
	}
	return 0;
}
