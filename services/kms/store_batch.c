/*
 * store_batch: one batch of messages decided in one transaction and two
 * round trips, set-based.
 *
 *   1. BEGIN, lock the batch's providers (in vsp_id order, so two KM-S
 *      instances cannot deadlock), then read everything the batch needs with
 *      array parameters: its audit rows by Kafka coordinates, its decisions by
 *      requestId, its VAL servers, their current key formats, its providers
 *      and their active SLAs (services/kms/sql/r*.sql). One exchange.
 *   2. Decide every message in C over those rows (decide.c).
 *   3. Write the batch with one multi-row statement per table, then COMMIT
 *      (services/kms/sql/w*.sql). One exchange.
 *
 * The connection runs in libpq pipeline mode, so each step's statements
 * travel together and run in order. A data error (a message whose data
 * breaks a constraint, or a concurrent KM-S that stored the same row first)
 * rolls the part back and splits it in two halves, each decided again from
 * fresh reads in its own transaction, until the message at fault is alone;
 * that message is decided once more (the concurrent case then sees the other
 * instance's row) and, failing again, audited as an internal error. A part
 * committed before a later part fails is safe: the batch is retried whole,
 * and the committed messages find their audit rows and get the same Results.
 * Anything else (connection lost, serialization failure, deadlock) abandons
 * the batch, which the caller retries.
 */
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decide.h"
#include "embedded.h"
#include "errstr.h"
#include "log.h"
#include "num.h"
#include "store.h"
#include "store_pg.h"

#define MAX_PARAMS 13

/* ---- a growable text buffer, for array literals ---- */

typedef struct {
	char *data;
	size_t len, cap;
	int failed; /* out of memory at some point */
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *d = realloc(b->data, cap);
		if (d == NULL) {
			b->failed = 1;
			return;
		}
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

/* One PostgreSQL array literal, element by element. */
static void arr_open(sbuf *b)
{
	sb_put(b, "{", 1);
}

static void arr_sep(sbuf *b)
{
	if (b->len > 0 && b->data[b->len - 1] != '{')
		sb_put(b, ",", 1);
}

static void arr_text(sbuf *b, const char *s)
{
	arr_sep(b);
	if (s == NULL) {
		sb_put(b, "NULL", 4);
		return;
	}
	sb_put(b, "\"", 1);
	for (const char *p = s; *p; p++) {
		const char *run = p;
		while (*p && *p != '"' && *p != '\\')
			p++;
		sb_put(b, run, (size_t)(p - run));
		if (*p == '\0')
			break;
		sb_put(b, "\\", 1);
		sb_put(b, p, 1);
	}
	sb_put(b, "\"", 1);
}

static void arr_i64(sbuf *b, int64_t v)
{
	char num[24];
	int n = snprintf(num, sizeof num, "%lld", (long long)v);
	arr_sep(b);
	sb_put(b, num, (size_t)n);
}

static void arr_bool(sbuf *b, int v)
{
	arr_sep(b);
	sb_put(b, v ? "t" : "f", 1);
}

/* bytea in hex form, quoted: "\\x0a1b..." */
static void arr_bytea(sbuf *b, const unsigned char *v, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	arr_sep(b);
	if (v == NULL) {
		sb_put(b, "NULL", 4);
		return;
	}
	sb_put(b, "\"\\\\x", 4);
	for (size_t i = 0; i < n; i++) {
		char two[2] = {hex[v[i] >> 4], hex[v[i] & 15]};
		sb_put(b, two, 2);
	}
	sb_put(b, "\"", 1);
}

static void arr_close(sbuf *b)
{
	sb_put(b, "}", 1);
}

/* ---- pipelined queries ---- */

typedef struct {
	const char *name; /* prepared statement, or NULL ... */
	const char *sql;  /* ... for this statement without parameters */
	int nparams;
	sbuf params[MAX_PARAMS]; /* each parameter's text, owned */
	PGresult *res;
} query;

static void q_init(query *q, const char *name, const char *sql)
{
	PQclear(q->res);
	for (int i = 0; i < MAX_PARAMS; i++)
		free(q->params[i].data);
	memset(q, 0, sizeof *q);
	q->name = name;
	q->sql = sql;
}

/* The next parameter's buffer, an array literal opened. */
static sbuf *q_arr(query *q)
{
	sbuf *b = &q->params[q->nparams++];
	arr_open(b);
	return b;
}

static void q_clear(query *q)
{
	q_init(q, NULL, NULL);
}

static int q_failed(const query *q)
{
	for (int i = 0; i < q->nparams; i++)
		if (q->params[i].failed)
			return 1;
	return 0;
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
		const char *values[MAX_PARAMS];
		for (int k = 0; k < q->nparams; k++)
			values[k] = q->params[k].data;
		int ok = q->name != NULL
		             ? PQsendQueryPrepared(c, q->name, q->nparams, values, NULL, NULL, 0)
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
	s->exchanges++;
	return 0;
lost:
	errstr_line(errstr, errstr_size, "postgresql", PQerrorMessage(c));
	s->broken = 1;
	return -1;
}

typedef enum { Q_OK = 0, Q_DATA, Q_BATCH } q_verdict;

/* The verdict on the statements qs[0..n) of one exchange: Q_DATA when one
 * failed for a message's data. */
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
		errstr_line(errstr, errstr_size, "postgresql",
		            msg != NULL ? msg : PQresultErrorMessage(qs[i]->res));
		return st == PGRES_FATAL_ERROR && store_is_item_sqlstate(state) ? Q_DATA : Q_BATCH;
	}
	return Q_OK;
}

/* One statement without parameters, alone in an exchange. */
static int run_plain(store *s, const char *sql, char *errstr, size_t errstr_size)
{
	query q = {0};
	query *qs[1] = {&q};
	const char *state = NULL;
	int rc = -1;
	q_init(&q, NULL, sql);
	if (exchange(s, qs, 1, errstr, errstr_size) == 0)
		rc = verdict(qs, 1, &state, errstr, errstr_size) == Q_OK ? 0 : -1;
	q_clear(&q);
	return rc;
}

/* The batch statements, prepared under their file names without ".sql". */
static int prepare_all(store *s, char *errstr, size_t errstr_size)
{
	if (s->prepared)
		return 0;
	/* a reconnect or a migration may leave some prepared, some not */
	PQclear(PQexec(s->conn, "DEALLOCATE ALL"));
	for (size_t i = 0; i < embedded_batch_sql_count; i++) {
		char name[64];
		const char *file = embedded_batch_sql[i].name;
		const char *dot = strrchr(file, '.');
		size_t n = dot != NULL ? (size_t)(dot - file) : strlen(file);
		snprintf(name, sizeof name, "kms_%.*s", (int)(n < 48 ? n : 48), file);
		PGresult *r = PQprepare(s->conn, name, embedded_batch_sql[i].data, 0, NULL);
		int rc = store_exec_ok(s->conn, r, "prepare (is the schema migrated?)", errstr,
		                       errstr_size);
		PQclear(r);
		if (rc != 0)
			return -1;
	}
	s->prepared = 1;
	return 0;
}

/* ---- step 1: the reads ---- */

enum { R_BEGIN, R_LOCK, R_AUDIT, R_DECISIONS, R_VAL_SERVERS, R_KEY_FORMATS, R_PROVIDERS, R__N };

static void build_reads(query q[R__N], const store_item *items, size_t n, int64_t now_ms)
{
	q_init(&q[R_BEGIN], NULL, "BEGIN");
	q_init(&q[R_LOCK], "kms_r0_lock_providers", NULL);
	q_init(&q[R_AUDIT], "kms_r1_audit", NULL);
	q_init(&q[R_DECISIONS], "kms_r2_decisions", NULL);
	q_init(&q[R_VAL_SERVERS], "kms_r3_val_servers", NULL);
	q_init(&q[R_KEY_FORMATS], "kms_r4_key_formats", NULL);
	q_init(&q[R_PROVIDERS], "kms_r5_providers", NULL);

	sbuf *vsps = q_arr(&q[R_LOCK]);
	sbuf *topics = q_arr(&q[R_AUDIT]), *parts = q_arr(&q[R_AUDIT]),
	     *offsets = q_arr(&q[R_AUDIT]);
	sbuf *ids = q_arr(&q[R_DECISIONS]);
	sbuf *servers = q_arr(&q[R_VAL_SERVERS]);
	sbuf *kf_servers = q_arr(&q[R_KEY_FORMATS]), *kf_services = q_arr(&q[R_KEY_FORMATS]);
	sbuf *providers = q_arr(&q[R_PROVIDERS]);
	for (size_t i = 0; i < n; i++) {
		const store_item *it = &items[i];
		arr_text(topics, it->topic != NULL ? it->topic : "");
		arr_i64(parts, it->partition);
		arr_i64(offsets, it->offset);
		if (!it->dlq && decide_has_decision_key(it))
			arr_text(ids, decide_request_id(it));
		if (decide_needs_provider(it)) {
			arr_text(vsps, it->vsp_id);
			arr_text(providers, it->vsp_id);
			arr_text(servers, it->req->requester_identity);
			for (size_t k = 0; k < it->req->service_count; k++) {
				arr_text(kf_servers, it->req->requester_identity);
				arr_text(kf_services, it->req->services[k].val_service_id);
			}
		}
	}
	arr_close(vsps);
	arr_close(topics);
	arr_close(parts);
	arr_close(offsets);
	arr_close(ids);
	arr_close(servers);
	arr_close(kf_servers);
	arr_close(kf_services);
	arr_close(providers);
	char now[24];
	snprintf(now, sizeof now, "%lld", (long long)now_ms);
	sb_put(&q[R_PROVIDERS].params[q[R_PROVIDERS].nparams++], now, strlen(now));
}

static const char *cell(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* An outcome from a row's columns result, cause, detail, kms_id,
 * processed_at starting at col. */
static int outcome_from_row(decide_outcome *o, const PGresult *r, int row, int col)
{
	const char *result = cell(r, row, col), *cause = cell(r, row, col + 1);
	const char *detail = cell(r, row, col + 2);
	o->result = result != NULL && strcmp(result, "SUCCESS") == 0 ? CODEC_RESULT_SUCCESS
	                                                             : CODEC_RESULT_FAILURE;
	o->cause = CODEC_CAUSE_NONE;
	if (cause != NULL && codec_cause_parse(cause, &o->cause) != 0)
		o->cause = CODEC_CAUSE_INTERNAL_ERROR; /* a cause this build does not know */
	o->detail = detail != NULL ? detail : "";
	o->kms_id = PQgetvalue(r, row, col + 3);
	return num_parse_i64(PQgetvalue(r, row, col + 4), INT64_MIN, INT64_MAX, &o->processed_at);
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* A 32-byte bytea in PostgreSQL's hex output ("\x..."). */
static int hash_from_text(const char *s, unsigned char out[32])
{
	if (s == NULL || strlen(s) != 66 || s[0] != '\\' || s[1] != 'x')
		return -1;
	for (int i = 0; i < 32; i++) {
		int hi = hex_digit(s[2 + 2 * i]), lo = hex_digit(s[3 + 2 * i]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

/* One SLA row of kms_r5_providers into the state. */
static int load_sla(decide_state *st, const PGresult *r, int row)
{
	sla_terms t = {.valid_from_ms = INT64_MIN, .valid_until_ms = INT64_MAX};
	json_t *svc = json_loads(PQgetvalue(r, row, 4), 0, NULL);
	json_t *formats = json_loads(PQgetvalue(r, row, 5), 0, NULL);
	const char **names = NULL;
	int rc = -1;
	if (!json_is_array(svc) || !json_is_array(formats) ||
	    num_parse_i64(PQgetvalue(r, row, 3), INT64_MIN, INT64_MAX, &t.sla_id) != 0 ||
	    num_parse_i64(PQgetvalue(r, row, 6), INT64_MIN, INT64_MAX, &t.max_val_servers) != 0)
		goto done;
	t.service_count = json_array_size(svc);
	names = calloc(t.service_count + 1, sizeof *names);
	if (names == NULL)
		goto done;
	for (size_t k = 0; k < t.service_count; k++) {
		json_t *name = json_array_get(svc, k);
		names[k] = json_is_string(name) ? json_string_value(name) : "";
	}
	t.services = names;
	size_t k;
	json_t *f;
	json_array_foreach(formats, k, f)
	{
		codec_key_format_type kf;
		/* names were checked when the SLA was added */
		if (json_is_string(f) &&
		    codec_key_format_type_parse(json_string_value(f), &kf) == 0)
			t.key_formats |= 1u << kf;
	}
	rc = decide_state_add_sla(st, PQgetvalue(r, row, 0), &t);
done:
	free(names);
	json_decref(svc);
	json_decref(formats);
	return rc;
}

/* The rows read into st. Returns 0, or -1 (out of memory, a row that cannot
 * be read) with errstr filled. */
static int load_state(decide_state *st, query q[R__N], char *errstr, size_t errstr_size)
{
	const PGresult *r = q[R_AUDIT].res;
	for (int i = 0; i < PQntuples(r); i++) {
		int32_t part = 0;
		int64_t v = 0, offset = 0;
		decide_outcome o;
		if (num_parse_i64(PQgetvalue(r, i, 1), INT64_MIN, INT64_MAX, &v) != 0 ||
		    num_parse_i64(PQgetvalue(r, i, 2), INT64_MIN, INT64_MAX, &offset) != 0 ||
		    outcome_from_row(&o, r, i, 4) != 0)
			goto unreadable;
		part = (int32_t)v;
		o.has_result = strcmp(PQgetvalue(r, i, 3), "t") == 0;
		if (decide_state_add_audit(st, PQgetvalue(r, i, 0), part, offset, &o) != 0)
			goto nomem;
	}
	r = q[R_DECISIONS].res;
	for (int i = 0; i < PQntuples(r); i++) {
		unsigned char hash[32];
		const char *h = cell(r, i, 2);
		decide_outcome o;
		if ((h != NULL && hash_from_text(h, hash) != 0) ||
		    outcome_from_row(&o, r, i, 3) != 0)
			goto unreadable;
		if (decide_state_add_decision(st, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
		                              h != NULL ? hash : NULL, &o) != 0)
			goto nomem;
	}
	r = q[R_VAL_SERVERS].res;
	for (int i = 0; i < PQntuples(r); i++)
		if (decide_state_add_val_server(st, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1)) != 0)
			goto nomem;
	r = q[R_KEY_FORMATS].res;
	for (int i = 0; i < PQntuples(r); i++) {
		int64_t version = 0;
		if (num_parse_i64(PQgetvalue(r, i, 2), INT64_MIN, INT64_MAX, &version) != 0)
			goto unreadable;
		if (decide_state_add_key_format(st, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
		                                version, PQgetvalue(r, i, 3), cell(r, i, 4),
		                                PQgetvalue(r, i, 5)) != 0)
			goto nomem;
	}
	r = q[R_PROVIDERS].res;
	for (int i = 0; i < PQntuples(r); i++) {
		const char *vsp = PQgetvalue(r, i, 0);
		if (i == 0 || strcmp(vsp, PQgetvalue(r, i - 1, 0)) != 0) {
			int64_t count = 0;
			if (num_parse_i64(PQgetvalue(r, i, 2), INT64_MIN, INT64_MAX, &count) != 0)
				goto unreadable;
			if (decide_state_add_provider(
			        st, vsp, strcmp(PQgetvalue(r, i, 1), "t") == 0, count) != 0)
				goto nomem;
		}
		if (!PQgetisnull(r, i, 3) && load_sla(st, r, i) != 0)
			goto nomem;
	}
	return 0;
unreadable:
	errstr_line(errstr, errstr_size, "store", "a stored row could not be read");
	return -1;
nomem:
	errstr_line(errstr, errstr_size, "store", "out of memory");
	return -1;
}

/* ---- step 3: the writes ---- */

enum { W_AUDIT, W_DECISIONS, W_VAL_SERVERS, W_KEY_FORMATS, W_PROVIDERS, W_COMMIT, W__N };
_Static_assert((int)R__N <= 8 && (int)W__N <= 8, "list holds either exchange");

/* The audit rows of items idx[0..n); minimal leaves out the names (the
 * last resort for an item whose names are what the database refuses). */
static void build_audit(query *q, const store_item *items, const size_t *idx, size_t n, int minimal)
{
	q_init(q, "kms_w1_audit", NULL);
	sbuf *col[13];
	for (int c = 0; c < 13; c++)
		col[c] = q_arr(q);
	for (size_t k = 0; k < n; k++) {
		const store_item *it = &items[idx[k]];
		const char *cause = codec_cause_name(it->cause);
		arr_text(col[0], it->topic != NULL ? it->topic : "");
		arr_i64(col[1], it->partition);
		arr_i64(col[2], it->offset);
		arr_text(col[3], minimal ? NULL : decide_request_id(it));
		arr_text(col[4], minimal ? NULL : decide_identity(it));
		arr_text(col[5], decide_outcome_name(it->outcome));
		arr_bool(col[6], it->has_result);
		arr_text(col[7], codec_result_name(it->result));
		arr_text(col[8], cause != NULL && cause[0] != '\0' ? cause : NULL);
		arr_text(col[9], it->detail[0] != '\0' ? it->detail : NULL);
		arr_text(col[10], it->kms_id);
		arr_i64(col[11], it->processed_at);
		arr_text(col[12], minimal ? NULL : it->reply_note);
	}
	for (int c = 0; c < 13; c++)
		arr_close(col[c]);
}

static void build_decisions(query *q, const store_item *items, const decide_plan *p)
{
	q_init(q, "kms_w2_decisions", NULL);
	sbuf *col[11];
	for (int c = 0; c < 11; c++)
		col[c] = q_arr(q);
	for (size_t k = 0; k < p->ndecisions; k++) {
		const store_item *it = &items[p->decisions[k]];
		const char *cause = codec_cause_name(it->cause);
		const char *identity = decide_identity(it);
		arr_text(col[0], decide_request_id(it));
		arr_text(col[1], identity != NULL ? identity : "");
		arr_bytea(col[2], it->req != NULL ? it->content_hash : NULL,
		          sizeof it->content_hash);
		arr_text(col[3], codec_result_name(it->result));
		arr_text(col[4], cause != NULL && cause[0] != '\0' ? cause : NULL);
		arr_text(col[5], it->detail[0] != '\0' ? it->detail : NULL);
		arr_text(col[6], it->kms_id);
		arr_i64(col[7], it->processed_at);
		arr_text(col[8], it->topic != NULL ? it->topic : "");
		arr_i64(col[9], it->partition);
		arr_i64(col[10], it->offset);
	}
	for (int c = 0; c < 11; c++)
		arr_close(col[c]);
}

static void build_val_servers(query *q, const store_item *items, const decide_plan *p)
{
	q_init(q, "kms_w3_val_servers", NULL);
	sbuf *col[5];
	for (int c = 0; c < 5; c++)
		col[c] = q_arr(q);
	for (size_t k = 0; k < p->nval_servers; k++) {
		const store_item *it = &items[p->val_servers[k]];
		arr_text(col[0], it->req->requester_identity);
		arr_text(col[1], it->vsp_id);
		arr_text(col[2], it->req->endpoint);
		arr_i64(col[3], it->processed_at);
		arr_text(col[4], it->req->request_id);
	}
	for (int c = 0; c < 5; c++)
		arr_close(col[c]);
}

static void build_key_formats(query *q, const store_item *items, const decide_plan *p)
{
	q_init(q, "kms_w4_key_formats", NULL);
	sbuf *col[8];
	for (int c = 0; c < 8; c++)
		col[c] = q_arr(q);
	for (size_t k = 0; k < p->nkey_formats; k++) {
		const decide_key_format_row *row = &p->key_formats[k];
		const store_item *it = &items[row->item];
		const codec_val_service *sv = &it->req->services[row->service];
		arr_text(col[0], it->req->requester_identity);
		arr_text(col[1], sv->val_service_id);
		arr_i64(col[2], row->version);
		arr_text(col[3], codec_key_format_type_name(sv->format_type));
		arr_text(col[4], sv->format_version);
		arr_text(col[5], row->content);
		arr_text(col[6], it->req->request_id);
		arr_i64(col[7], it->processed_at);
	}
	for (int c = 0; c < 8; c++)
		arr_close(col[c]);
}

static void build_providers(query *q, const decide_plan *p)
{
	q_init(q, "kms_w5_provider_counts", NULL);
	sbuf *vsps = q_arr(q), *added = q_arr(q);
	for (size_t k = 0; k < p->nproviders; k++) {
		arr_text(vsps, p->providers[k].vsp_id);
		arr_i64(added, p->providers[k].added);
	}
	arr_close(vsps);
	arr_close(added);
}

/* ---- one part of the batch ---- */

typedef enum { PART_OK = 0, PART_DATA, PART_FAILED } part_rc;

static void log_part_error(const store_item *first, size_t n, const char *sqlstate,
                           const char *message)
{
	log_event(LOG_WARN, "store_data_error", "{s:s, s:i, s:I, s:i, s:s, s:s}", "topic",
	          first->topic != NULL ? first->topic : "", "partition", (int)first->partition,
	          "offset", (json_int_t)first->offset, "messages", (int)n, "sqlstate",
	          sqlstate != NULL ? sqlstate : "", "error", message);
}

/* After a failed statement the transaction is aborted: roll it back. */
static part_rc rollback(store *s, part_rc rc, char *errstr, size_t errstr_size)
{
	char scratch[256]; /* errstr keeps why the part failed */
	if (!s->broken && run_plain(s, "ROLLBACK", scratch, sizeof scratch) != 0) {
		errstr_line(errstr, errstr_size, "postgresql rollback", scratch);
		return PART_FAILED;
	}
	return s->broken ? PART_FAILED : rc;
}

/* Read, decide and write items[0..n) in one transaction. */
static part_rc decide_part(store *s, store_item *items, size_t n, const char *kms_id,
                           int64_t now_ms, char *errstr, size_t errstr_size)
{
	query *rq = calloc(R__N, sizeof *rq), *wq = calloc(W__N, sizeof *wq);
	decide_state *st = decide_state_new();
	decide_plan plan = {0};
	const char *sqlstate = NULL;
	part_rc rc = PART_FAILED;
	query *list[8]; /* the longer of the two exchanges */
	size_t nl = 0;

	if (rq == NULL || wq == NULL || st == NULL) {
		errstr_line(errstr, errstr_size, "store", "out of memory");
		goto done;
	}
	build_reads(rq, items, n, now_ms);
	for (size_t k = 0; k < R__N; k++) {
		if (q_failed(&rq[k])) {
			errstr_line(errstr, errstr_size, "store", "out of memory");
			goto done;
		}
		list[k] = &rq[k];
	}
	if (exchange(s, list, R__N, errstr, errstr_size) != 0)
		goto done;
	q_verdict v = verdict(list, R__N, &sqlstate, errstr, errstr_size);
	if (v != Q_OK) {
		if (v == Q_DATA)
			log_part_error(&items[0], n, sqlstate, errstr);
		rc = rollback(s, v == Q_DATA ? PART_DATA : PART_FAILED, errstr, errstr_size);
		goto done;
	}
	if (load_state(st, rq, errstr, errstr_size) != 0 ||
	    decide_batch(st, items, n, kms_id, now_ms, &plan) != 0) {
		if (errstr_size > 0 && errstr[0] == '\0')
			errstr_line(errstr, errstr_size, "store", "out of memory");
		rc = rollback(s, PART_FAILED, errstr, errstr_size);
		goto done;
	}
	for (size_t k = 0; k < R__N; k++)
		q_clear(&rq[k]);

	build_audit(&wq[W_AUDIT], items, plan.audits, plan.naudits, 0);
	build_decisions(&wq[W_DECISIONS], items, &plan);
	build_val_servers(&wq[W_VAL_SERVERS], items, &plan);
	build_key_formats(&wq[W_KEY_FORMATS], items, &plan);
	build_providers(&wq[W_PROVIDERS], &plan);
	q_init(&wq[W_COMMIT], NULL, "COMMIT");
	size_t rows[W__N] = {plan.naudits,      plan.ndecisions, plan.nval_servers,
	                     plan.nkey_formats, plan.nproviders, 1};
	for (size_t k = 0; k < W__N; k++) {
		if (q_failed(&wq[k])) {
			errstr_line(errstr, errstr_size, "store", "out of memory");
			rc = rollback(s, PART_FAILED, errstr, errstr_size);
			goto done;
		}
		if (rows[k] > 0)
			list[nl++] = &wq[k];
	}
	if (exchange(s, list, nl, errstr, errstr_size) != 0)
		goto done;
	v = verdict(list, nl, &sqlstate, errstr, errstr_size);
	if (v != Q_OK) {
		if (v == Q_DATA)
			log_part_error(&items[0], n, sqlstate, errstr);
		rc = rollback(s, v == Q_DATA ? PART_DATA : PART_FAILED, errstr, errstr_size);
		goto done;
	}
	rc = PART_OK;
done:
	for (size_t k = 0; rq != NULL && k < R__N; k++)
		q_clear(&rq[k]);
	for (size_t k = 0; wq != NULL && k < W__N; k++)
		q_clear(&wq[k]);
	free(rq);
	free(wq);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return rc;
}

/* An item that cannot be written: audit it alone as an internal error (with
 * its names, else without). */
static part_rc audit_error(store *s, store_item *it, const char *kms_id, int64_t now_ms,
                           char *errstr, size_t errstr_size)
{
	for (int minimal = 0; minimal <= 1; minimal++) {
		query q[3] = {{0}, {0}, {0}};
		query *list[3] = {&q[0], &q[1], &q[2]};
		size_t zero = 0;
		const char *sqlstate = NULL;
		decide_internal_error(it, kms_id, now_ms);
		q_init(&q[0], NULL, "BEGIN");
		build_audit(&q[1], it, &zero, 1, minimal);
		q_init(&q[2], NULL, "COMMIT");
		q_verdict v = Q_BATCH;
		if (!q_failed(&q[1]) && exchange(s, list, 3, errstr, errstr_size) == 0)
			v = verdict(list, 3, &sqlstate, errstr, errstr_size);
		for (int k = 0; k < 3; k++)
			q_clear(&q[k]);
		if (v == Q_OK)
			return PART_OK;
		if (s->broken || rollback(s, PART_DATA, errstr, errstr_size) != PART_DATA ||
		    v != Q_DATA)
			return PART_FAILED;
		log_part_error(it, 1, sqlstate, errstr);
	}
	errstr_line(errstr, errstr_size, "store", "an item could not even be audited");
	return PART_FAILED;
}

/* Decide items[0..n), splitting on data errors until the message at fault
 * is alone. */
static part_rc decide_range(store *s, store_item *items, size_t n, const char *kms_id,
                            int64_t now_ms, char *errstr, size_t errstr_size)
{
	part_rc rc = decide_part(s, items, n, kms_id, now_ms, errstr, errstr_size);
	if (rc != PART_DATA)
		return rc;
	if (n == 1) {
		/* once more from fresh reads: a concurrent KM-S may have written
		 * what this message read as absent */
		rc = decide_part(s, items, 1, kms_id, now_ms, errstr, errstr_size);
		if (rc != PART_DATA)
			return rc;
		return audit_error(s, items, kms_id, now_ms, errstr, errstr_size);
	}
	size_t half = n / 2;
	rc = decide_range(s, items, half, kms_id, now_ms, errstr, errstr_size);
	if (rc != PART_OK)
		return rc;
	return decide_range(s, items + half, n - half, kms_id, now_ms, errstr, errstr_size);
}

int store_decide_batch(store *s, store_item *items, size_t n, const char *kms_id, int64_t now_ms,
                       char *errstr, size_t errstr_size)
{
	if (kms_id == NULL)
		kms_id = "";
	if (errstr_size > 0)
		errstr[0] = '\0';
	if (n == 0)
		return 0;
	/* A connection that died while idle (server restart, idle timeout) is
	 * only noticed when used: nothing was decided yet, so connect again
	 * once. */
	part_rc rc = PART_FAILED;
	for (int attempt = 0; attempt < 2; attempt++) {
		s->exchanges = 0;
		if (store_ensure_conn(s, errstr, errstr_size) != 0 ||
		    prepare_all(s, errstr, errstr_size) != 0)
			break;
		if (PQenterPipelineMode(s->conn) != 1) {
			errstr_line(errstr, errstr_size, "postgresql pipeline",
			            PQerrorMessage(s->conn));
			break;
		}
		rc = decide_range(s, items, n, kms_id, now_ms, errstr, errstr_size);
		if (!s->broken && PQexitPipelineMode(s->conn) != 1)
			s->broken = 1;
		if (rc == PART_OK || !s->broken || s->exchanges > 0)
			break;
	}
	if (rc != PART_OK) {
		for (size_t k = 0; k < n; k++)
			decide_item_reset(&items[k]);
		return -1;
	}
	return 0;
}
