/*
 * store: the KM-S's PostgreSQL connection and its schema (see store.h for the
 * contract). The batch itself, read and written set-based, is store_batch.c;
 * what the two share is in store_pg.h.
 */
#include "store.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embedded.h"
#include "errstr.h"
#include "pgconn.h"
#include "sla.h"
#include "store_pg.h"
#include "utf8.h"

/* Lock key of store_migrate: any constant other programs are unlikely to use. */
#define MIGRATE_LOCK_KEY "7306255117424651137"

/* ---- small helpers ---- */

int store_is_item_sqlstate(const char *state)
{
	/* 22 data exception, 23 integrity constraint violation, 54 program
	 * limit exceeded (e.g. an identity too long for a btree index entry):
	 * each caused by one message's data, not by the database's state */
	return state != NULL && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0 ||
	                         strncmp(state, "54", 2) == 0);
}

/* ---- connection ---- */

static int connect_now(store *s, char *errstr, size_t errstr_size)
{
	char why[512];

	if (s->conn != NULL)
		PQfinish(s->conn);
	s->prepared = 0;
	s->broken = 0;
	s->conn = pgconn_open(s->dsn, why, sizeof why);
	if (s->conn == NULL) {
		errstr_line(errstr, errstr_size, "postgresql connect", why);
		return -1;
	}
	return 0;
}

/* Make sure the connection is usable before a new unit of work. */
int store_ensure_conn(store *s, char *errstr, size_t errstr_size)
{
	if (s->conn != NULL && !s->broken && PQstatus(s->conn) == CONNECTION_OK)
		return 0;
	return connect_now(s, errstr, errstr_size);
}

store *store_new(const char *dsn, char *errstr, size_t errstr_size)
{
	store *s = calloc(1, sizeof *s);
	if (s == NULL) {
		errstr_line(errstr, errstr_size, "store", "out of memory");
		return NULL;
	}
	s->dsn = strdup(dsn != NULL ? dsn : "");
	if (s->dsn == NULL) {
		errstr_line(errstr, errstr_size, "store", "out of memory");
		goto fail;
	}
	if (connect_now(s, errstr, errstr_size) != 0)
		goto fail;
	return s;
fail:
	store_destroy(s);
	return NULL;
}

void store_destroy(store *s)
{
	if (s == NULL)
		return;
	if (s->conn != NULL)
		PQfinish(s->conn);
	free(s->dsn);
	free(s);
}

int store_reconnect(store *s, char *errstr, size_t errstr_size)
{
	PGconn *old = s->conn;
	int old_prepared = s->prepared, old_broken = s->broken;

	s->conn = NULL; /* connect_now() would close it first */
	if (connect_now(s, errstr, errstr_size) != 0) {
		if (s->conn != NULL)
			PQfinish(s->conn);
		s->conn = old;
		s->prepared = old_prepared;
		s->broken = old_broken;
		return -1;
	}
	if (old != NULL)
		PQfinish(old);
	return 0;
}

int store_exec_ok(PGconn *conn, PGresult *r, const char *what, char *errstr, size_t errstr_size)
{
	ExecStatusType st = PQresultStatus(r);
	if (r != NULL && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK))
		return 0;
	errstr_line(errstr, errstr_size, what,
	            r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(conn));
	return -1;
}

int store_ping(store *s, char *errstr, size_t errstr_size)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (store_ensure_conn(s, errstr, errstr_size) != 0)
			return -1;
		PGresult *r = PQexecParams(s->conn, "SELECT 1", 0, NULL, NULL, NULL, NULL, 0);
		int rc = store_exec_ok(s->conn, r, "postgresql ping", errstr, errstr_size);
		PQclear(r);
		if (rc == 0)
			return 0;
		/* a connection found dead by this very query is retried once */
		if (PQstatus(s->conn) == CONNECTION_OK)
			return -1;
	}
	return -1;
}

/* ---- migrations ---- */

/* The version of "NNN_name.sql": its leading digits. */
static int migration_version(const char *name, int *out)
{
	long v = 0;
	size_t i = 0;
	for (; name[i] >= '0' && name[i] <= '9'; i++) {
		v = v * 10 + (name[i] - '0');
		if (v > 999999)
			return -1;
	}
	size_t len = strlen(name);
	if (i == 0 || name[i] != '_' || len < 5 || strcmp(name + len - 4, ".sql") != 0)
		return -1;
	*out = (int)v;
	return 0;
}

static int exec_simple(store *s, const char *sql, const char *what, char *errstr,
                       size_t errstr_size)
{
	PGresult *r = PQexec(s->conn, sql);
	int rc = store_exec_ok(s->conn, r, what, errstr, errstr_size);
	PQclear(r);
	return rc;
}

static int migration_applied(store *s, int version, int *applied, char *errstr, size_t errstr_size)
{
	char v[16];
	snprintf(v, sizeof v, "%d", version);
	const char *params[1] = {v};
	PGresult *r = PQexecParams(s->conn, "SELECT 1 FROM schema_migrations WHERE version = $1", 1,
	                           NULL, params, NULL, NULL, 0);
	int rc = store_exec_ok(s->conn, r, "read schema_migrations", errstr, errstr_size);
	if (rc == 0)
		*applied = PQntuples(r) > 0;
	PQclear(r);
	return rc;
}

/* Apply one migration in its own transaction. */
static int migration_apply(store *s, const embedded_file *f, int version, char *errstr,
                           size_t errstr_size)
{
	char what[160];
	snprintf(what, sizeof what, "migration %.100s", f->name);
	if (strlen(f->data) != f->len) {
		errstr_line(errstr, errstr_size, what, "contains a NUL byte");
		return -1;
	}
	if (exec_simple(s, "BEGIN", what, errstr, errstr_size) != 0)
		return -1;
	/* the file's statements are fixed DDL compiled into the binary */
	if (exec_simple(s, f->data, what, errstr, errstr_size) != 0)
		goto fail;
	char v[16];
	snprintf(v, sizeof v, "%d", version);
	const char *params[2] = {v, f->name};
	PGresult *r =
	    PQexecParams(s->conn, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
	                 2, NULL, params, NULL, NULL, 0);
	int rc = store_exec_ok(s->conn, r, what, errstr, errstr_size);
	PQclear(r);
	if (rc != 0)
		goto fail;
	if (exec_simple(s, "COMMIT", what, errstr, errstr_size) != 0)
		goto fail;
	return 0;
fail:
	PQclear(PQexec(s->conn, "ROLLBACK"));
	return -1;
}

int store_migrate(store *s, char *errstr, size_t errstr_size)
{
	int applied_count = 0, locked = 0;
	size_t n = embedded_migrations_count;
	int *versions = NULL;
	size_t *order = NULL;

	if (store_ensure_conn(s, errstr, errstr_size) != 0)
		return -1;
	versions = calloc(n + 1, sizeof *versions);
	order = calloc(n + 1, sizeof *order);
	if (versions == NULL || order == NULL) {
		errstr_line(errstr, errstr_size, "migrate", "out of memory");
		goto fail;
	}
	/* order by version; a name without one, or a repeated one, is a build
	 * mistake that must not half-apply */
	for (size_t i = 0; i < n; i++) {
		if (migration_version(embedded_migrations[i].name, &versions[i]) != 0) {
			errstr_line(errstr, errstr_size, embedded_migrations[i].name,
			            "migration name is not NNN_name.sql");
			goto fail;
		}
		size_t j = i;
		while (j > 0 && versions[order[j - 1]] > versions[i]) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	for (size_t i = 1; i < n; i++)
		if (versions[order[i]] == versions[order[i - 1]]) {
			errstr_line(errstr, errstr_size, embedded_migrations[order[i]].name,
			            "two migrations share a version");
			goto fail;
		}

	if (exec_simple(s, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", "migrate lock", errstr,
	                errstr_size) != 0)
		goto fail;
	locked = 1;
	if (exec_simple(s,
	                "CREATE TABLE IF NOT EXISTS schema_migrations ("
	                " version integer PRIMARY KEY,"
	                " name text NOT NULL,"
	                " applied_at timestamptz NOT NULL DEFAULT now())",
	                "create schema_migrations", errstr, errstr_size) != 0)
		goto fail;
	for (size_t k = 0; k < n; k++) {
		const embedded_file *f = &embedded_migrations[order[k]];
		int applied = 0;
		if (migration_applied(s, versions[order[k]], &applied, errstr, errstr_size) != 0)
			goto fail;
		if (applied)
			continue;
		if (migration_apply(s, f, versions[order[k]], errstr, errstr_size) != 0)
			goto fail;
		applied_count++;
	}
	/* new tables: statements are prepared again on first use */
	if (applied_count > 0)
		s->prepared = 0;
	PQclear(PQexec(s->conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")"));
	free(versions);
	free(order);
	return applied_count;
fail:
	if (locked && PQstatus(s->conn) == CONNECTION_OK)
		PQclear(PQexec(s->conn, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")"));
	free(versions);
	free(order);
	return -1;
}
