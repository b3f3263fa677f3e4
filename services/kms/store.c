/*
 * store: the KM-S's PostgreSQL side (see store.h for the contract).
 *
 * A batch is decided in one transaction, each message under its own
 * savepoint. To keep a batch of hundreds of messages from costing a dozen
 * round trips each, the connection runs in libpq pipeline mode while a batch
 * is decided: the writes of one message, the release of its savepoint, the
 * next message's savepoint and the reads that message needs travel together,
 * so a message costs one round trip. The statements still run in order, so
 * each message sees what the one before it wrote. Errors are rare and take a
 * slower path: a data error in a message's writes rolls back to its
 * savepoint and the message is decided once more (a concurrent KM-S may have
 * changed what it read: a unique violation on its audit row or decision means
 * the other instance got there first); if it fails again it is audited as an
 * internal error. Anything else (connection lost, serialization failure,
 * deadlock, a statement the server refuses) abandons the whole batch.
 *
 * Admissions are serialized per provider: every provider named in the batch
 * is locked at the start, in vsp_id order so two KM-S instances cannot
 * deadlock on them, and locked again (a no-op then) where each message reads
 * it. The lock is FOR NO KEY UPDATE rather than FOR UPDATE: it excludes the
 * other KM-S instances just the same, but not the KEY SHARE lock that the
 * foreign key of a concurrent insert (a VAL server admitted elsewhere, an SLA
 * being added) takes on the provider's row. The provider's VAL server count is read under that
 * lock; the batch's own admissions are counted here and added to the stored count once per provider
 * before the commit, because updating the provider's row for every admission makes every later read
 * of that row in the transaction slower (measured: a quarter of the time of a fleet's first
 * provisioning).
 */
#include "store.h"

#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsn.h"
#include "embedded.h"
#include "log.h"
#include "sla.h"
#include "validate.h"

struct store {
	PGconn *conn;
	char *dsn;
	int prepared; /* the statements below are prepared on conn */
	int broken;   /* conn is in an unknown state: reconnect before use */
};

static const char GENERIC_ERROR_DETAIL[] = "the KM-S could not record the request";
static const char CONFLICT_DETAIL[] = "requestId was already used with other content";

/* Lock key of store_migrate: any constant other programs are unlikely to use. */
#define MIGRATE_LOCK_KEY "7306255117424651137"

/* ---- small helpers ---- */

static void set_err(char *errstr, size_t errstr_size, const char *what, const char *why)
{
	if (errstr_size == 0)
		return;
	char line[512];
	int rc = snprintf(line, sizeof line, "%s: %s", what, why != NULL ? why : "unknown error");
	if (rc < 0)
		line[0] = '\0';
	/* libpq messages end with a newline; the caller wants one line */
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	size_t n = strlen(line);
	while (n > 0 && line[n - 1] == ' ')
		line[--n] = '\0';
	sla_utf8_copy(errstr, errstr_size, line);
}

static int parse_i64(const char *s, int64_t *out)
{
	if (s == NULL || *s == '\0')
		return -1;
	char *end = NULL;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		return -1;
	*out = (int64_t)v;
	return 0;
}

static int is_item_sqlstate(const char *state)
{
	/* 22 data exception, 23 integrity constraint violation, 54 program
	 * limit exceeded (e.g. an identity too long for a btree index entry):
	 * each caused by one message's data, not by the database's state */
	return state != NULL && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0 ||
	                         strncmp(state, "54", 2) == 0);
}

/* ---- connection ---- */

static void ignore_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static int connect_now(store *s, char *errstr, size_t errstr_size)
{
	if (s->conn != NULL)
		PQfinish(s->conn);
	s->prepared = 0;
	s->broken = 0;
	s->conn = PQconnectdb(s->dsn);
	if (s->conn == NULL) {
		set_err(errstr, errstr_size, "postgresql", "out of memory");
		return -1;
	}
	if (PQstatus(s->conn) != CONNECTION_OK) {
		set_err(errstr, errstr_size, "postgresql connect", PQerrorMessage(s->conn));
		dsn_scrub(s->dsn, errstr, errstr_size);
		return -1;
	}
	/* NOTICEs ("already exists, skipping") are not worth a line */
	PQsetNoticeProcessor(s->conn, ignore_notice, NULL);
	/* every string the store sends or reads is UTF-8 */
	if (PQsetClientEncoding(s->conn, "UTF8") != 0) {
		set_err(errstr, errstr_size, "postgresql client encoding", PQerrorMessage(s->conn));
		return -1;
	}
	return 0;
}

/* Make sure the connection is usable before a new unit of work. */
static int ensure_conn(store *s, char *errstr, size_t errstr_size)
{
	if (s->conn != NULL && !s->broken && PQstatus(s->conn) == CONNECTION_OK)
		return 0;
	return connect_now(s, errstr, errstr_size);
}

store *store_new(const char *dsn, char *errstr, size_t errstr_size)
{
	store *s = calloc(1, sizeof *s);
	if (s == NULL) {
		set_err(errstr, errstr_size, "store", "out of memory");
		return NULL;
	}
	s->dsn = strdup(dsn != NULL ? dsn : "");
	if (s->dsn == NULL) {
		set_err(errstr, errstr_size, "store", "out of memory");
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

static int exec_ok(PGconn *conn, PGresult *r, const char *what, char *errstr, size_t errstr_size)
{
	ExecStatusType st = PQresultStatus(r);
	if (r != NULL && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK))
		return 0;
	set_err(errstr, errstr_size, what,
	        r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(conn));
	return -1;
}

int store_ping(store *s, char *errstr, size_t errstr_size)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (ensure_conn(s, errstr, errstr_size) != 0)
			return -1;
		PGresult *r = PQexecParams(s->conn, "SELECT 1", 0, NULL, NULL, NULL, NULL, 0);
		int rc = exec_ok(s->conn, r, "postgresql ping", errstr, errstr_size);
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
	int rc = exec_ok(s->conn, r, what, errstr, errstr_size);
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
	int rc = exec_ok(s->conn, r, "read schema_migrations", errstr, errstr_size);
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
		set_err(errstr, errstr_size, what, "contains a NUL byte");
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
	int rc = exec_ok(s->conn, r, what, errstr, errstr_size);
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

	if (ensure_conn(s, errstr, errstr_size) != 0)
		return -1;
	versions = calloc(n + 1, sizeof *versions);
	order = calloc(n + 1, sizeof *order);
	if (versions == NULL || order == NULL) {
		set_err(errstr, errstr_size, "migrate", "out of memory");
		goto fail;
	}
	/* order by version; a name without one, or a repeated one, is a build
	 * mistake that must not half-apply */
	for (size_t i = 0; i < n; i++) {
		if (migration_version(embedded_migrations[i].name, &versions[i]) != 0) {
			set_err(errstr, errstr_size, embedded_migrations[i].name,
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
			set_err(errstr, errstr_size, embedded_migrations[order[i]].name,
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

/* ---- the statements of a batch ---- */

/* Lock the batch's providers up front, in one order for every KM-S. */
static const char SQL_LOCK_PROVIDERS[] =
    "SELECT vsp_id FROM providers"
    " WHERE vsp_id IN (SELECT jsonb_array_elements_text($1::jsonb))"
    " ORDER BY vsp_id FOR NO KEY UPDATE";

/* (a) Was this very message handled before? */
static const char SQL_AUDIT_GET[] =
    "SELECT has_result, result, cause, detail, kms_id, processed_at FROM audit"
    " WHERE topic = $1 AND kafka_partition = $2 AND kafka_offset = $3";

/* (c) Was this requestId decided before, and with the same content? */
static const char SQL_DECISION_GET[] =
    "SELECT COALESCE(content_hash = $2::bytea, false) AND requester_identity = $3,"
    " result, cause, detail, kms_id, processed_at"
    " FROM decisions WHERE request_id = $1";

/* (e) The provider, its SLAs active now (one row each, or one row with NULL
 * SLA columns), and the VAL server's current provider. */
static const char SQL_PROVIDER_GET[] =
    "SELECT p.enabled, p.val_server_count,"
    " (SELECT v.vsp_id FROM val_servers v WHERE v.requester_identity = $2),"
    " s.sla_id, to_json(s.services)::text, to_json(s.key_formats)::text,"
    " s.max_val_servers"
    " FROM providers p LEFT JOIN slas s ON s.vsp_id = p.vsp_id"
    "  AND s.revoked_at IS NULL"
    "  AND s.valid_from <= to_timestamp($3::bigint / 1000.0)"
    "  AND s.valid_until > to_timestamp($3::bigint / 1000.0)"
    " WHERE p.vsp_id = $1 ORDER BY s.sla_id FOR NO KEY UPDATE OF p";

/* A VAL server is never moved to another provider: when the identity was
 * stored by another provider's admission meanwhile, nothing is updated, and
 * the forced NULL makes the item fail so that it is decided again. */
static const char SQL_VAL_SERVER_PUT[] =
    "INSERT INTO val_servers AS v (requester_identity, vsp_id, endpoint,"
    " first_provisioned_at, last_provisioned_at, last_request_id)"
    " VALUES ($1, $2, $3, to_timestamp($4::bigint / 1000.0),"
    " to_timestamp($4::bigint / 1000.0), $5)"
    " ON CONFLICT (requester_identity) DO UPDATE SET"
    " vsp_id = CASE WHEN v.vsp_id = EXCLUDED.vsp_id THEN v.vsp_id END,"
    " endpoint = EXCLUDED.endpoint,"
    " last_provisioned_at = EXCLUDED.last_provisioned_at,"
    " last_request_id = EXCLUDED.last_request_id";

/* A new version for each listed service whose format differs from its
 * current one ($2: [{"id","type","version","content"}]). jsonb equality
 * ignores the order of the content's keys. */
static const char SQL_KEY_FORMATS_PUT[] =
    "WITH svc AS ("
    "  SELECT e->>'id' AS id, e->>'type' AS type, e->>'version' AS fversion,"
    "  e->'content' AS content FROM jsonb_array_elements($2::jsonb) AS e),"
    " cur AS ("
    "  SELECT DISTINCT ON (k.val_service_id) k.val_service_id, k.version,"
    "  k.format_type, k.format_version, k.content FROM key_formats k"
    "  WHERE k.requester_identity = $1 AND k.val_service_id IN (SELECT id FROM svc)"
    "  ORDER BY k.val_service_id, k.version DESC)"
    " INSERT INTO key_formats (requester_identity, val_service_id, version, format_type,"
    " format_version, content, request_id, provisioned_at)"
    " SELECT $1, svc.id, COALESCE(cur.version, 0) + 1, svc.type, svc.fversion,"
    " svc.content, $3, to_timestamp($4::bigint / 1000.0)"
    " FROM svc LEFT JOIN cur ON cur.val_service_id = svc.id"
    " WHERE cur.version IS NULL OR cur.format_type <> svc.type"
    " OR cur.format_version IS DISTINCT FROM svc.fversion OR cur.content <> svc.content";

static const char SQL_DECISION_PUT[] =
    "INSERT INTO decisions (request_id, requester_identity, content_hash, result, cause,"
    " detail, kms_id, processed_at, topic, kafka_partition, kafka_offset)"
    " VALUES ($1, $2, $3::bytea, $4, $5, $6, $7, $8, $9, $10, $11)";

/* The batch's admissions, added once per provider before the commit. */
static const char SQL_PROVIDER_COUNT_ADD[] =
    "UPDATE providers SET val_server_count = val_server_count + $2 WHERE vsp_id = $1";

static const char SQL_AUDIT_PUT[] =
    "INSERT INTO audit (topic, kafka_partition, kafka_offset, request_id,"
    " requester_identity, outcome, has_result, result, cause, detail, kms_id,"
    " processed_at, reply_note)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

static const struct {
	const char *name;
	const char *sql;
} prepared_statements[] = {
    {"kms_lock_providers", SQL_LOCK_PROVIDERS},
    {"kms_audit_get", SQL_AUDIT_GET},
    {"kms_decision_get", SQL_DECISION_GET},
    {"kms_provider_get", SQL_PROVIDER_GET},
    {"kms_val_server_put", SQL_VAL_SERVER_PUT},
    {"kms_key_formats_put", SQL_KEY_FORMATS_PUT},
    {"kms_decision_put", SQL_DECISION_PUT},
    {"kms_audit_put", SQL_AUDIT_PUT},
    {"kms_provider_count_add", SQL_PROVIDER_COUNT_ADD},
};

static int prepare_all(store *s, char *errstr, size_t errstr_size)
{
	if (s->prepared)
		return 0;
	/* a reconnect or a migration may leave some prepared, some not */
	PQclear(PQexec(s->conn, "DEALLOCATE ALL"));
	for (size_t i = 0; i < sizeof prepared_statements / sizeof prepared_statements[0]; i++) {
		PGresult *r = PQprepare(s->conn, prepared_statements[i].name,
		                        prepared_statements[i].sql, 0, NULL);
		int rc =
		    exec_ok(s->conn, r, "prepare (is the schema migrated?)", errstr, errstr_size);
		PQclear(r);
		if (rc != 0)
			return -1;
	}
	s->prepared = 1;
	return 0;
}

/* ---- pipelined queries ---- */

#define MAX_PARAMS 13
#define MAX_NUMS   4

typedef struct {
	const char *name; /* prepared statement, or NULL ... */
	const char *sql;  /* ... for this statement without parameters */
	int nparams;
	const char *values[MAX_PARAMS];
	int lengths[MAX_PARAMS];
	int formats[MAX_PARAMS];
	int nnums;
	char nums[MAX_NUMS][24]; /* numbers passed as text */
	PGresult *res;
} query;

static void q_init(query *q, const char *name, const char *sql)
{
	PQclear(q->res);
	memset(q, 0, sizeof *q);
	q->name = name;
	q->sql = sql;
}

static void q_text(query *q, const char *v)
{
	q->values[q->nparams] = v;
	q->lengths[q->nparams] = 0;
	q->formats[q->nparams] = 0;
	q->nparams++;
}

static void q_bin(query *q, const void *v, int len)
{
	q->values[q->nparams] = v;
	q->lengths[q->nparams] = len;
	q->formats[q->nparams] = 1;
	q->nparams++;
}

static void q_i64(query *q, int64_t v)
{
	char *buf = q->nums[q->nnums++];
	snprintf(buf, sizeof q->nums[0], "%lld", (long long)v);
	q_text(q, buf);
}

static void q_bool(query *q, int b)
{
	q_text(q, b ? "t" : "f");
}

static void q_clear(query *q)
{
	PQclear(q->res);
	q->res = NULL;
}

/* Send qs[0..n) followed by one sync, then collect every result. Returns 0
 * when the pipeline is idle again (each qs[i]->res set; a statement that
 * failed has an error result and those after it PGRES_PIPELINE_ABORTED), or
 * -1 when the connection failed and its state is unknown. */
static int exchange(store *s, query *const *qs, size_t n, char *errstr, size_t errstr_size)
{
	PGconn *c = s->conn;
	for (size_t i = 0; i < n; i++) {
		query *q = qs[i];
		int ok = q->name != NULL
		             ? PQsendQueryPrepared(c, q->name, q->nparams, q->values, q->lengths,
		                                   q->formats, 0)
		             : PQsendQueryParams(c, q->sql, 0, NULL, NULL, NULL, NULL, 0);
		if (!ok)
			goto lost;
	}
	if (!PQpipelineSync(c))
		goto lost;
	for (size_t i = 0; i < n; i++) {
		PGresult *r = PQgetResult(c);
		if (r == NULL || PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			goto lost;
		}
		qs[i]->res = r;
		/* each statement's results end with a NULL */
		while ((r = PQgetResult(c)) != NULL) {
			ExecStatusType st = PQresultStatus(r);
			PQclear(r);
			if (st == PGRES_PIPELINE_SYNC)
				goto lost;
		}
	}
	PGresult *r = PQgetResult(c);
	ExecStatusType st = PQresultStatus(r);
	PQclear(r);
	if (st != PGRES_PIPELINE_SYNC)
		goto lost;
	return 0;
lost:
	set_err(errstr, errstr_size, "postgresql", PQerrorMessage(c));
	s->broken = 1;
	return -1;
}

typedef enum { Q_OK = 0, Q_ITEM, Q_BATCH } q_verdict;

/* The verdict on the statements qs[0..n) of one exchange. */
static q_verdict verdict(query *const *qs, size_t n, const char **sqlstate, char *errstr,
                         size_t errstr_size)
{
	for (size_t i = 0; i < n; i++) {
		ExecStatusType st = PQresultStatus(qs[i]->res);
		if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
			continue;
		const char *state = PQresultErrorField(qs[i]->res, PG_DIAG_SQLSTATE);
		*sqlstate = state != NULL ? state : "";
		/* the primary message only: the DETAIL may quote the message's
		 * values */
		const char *msg = PQresultErrorField(qs[i]->res, PG_DIAG_MESSAGE_PRIMARY);
		set_err(errstr, errstr_size, "postgresql",
		        msg != NULL ? msg : PQresultErrorMessage(qs[i]->res));
		return st == PGRES_FATAL_ERROR && is_item_sqlstate(state) ? Q_ITEM : Q_BATCH;
	}
	return Q_OK;
}

/* Statements without parameters (at most 2), in one exchange. Returns 0 when
 * each succeeded. */
static int run_plain(store *s, const char *sql1, const char *sql2, char *errstr, size_t errstr_size)
{
	query q[2] = {{0}, {0}};
	query *qs[2] = {&q[0], &q[1]};
	q_init(&q[0], NULL, sql1);
	q_init(&q[1], NULL, sql2);
	size_t n = sql2 != NULL ? 2 : 1;
	const char *state = NULL;
	int rc = -1;
	if (exchange(s, qs, n, errstr, errstr_size) == 0)
		rc = verdict(qs, n, &state, errstr, errstr_size) == Q_OK ? 0 : -1;
	q_clear(&q[0]);
	q_clear(&q[1]);
	return rc;
}

/* ---- one item ---- */

/* What a message reads: its savepoint, then the lookups it needs. */
typedef struct {
	query q[4];
	query *list[4];
	size_t n;
	query *audit, *decision, *provider; /* NULL when not asked */
} reads;

/* What a message writes, then the release of its savepoint. */
typedef struct {
	query q[5];
	query *list[5];
	size_t n;
	size_t owner;       /* the item written */
	char *json;         /* key formats, owned */
	const char *admits; /* the provider admitting a new VAL server, or NULL */
	int active;
} writes;

/* VAL servers admitted by the batch so far, per provider. */
typedef struct {
	const char *vsp_id; /* borrowed from the items */
	int64_t added;
} admission;

typedef struct {
	admission *list; /* room for one per item */
	size_t count;
} admissions;

static admission *admission_find(admissions *a, const char *vsp_id)
{
	for (size_t i = 0; i < a->count; i++)
		if (strcmp(a->list[i].vsp_id, vsp_id) == 0)
			return &a->list[i];
	return NULL;
}

static int64_t admitted(admissions *a, const char *vsp_id)
{
	admission *e = admission_find(a, vsp_id);
	return e != NULL ? e->added : 0;
}

static void admit(admissions *a, const char *vsp_id)
{
	admission *e = admission_find(a, vsp_id);
	if (e == NULL) {
		e = &a->list[a->count++];
		e->vsp_id = vsp_id;
		e->added = 0;
	}
	e->added++;
}

typedef struct {
	int redecided;   /* its writes failed once and it was decided again */
	int error_stage; /* 1: audited as an error, 2: audited with no names */
} item_state;

static const char *eff_request_id(const store_item *it)
{
	return it->req != NULL ? it->req->request_id : it->request_id;
}

static const char *eff_identity(const store_item *it)
{
	return it->req != NULL ? it->req->requester_identity : it->requester_identity;
}

static int well_formed_id(const store_item *it)
{
	const char *id = eff_request_id(it);
	return id != NULL && validate_uuid(id);
}

/* Does item need the SLA lookup? */
static int needs_provider(const store_item *it)
{
	return !it->dlq && it->pre_cause == CODEC_CAUSE_NONE && it->req != NULL &&
	       it->vsp_id != NULL;
}

static void reads_clear(reads *r)
{
	for (size_t i = 0; i < sizeof r->q / sizeof r->q[0]; i++)
		q_clear(&r->q[i]);
	r->n = 0;
}

static void reads_build(reads *r, const store_item *it, int64_t now_ms)
{
	reads_clear(r);
	r->audit = r->decision = r->provider = NULL;

	query *q = &r->q[r->n];
	q_init(q, NULL, "SAVEPOINT item");
	r->list[r->n++] = q;

	q = &r->q[r->n];
	q_init(q, "kms_audit_get", NULL);
	q_text(q, it->topic != NULL ? it->topic : "");
	q_i64(q, it->partition);
	q_i64(q, it->offset);
	r->audit = r->list[r->n++] = q;

	if (!it->dlq && well_formed_id(it)) {
		q = &r->q[r->n];
		q_init(q, "kms_decision_get", NULL);
		q_text(q, eff_request_id(it));
		if (it->req != NULL)
			q_bin(q, it->content_hash, (int)sizeof it->content_hash);
		else
			q_text(q, NULL);
		q_text(q, eff_identity(it) != NULL ? eff_identity(it) : "");
		r->decision = r->list[r->n++] = q;
	}
	if (needs_provider(it)) {
		q = &r->q[r->n];
		q_init(q, "kms_provider_get", NULL);
		q_text(q, it->vsp_id);
		q_text(q, it->req->requester_identity);
		q_i64(q, now_ms);
		r->provider = r->list[r->n++] = q;
	}
}

static void writes_clear(writes *w)
{
	for (size_t i = 0; i < sizeof w->q / sizeof w->q[0]; i++)
		q_clear(&w->q[i]);
	free(w->json);
	w->json = NULL;
	w->admits = NULL;
	w->n = 0;
	w->active = 0;
}

static query *writes_add(writes *w, const char *name, const char *sql)
{
	query *q = &w->q[w->n];
	q_init(q, name, sql);
	w->list[w->n++] = q;
	return q;
}

static const char *outcome_name(store_outcome o)
{
	switch (o) {
	case STORE_OUTCOME_DECIDED:
		return "DECIDED";
	case STORE_OUTCOME_REPLAYED:
		return "REPLAYED";
	case STORE_OUTCOME_CONFLICT:
		return "CONFLICT";
	case STORE_OUTCOME_DLQ:
		return "DLQ";
	case STORE_OUTCOME_ERROR:
		return "ERROR";
	case STORE_OUTCOME_REDELIVERED:
		break;
	}
	return "ERROR";
}

static void item_reset(store_item *it)
{
	it->outcome = STORE_OUTCOME_ERROR;
	it->has_result = 0;
	it->result = CODEC_RESULT_FAILURE;
	it->cause = CODEC_CAUSE_NONE;
	it->detail[0] = '\0';
	it->kms_id[0] = '\0';
	it->processed_at = 0;
}

/* Fill an item's outputs with a new decision of ours. */
static void item_set(store_item *it, store_outcome o, codec_result result, codec_cause cause,
                     const char *detail, const char *kms_id, int64_t now_ms)
{
	it->outcome = o;
	it->result = result;
	it->cause = result == CODEC_RESULT_SUCCESS ? CODEC_CAUSE_NONE : cause;
	sla_utf8_copy(it->detail, sizeof it->detail, detail != NULL ? detail : "");
	sla_utf8_copy(it->kms_id, sizeof it->kms_id, kms_id);
	it->processed_at = now_ms;
}

/* Fill an item's outputs from a stored row: has_result only for audit rows,
 * then result, cause, detail, kms_id, processed_at from column col. */
static int item_from_row(store_item *it, const PGresult *r, int col)
{
	const char *result = PQgetisnull(r, 0, col) ? NULL : PQgetvalue(r, 0, col);
	const char *cause = PQgetisnull(r, 0, col + 1) ? NULL : PQgetvalue(r, 0, col + 1);
	const char *detail = PQgetisnull(r, 0, col + 2) ? "" : PQgetvalue(r, 0, col + 2);
	int64_t at = 0;
	if (parse_i64(PQgetvalue(r, 0, col + 4), &at) != 0)
		return -1;
	it->result = result != NULL && strcmp(result, "SUCCESS") == 0 ? CODEC_RESULT_SUCCESS
	                                                              : CODEC_RESULT_FAILURE;
	it->cause = CODEC_CAUSE_NONE;
	if (cause != NULL && codec_cause_parse(cause, &it->cause) != 0)
		return -1;
	sla_utf8_copy(it->detail, sizeof it->detail, detail);
	sla_utf8_copy(it->kms_id, sizeof it->kms_id, PQgetvalue(r, 0, col + 3));
	it->processed_at = at;
	return 0;
}

static void add_audit(writes *w, const store_item *it, int minimal)
{
	query *q = writes_add(w, "kms_audit_put", NULL);
	const char *cause = codec_cause_name(it->cause);
	q_text(q, it->topic != NULL ? it->topic : "");
	q_i64(q, it->partition);
	q_i64(q, it->offset);
	q_text(q, minimal ? NULL : eff_request_id(it));
	q_text(q, minimal ? NULL : eff_identity(it));
	q_text(q, outcome_name(it->outcome));
	q_bool(q, it->has_result);
	q_text(q, codec_result_name(it->result));
	q_text(q, cause != NULL && cause[0] != '\0' ? cause : NULL);
	q_text(q, it->detail[0] != '\0' ? it->detail : NULL);
	q_text(q, it->kms_id);
	q_i64(q, it->processed_at);
	q_text(q, minimal ? NULL : it->reply_note);
}

static void add_decision(writes *w, const store_item *it)
{
	query *q = writes_add(w, "kms_decision_put", NULL);
	const char *cause = codec_cause_name(it->cause);
	q_text(q, eff_request_id(it));
	q_text(q, eff_identity(it) != NULL ? eff_identity(it) : "");
	if (it->req != NULL)
		q_bin(q, it->content_hash, (int)sizeof it->content_hash);
	else
		q_text(q, NULL);
	q_text(q, codec_result_name(it->result));
	q_text(q, cause != NULL && cause[0] != '\0' ? cause : NULL);
	q_text(q, it->detail[0] != '\0' ? it->detail : NULL);
	q_text(q, it->kms_id);
	q_i64(q, it->processed_at);
	q_text(q, it->topic != NULL ? it->topic : "");
	q_i64(q, it->partition);
	q_i64(q, it->offset);
}

static void add_release(writes *w)
{
	writes_add(w, NULL, "RELEASE SAVEPOINT item");
}

/* The item failed in the database or could not be written: audit it as an
 * internal error (minimal: without the names that may be what failed). */
static void decide_error(writes *w, store_item *it, size_t index, const char *kms_id,
                         int64_t now_ms, int minimal)
{
	writes_clear(w);
	item_set(it, STORE_OUTCOME_ERROR, CODEC_RESULT_FAILURE, CODEC_CAUSE_INTERNAL_ERROR,
	         GENERIC_ERROR_DETAIL, kms_id, now_ms);
	it->has_result = eff_request_id(it) != NULL && eff_identity(it) != NULL;
	add_audit(w, it, minimal);
	add_release(w);
	w->owner = index;
	w->active = 1;
}

/* The key formats of a request as the JSON array SQL_KEY_FORMATS_PUT reads.
 * Returns a malloc'd text, or NULL (a string that is not UTF-8, no memory). */
static char *key_formats_json(const codec_request *req)
{
	char *text = NULL;
	json_t *arr = json_array();
	if (arr == NULL)
		return NULL;
	for (size_t i = 0; i < req->service_count; i++) {
		const codec_val_service *sv = &req->services[i];
		const char *type = codec_key_format_type_name(sv->format_type);
		json_t *content = json_object();
		json_t *o = json_object();
		if (o == NULL || json_array_append_new(arr, o) != 0 || content == NULL ||
		    json_object_set_new(o, "content", content) != 0 || type == NULL) {
			if (o == NULL)
				json_decref(content);
			goto done;
		}
		for (size_t k = 0; k < sv->content_count; k++)
			if (json_object_set_new(content, sv->content[k].key,
			                        json_string(sv->content[k].value)) != 0)
				goto done;
		if (json_object_set_new(o, "id", json_string(sv->val_service_id)) != 0 ||
		    json_object_set_new(o, "type", json_string(type)) != 0 ||
		    json_object_set_new(o, "version",
		                        sv->format_version != NULL ? json_string(sv->format_version)
		                                                   : json_null()) != 0)
			goto done;
	}
	text = json_dumps(arr, JSON_COMPACT);
done:
	json_decref(arr);
	return text;
}

/* The SLAs read by SQL_PROVIDER_GET, parsed for sla_evaluate(). */
typedef struct {
	sla_terms *terms;
	json_t **docs; /* the parsed service arrays, owning the strings */
	const char **names;
	size_t count;
} sla_rows;

static void sla_rows_free(sla_rows *rows)
{
	for (size_t i = 0; i < rows->count; i++)
		json_decref(rows->docs[i]);
	free(rows->terms);
	free(rows->docs);
	free(rows->names);
	memset(rows, 0, sizeof *rows);
}

/* Fill ctx from the provider rows. Returns 0, or -1 when a row cannot be
 * read. */
static int sla_rows_load(sla_rows *rows, sla_context *ctx, const PGresult *r, const store_item *it)
{
	int n = PQntuples(r);
	memset(rows, 0, sizeof *rows);
	ctx->provider_known = n > 0;
	if (n == 0)
		return 0;
	ctx->provider_enabled = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	if (parse_i64(PQgetvalue(r, 0, 1), &ctx->val_server_count) != 0)
		return -1;
	ctx->val_server_stored = !PQgetisnull(r, 0, 2);
	ctx->val_server_other_provider =
	    ctx->val_server_stored && strcmp(PQgetvalue(r, 0, 2), it->vsp_id) != 0;

	size_t total = 0;
	rows->terms = calloc((size_t)n, sizeof *rows->terms);
	rows->docs = calloc((size_t)n, sizeof *rows->docs);
	if (rows->terms == NULL || rows->docs == NULL)
		return -1;
	for (int i = 0; i < n; i++) {
		if (PQgetisnull(r, i, 3))
			continue; /* the provider has no active SLA */
		json_t *svc = json_loads(PQgetvalue(r, i, 4), 0, NULL);
		if (svc == NULL)
			return -1;
		rows->docs[rows->count] = svc;
		sla_terms *t = &rows->terms[rows->count++];
		if (!json_is_array(svc) || parse_i64(PQgetvalue(r, i, 3), &t->sla_id) != 0 ||
		    parse_i64(PQgetvalue(r, i, 6), &t->max_val_servers) != 0)
			return -1;
		t->service_count = json_array_size(svc);
		total += t->service_count;
		json_t *formats = json_loads(PQgetvalue(r, i, 5), 0, NULL);
		if (!json_is_array(formats)) {
			json_decref(formats);
			return -1;
		}
		size_t k;
		json_t *f;
		json_array_foreach(formats, k, f)
		{
			codec_key_format_type kf;
			/* names were checked when the SLA was added */
			if (json_is_string(f) &&
			    codec_key_format_type_parse(json_string_value(f), &kf) == 0)
				t->key_formats |= 1u << kf;
		}
		json_decref(formats);
		t->valid_from_ms = INT64_MIN; /* the query kept the active ones */
		t->valid_until_ms = INT64_MAX;
	}
	rows->names = calloc(total + 1, sizeof *rows->names);
	if (rows->names == NULL)
		return -1;
	size_t at = 0;
	for (size_t i = 0; i < rows->count; i++) {
		rows->terms[i].services = rows->names + at;
		for (size_t k = 0; k < rows->terms[i].service_count; k++) {
			json_t *name = json_array_get(rows->docs[i], k);
			rows->names[at++] = json_is_string(name) ? json_string_value(name) : "";
		}
	}
	ctx->slas = rows->terms;
	ctx->sla_count = rows->count;
	return 0;
}

/* Decide item from its reads and queue its writes in w. Returns 0, or -1
 * when the item cannot be written (the caller audits it as an error). */
static int decide(writes *w, store_item *it, size_t index, const reads *r, admissions *adm,
                  const char *kms_id, int64_t now_ms)
{
	writes_clear(w);
	w->owner = index;
	w->active = 1;
	item_reset(it);

	/* (a) this very message was handled before */
	if (PQntuples(r->audit->res) > 0) {
		it->outcome = STORE_OUTCOME_REDELIVERED;
		it->has_result = strcmp(PQgetvalue(r->audit->res, 0, 0), "t") == 0;
		if (item_from_row(it, r->audit->res, 1) != 0)
			return -1;
		add_release(w);
		return 0;
	}

	/* (b) undecodable */
	if (it->dlq) {
		item_set(it, STORE_OUTCOME_DLQ, CODEC_RESULT_FAILURE, CODEC_CAUSE_INVALID_REQUEST,
		         it->pre_detail, kms_id, now_ms);
		it->has_result = it->request_id != NULL && it->requester_identity != NULL;
		add_audit(w, it, 0);
		add_release(w);
		return 0;
	}

	/* (c) the requestId was decided before */
	if (r->decision != NULL && PQntuples(r->decision->res) > 0) {
		const PGresult *d = r->decision->res;
		it->has_result = eff_identity(it) != NULL;
		if (strcmp(PQgetvalue(d, 0, 0), "t") == 0) {
			it->outcome = STORE_OUTCOME_REPLAYED;
			if (item_from_row(it, d, 1) != 0)
				return -1;
		} else {
			item_set(it, STORE_OUTCOME_CONFLICT, CODEC_RESULT_FAILURE,
			         CODEC_CAUSE_REQUEST_ID_CONFLICT, CONFLICT_DETAIL, kms_id, now_ms);
		}
		add_audit(w, it, 0);
		add_release(w);
		return 0;
	}

	it->has_result = eff_request_id(it) != NULL && eff_identity(it) != NULL;

	/* (d) refused by the pure checks */
	if (it->pre_cause != CODEC_CAUSE_NONE || it->req == NULL) {
		item_set(it, STORE_OUTCOME_DECIDED, CODEC_RESULT_FAILURE,
		         it->pre_cause != CODEC_CAUSE_NONE ? it->pre_cause
		                                           : CODEC_CAUSE_INVALID_REQUEST,
		         it->pre_cause != CODEC_CAUSE_NONE ? it->pre_detail
		                                           : "the request could not be read",
		         kms_id, now_ms);
		if (well_formed_id(it))
			add_decision(w, it);
		add_audit(w, it, 0);
		add_release(w);
		return 0;
	}

	/* (e) the SLA */
	sla_context ctx = {0};
	sla_rows rows = {0};
	char detail[256];
	ctx.vsp_id = it->vsp_id;
	ctx.now_ms = now_ms;
	if (r->provider != NULL && sla_rows_load(&rows, &ctx, r->provider->res, it) != 0) {
		sla_rows_free(&rows);
		return -1;
	}
	ctx.val_server_count += admitted(adm, it->vsp_id);
	codec_cause cause =
	    sla_evaluate(&ctx, it->req->services, it->req->service_count, detail, sizeof detail);
	sla_rows_free(&rows);
	if (cause != CODEC_CAUSE_NONE) {
		item_set(it, STORE_OUTCOME_DECIDED, CODEC_RESULT_FAILURE, cause, detail, kms_id,
		         now_ms);
		if (well_formed_id(it))
			add_decision(w, it);
		add_audit(w, it, 0);
		add_release(w);
		return 0;
	}

	item_set(it, STORE_OUTCOME_DECIDED, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, NULL, kms_id,
	         now_ms);
	w->json = key_formats_json(it->req);
	if (w->json == NULL)
		return -1;
	if (!ctx.val_server_stored)
		w->admits = it->vsp_id;
	query *q = writes_add(w, "kms_val_server_put", NULL);
	q_text(q, it->req->requester_identity);
	q_text(q, it->vsp_id);
	q_text(q, it->req->endpoint);
	q_i64(q, now_ms);
	q_text(q, it->req->request_id);

	q = writes_add(w, "kms_key_formats_put", NULL);
	q_text(q, it->req->requester_identity);
	q_text(q, w->json);
	q_text(q, it->req->request_id);
	q_i64(q, now_ms);

	if (well_formed_id(it))
		add_decision(w, it);
	add_audit(w, it, 0);
	add_release(w);
	return 0;
}

/* ---- the batch ---- */

/* The providers the batch will look up, as a JSON array text. */
static char *batch_providers_json(const store_item *items, size_t n)
{
	json_t *arr = json_array();
	if (arr == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		/* a vsp_id that is not UTF-8 is left out: its lookup fails as a
		 * data error of that item */
		if (needs_provider(&items[i]))
			json_array_append_new(arr, json_string(items[i].vsp_id));
	}
	char *text = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	return text;
}

static void log_item_error(const store_item *it, const char *sqlstate, const char *message)
{
	log_event(LOG_WARN, "store_item_error", "{s:s, s:i, s:I, s:s, s:s}", "topic",
	          it->topic != NULL ? it->topic : "", "partition", (int)it->partition, "offset",
	          (json_int_t)it->offset, "sqlstate", sqlstate != NULL ? sqlstate : "", "error",
	          message);
}

/* Add the batch's admissions to the providers' counts, then commit, in one
 * exchange. */
static int finish(store *s, const admissions *adm, char *errstr, size_t errstr_size)
{
	int rc = -1;
	query *q = calloc(adm->count + 1, sizeof *q);
	query **list = calloc(adm->count + 1, sizeof *list);
	if (q == NULL || list == NULL) {
		set_err(errstr, errstr_size, "store", "out of memory");
		goto done;
	}
	for (size_t i = 0; i < adm->count; i++) {
		q_init(&q[i], "kms_provider_count_add", NULL);
		q_text(&q[i], adm->list[i].vsp_id);
		q_i64(&q[i], adm->list[i].added);
		list[i] = &q[i];
	}
	q_init(&q[adm->count], NULL, "COMMIT");
	list[adm->count] = &q[adm->count];
	if (exchange(s, list, adm->count + 1, errstr, errstr_size) != 0)
		goto done;
	const char *state = NULL;
	if (verdict(list, adm->count + 1, &state, errstr, errstr_size) != Q_OK)
		goto done;
	rc = 0;
done:
	for (size_t i = 0; q != NULL && i <= adm->count; i++)
		q_clear(&q[i]);
	free(q);
	free(list);
	return rc;
}

int store_decide_batch(store *s, store_item *items, size_t n, const char *kms_id, int64_t now_ms,
                       char *errstr, size_t errstr_size)
{
	int rc = -1, in_pipeline = 0, in_tx = 0;
	item_state *state = NULL;
	char *providers = NULL;
	reads *r = NULL;
	writes *w = NULL;
	admissions adm = {0};
	query begin = {0}, lock = {0};
	const char *sqlstate = NULL;

	if (kms_id == NULL)
		kms_id = "";
	for (size_t i = 0; i < n; i++)
		item_reset(&items[i]);
	if (n == 0)
		return 0;
	state = calloc(n, sizeof *state);
	r = calloc(1, sizeof *r);
	w = calloc(1, sizeof *w);
	adm.list = calloc(n, sizeof *adm.list);
	providers = batch_providers_json(items, n);
	if (state == NULL || r == NULL || w == NULL || adm.list == NULL || providers == NULL) {
		set_err(errstr, errstr_size, "store", "out of memory");
		goto fail;
	}
	query *start[2] = {&begin, &lock};
	/* A connection that died while idle (server restart, idle timeout) is
	 * only noticed when used: nothing was sent yet, so connect again once. */
	for (int attempt = 0;; attempt++) {
		if (ensure_conn(s, errstr, errstr_size) != 0 ||
		    prepare_all(s, errstr, errstr_size) != 0)
			goto fail;
		if (PQenterPipelineMode(s->conn) != 1) {
			set_err(errstr, errstr_size, "postgresql pipeline",
			        PQerrorMessage(s->conn));
			goto fail;
		}
		in_pipeline = 1;
		q_init(&begin, NULL, "BEGIN");
		q_init(&lock, "kms_lock_providers", NULL);
		q_text(&lock, providers);
		if (exchange(s, start, 2, errstr, errstr_size) == 0)
			break;
		in_pipeline = 0; /* exchange marked the connection broken */
		if (attempt == 1)
			goto fail;
	}
	in_tx = 1;
	if (verdict(start, 2, &sqlstate, errstr, errstr_size) != Q_OK)
		goto fail;
	q_clear(&begin);
	q_clear(&lock);

	/* Each turn sends the pending writes of one item (if any) and the reads
	 * of the next (if any) in one exchange. */
	size_t i = 0;
	while (i < n || w->active) {
		query *list[9];
		size_t nl = 0, nw = w->active ? w->n : 0;
		for (size_t k = 0; k < nw; k++)
			list[nl++] = w->list[k];
		if (i < n) {
			reads_build(r, &items[i], now_ms);
			for (size_t k = 0; k < r->n; k++)
				list[nl++] = r->list[k];
		}
		if (exchange(s, list, nl, errstr, errstr_size) != 0)
			goto fail;

		if (nw > 0) {
			q_verdict v = verdict(w->list, nw, &sqlstate, errstr, errstr_size);
			if (v == Q_BATCH)
				goto fail;
			if (v == Q_ITEM) {
				/* the reads sent after it were not run */
				size_t p = w->owner;
				log_item_error(&items[p], sqlstate, errstr);
				writes_clear(w);
				reads_clear(r);
				if (!state[p].redecided && state[p].error_stage == 0) {
					/* decide it again from fresh reads, which
					 * open a new savepoint */
					if (run_plain(s, "ROLLBACK TO SAVEPOINT item",
					              "RELEASE SAVEPOINT item", errstr,
					              errstr_size) != 0)
						goto fail;
					state[p].redecided = 1;
					i = p;
					continue;
				}
				if (run_plain(s, "ROLLBACK TO SAVEPOINT item", NULL, errstr,
				              errstr_size) != 0)
					goto fail;
				if (++state[p].error_stage > 2) {
					set_err(errstr, errstr_size, "store",
					        "an item could not even be audited");
					goto fail;
				}
				decide_error(w, &items[p], p, kms_id, now_ms,
				             state[p].error_stage == 2);
				i = p + 1;
				continue;
			}
			if (w->admits != NULL)
				admit(&adm, w->admits);
			writes_clear(w);
		}
		if (i >= n)
			break;

		q_verdict v = verdict(r->list, r->n, &sqlstate, errstr, errstr_size);
		if (v == Q_BATCH)
			goto fail;
		if (v == Q_ITEM) {
			log_item_error(&items[i], sqlstate, errstr);
			reads_clear(r);
			if (run_plain(s, "ROLLBACK TO SAVEPOINT item", NULL, errstr, errstr_size) !=
			    0)
				goto fail;
			state[i].error_stage = 1;
			decide_error(w, &items[i], i, kms_id, now_ms, 0);
			i++;
			continue;
		}
		if (decide(w, &items[i], i, r, &adm, kms_id, now_ms) != 0) {
			/* nothing of it was sent: its savepoint is clean */
			log_item_error(&items[i], "", "the item could not be encoded");
			state[i].error_stage = 1;
			decide_error(w, &items[i], i, kms_id, now_ms, 0);
		}
		reads_clear(r);
		i++;
	}

	if (finish(s, &adm, errstr, errstr_size) != 0)
		goto fail;
	in_tx = 0;
	rc = 0;
fail:
	if (r != NULL)
		reads_clear(r);
	if (w != NULL)
		writes_clear(w);
	q_clear(&begin);
	q_clear(&lock);
	if (in_pipeline && !s->broken) {
		char scratch[256]; /* errstr keeps why the batch failed */
		if (in_tx && rc != 0 &&
		    run_plain(s, "ROLLBACK", NULL, scratch, sizeof scratch) != 0)
			s->broken = 1;
		if (!s->broken && PQexitPipelineMode(s->conn) != 1)
			s->broken = 1;
	}
	if (rc != 0)
		for (size_t k = 0; k < n; k++)
			item_reset(&items[k]);
	free(state);
	free(providers);
	free(adm.list);
	free(r);
	free(w);
	return rc;
}
