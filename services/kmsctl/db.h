/*
 * db: kmsctl's use of PostgreSQL. One connection per run; every statement
 * is parameterized; a failure is printed here, once, as kmsctl's one line on
 * stderr, so that a command only decides its exit code. A change (provider
 * add, disable, enable; sla add, revoke) runs in one transaction with its
 * admin audit row: db_begin(), the change's statements, db_change().
 */
#ifndef KMSCTL_DB_H
#define KMSCTL_DB_H

#include <libpq-fe.h>

/* ISO 8601 UTC with milliseconds, for every timestamptz shown. */
#define DB_ISO(col) "to_char((" col ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* A connection to dsn, or NULL with the failure printed. Caller closes it
 * with PQfinish(). */
PGconn *db_connect(const char *dsn) __attribute__((warn_unused_result));

/* Run one parameterized statement. Returns its result (caller frees with
 * PQclear()), or NULL with the failure printed, unless its SQLSTATE is
 * quiet_state, which the caller handles: then nothing is printed and *quiet
 * is set to 1. */
PGresult *db_run_quiet(PGconn *c, const char *sql, int n, const char *const *params,
                       const char *quiet_state, int *quiet) __attribute__((warn_unused_result));
/* db_run_quiet() with every failure printed. */
PGresult *db_run(PGconn *c, const char *sql, int n, const char *const *params)
    __attribute__((warn_unused_result));

/* The value at (row, col), borrowed from r; NULL for SQL NULL. */
const char *db_cell(const PGresult *r, int row, int col);

/* BEGIN; 0, or -1 with the failure printed. */
int db_begin(PGconn *c) __attribute__((warn_unused_result));
/* ROLLBACK; nothing to report: the change is abandoned either way. */
void db_rollback(PGconn *c);

/* Begin a change of one row: BEGIN, then sql, a SELECT ... FOR UPDATE of the
 * row as it is (its JSON text for the audit row's "before"), which locks it
 * until the change commits. Returns that result (caller frees with
 * PQclear()), or NULL with the transaction rolled back and *rc set:
 * CLI_EXIT_NOT_FOUND with "no such WHAT" printed when there is no such row,
 * CLI_EXIT_RUNTIME with the failure printed otherwise. */
PGresult *db_lock_row(PGconn *c, const char *sql, int n, const char *const *params,
                      const char *what, int *rc) __attribute__((warn_unused_result));

/* A read-only snapshot for the reads of one command (a view of rows that
 * belong together); 0, or -1 with the failure printed. db_snapshot_end()
 * lets it go. */
int db_snapshot(PGconn *c) __attribute__((warn_unused_result));
void db_snapshot_end(PGconn *c);

/* Finish a change whose statements went through: its admin audit row (who:
 * actor and the database role; what: action on subject; before and after:
 * JSON texts of the row, NULL for what did not exist), then the commit.
 * Returns 0, or -1 with the change rolled back and the failure printed: a
 * change whose audit row cannot be written does not happen. */
int db_change(PGconn *c, const char *actor, const char *action, const char *subject,
              const char *before, const char *after) __attribute__((warn_unused_result));

#endif
