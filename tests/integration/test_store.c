/*
 * test_store: the store against a live PostgreSQL, given by KMS_DSN. It is
 * the integration layer's, run by scripts/test.sh on the stack; without
 * KMS_DSN it fails, since a run that silently tested nothing would pass.
 * Every name is made unique per run, so the suite can run again on the same
 * database. Covers migrations, each decision path of store_decide_batch
 * (success, versioned key formats, each SLA refusal, replay, conflict,
 * redelivery, DLQ, pre-check failures, a data error confined to one item, a
 * lost connection) and measures a fleet-sized run.
 *
 * Over 800 lines on purpose: one suite for the store module, its cases
 * sharing one database connection, the run's unique tag and the SQL and
 * request builders at the top of the file.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "log.h"
#include "store.h"
#include "validate.h"

static const char *dsn;
static store *st;
static PGconn *db;
static char tag[32];
static int64_t offset_seq;
static unsigned uuid_seq;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- SQL of the tests themselves ---- */

static PGresult *sql(const char *q, int n, const char *const *params)
{
	PGresult *r = PQexecParams(db, q, n, NULL, params, NULL, NULL, 0);
	ExecStatusType s = PQresultStatus(r);
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
		fprintf(stderr, "    sql failed: %s", PQresultErrorMessage(r));
	return r;
}

/* First column of the first row as an integer, -1 when none. */
static long long sql_int(const char *q, int n, const char *const *params)
{
	PGresult *r = sql(q, n, params);
	long long v = -1;
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return v;
}

static void name(char *out, size_t size, const char *base)
{
	snprintf(out, size, "%s-%s", base, tag);
}

static void new_uuid(char out[37])
{
	uuid_seq++;
	snprintf(out, 37, "%08x-0000-4000-8000-%012x", (unsigned)getpid(), uuid_seq);
}

static int add_provider(const char *vsp, int enabled)
{
	const char *p[2] = {vsp, enabled ? "t" : "f"};
	PGresult *r =
	    sql("INSERT INTO providers (vsp_id, name, enabled) VALUES ($1, 'test', $2)", 2, p);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	return ok ? 0 : -1;
}

/* An SLA valid from now+from_s to now+until_s (seconds). services and formats
 * as JSON arrays. */
static int add_sla(const char *vsp, const char *services, const char *formats, int max, int from_s,
                   int until_s, int revoked)
{
	char m[16], f[16], u[16];
	snprintf(m, sizeof m, "%d", max);
	snprintf(f, sizeof f, "%d", from_s);
	snprintf(u, sizeof u, "%d", until_s);
	const char *p[6] = {vsp, services, formats, m, f, u};
	PGresult *r = sql(revoked ? "INSERT INTO slas (vsp_id, services, key_formats,"
	                            " max_val_servers, valid_from, valid_until, revoked_at)"
	                            " SELECT $1, ARRAY(SELECT jsonb_array_elements_text($2)),"
	                            " ARRAY(SELECT jsonb_array_elements_text($3)), $4,"
	                            " now() + make_interval(secs => $5),"
	                            " now() + make_interval(secs => $6), now()"
	                          : "INSERT INTO slas (vsp_id, services, key_formats,"
	                            " max_val_servers, valid_from, valid_until)"
	                            " SELECT $1, ARRAY(SELECT jsonb_array_elements_text($2)),"
	                            " ARRAY(SELECT jsonb_array_elements_text($3)), $4,"
	                            " now() + make_interval(secs => $5),"
	                            " now() + make_interval(secs => $6)",
	                  6, p);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	return ok ? 0 : -1;
}

/* ---- requests built in memory ---- */

typedef struct {
	codec_request req;
	codec_val_service svc[4];
	codec_kv kv[4][3];
	char id[37];
	char identity[128];
	char endpoint[128];
} test_req;

/* A request of identity listing services "name:FORMAT:k=v,k=v" ... */
static void build_req(test_req *t, const char *identity, size_t n, const char *const *specs)
{
	memset(t, 0, sizeof *t);
	new_uuid(t->id);
	snprintf(t->identity, sizeof t->identity, "%s", identity);
	snprintf(t->endpoint, sizeof t->endpoint, "https://val.example/%s", tag);
	t->req.request_id = t->id;
	t->req.requester_identity = t->identity;
	t->req.endpoint = t->endpoint;
	t->req.access_token = "not-stored";
	t->req.services = t->svc;
	t->req.service_count = n;
	t->req.sent_at = now_ms();
	for (size_t i = 0; i < n; i++) {
		/* specs are short literals of the tests: parse without care */
		char buf[128];
		snprintf(buf, sizeof buf, "%s", specs[i]);
		char *format = strchr(buf, ':');
		*format++ = '\0';
		char *kvs = strchr(format, ':');
		*kvs++ = '\0';
		t->svc[i].val_service_id = strdup(buf);
		if (codec_key_format_type_parse(format, &t->svc[i].format_type) != 0)
			abort(); /* a spec names a format that does not exist */
		size_t k = 0;
		char *save = kvs;
		while (save != NULL && *save != '\0' && k < 3) {
			char *next = strchr(save, ',');
			if (next != NULL)
				*next++ = '\0';
			char *eq = strchr(save, '=');
			*eq++ = '\0';
			t->kv[i][k].key = strdup(save);
			t->kv[i][k].value = strdup(eq);
			k++;
			save = next;
		}
		t->svc[i].content = t->kv[i];
		t->svc[i].content_count = k;
	}
}

static void free_req(test_req *t)
{
	for (size_t i = 0; i < t->req.service_count; i++) {
		free(t->svc[i].val_service_id);
		for (size_t k = 0; k < t->svc[i].content_count; k++) {
			free(t->kv[i][k].key);
			free(t->kv[i][k].value);
		}
	}
}

static const char *topic(void)
{
	static char t[64];
	snprintf(t, sizeof t, "requests-%s", tag);
	return t;
}

/* An item for a well-formed, authorized request of provider vsp. */
static void item_for(store_item *it, const test_req *t, const char *vsp)
{
	memset(it, 0, sizeof *it);
	it->topic = topic();
	it->partition = 0;
	it->offset = ++offset_seq;
	it->req = &t->req;
	it->pre_cause = CODEC_CAUSE_NONE;
	it->vsp_id = vsp;
	if (validate_content_hash(&t->req, it->content_hash) != 0)
		abort(); /* no test can go on without the hash */
}

static int decide(store_item *items, size_t n, const char *kms, int64_t at)
{
	char err[256] = "";
	int rc = store_decide_batch(st, items, n, kms, at, err, sizeof err);
	if (rc != 0)
		fprintf(stderr, "    store_decide_batch: %s\n", err);
	return rc;
}

static long long count_key_formats(const char *identity, const char *service)
{
	const char *p[2] = {identity, service};
	return sql_int("SELECT count(*) FROM key_formats WHERE requester_identity = $1"
	               " AND val_service_id = $2",
	               2, p);
}

static long long count_where(const char *q, const char *v)
{
	const char *p[1] = {v};
	return sql_int(q, 1, p);
}

/* ---- cases ---- */

static int test_migrate_twice(void)
{
	char err[256];
	int first = store_migrate(st, err, sizeof err);
	CHECK(first >= 0);
	CHECK_INT(store_migrate(st, err, sizeof err), 0);
	CHECK(sql_int("SELECT count(*) FROM schema_migrations WHERE version = 1", 0, NULL) == 1);
	CHECK_INT(store_ping(st, err, sizeof err), 0);
	return 0;
}

static int test_success_one_service(void)
{
	char vsp[64], who[64];
	name(vsp, sizeof vsp, "vsp-one");
	name(who, sizeof who, "val-one");
	CHECK_INT(add_provider(vsp, 1), 0);
	CHECK_INT(add_sla(vsp, "[\"svc-a\"]", "[\"JWK\"]", 10, -3600, 3600, 0), 0);
	test_req t;
	const char *specs[] = {"svc-a:JWK:kty=oct,alg=A256GCM"};
	build_req(&t, who, 1, specs);
	store_item it;
	item_for(&it, &t, vsp);
	int64_t at = now_ms();
	CHECK_INT(decide(&it, 1, "kms-1", at), 0);
	CHECK_INT(it.outcome, STORE_OUTCOME_DECIDED);
	CHECK_INT(it.has_result, 1);
	CHECK_INT(it.result, CODEC_RESULT_SUCCESS);
	CHECK_INT(it.cause, CODEC_CAUSE_NONE);
	CHECK_STR(it.detail, "");
	CHECK_STR(it.kms_id, "kms-1");
	CHECK_INT(it.processed_at, at);

	CHECK_INT(count_where("SELECT count(*) FROM val_servers WHERE requester_identity = $1"
	                      " AND endpoint LIKE 'https://val.example/%'",
	                      who),
	          1);
	CHECK_INT(count_key_formats(who, "svc-a"), 1);
	const char *p[1] = {who};
	CHECK_INT(sql_int("SELECT count(*) FROM key_formats WHERE requester_identity = $1"
	                  " AND content = '{\"alg\": \"A256GCM\", \"kty\": \"oct\"}'::jsonb"
	                  " AND format_type = 'JWK' AND format_version IS NULL AND version = 1",
	                  1, p),
	          1);
	CHECK_INT(count_where("SELECT count(*) FROM decisions WHERE request_id = $1"
	                      " AND result = 'SUCCESS' AND cause IS NULL AND detail IS NULL",
	                      t.id),
	          1);
	CHECK_INT(count_where("SELECT processed_at FROM decisions WHERE request_id = $1", t.id),
	          at);
	CHECK_INT(count_where("SELECT count(*) FROM audit WHERE request_id = $1"
	                      " AND outcome = 'DECIDED' AND has_result",
	                      t.id),
	          1);
	CHECK_INT(count_where("SELECT val_server_count FROM providers WHERE vsp_id = $1", vsp), 1);
	/* the token is stored nowhere */
	CHECK_INT(count_where("SELECT (SELECT count(*) FROM audit a WHERE a::text LIKE $1)"
	                      " + (SELECT count(*) FROM decisions d WHERE d::text LIKE $1)"
	                      " + (SELECT count(*) FROM val_servers v WHERE v::text LIKE $1)"
	                      " + (SELECT count(*) FROM key_formats k WHERE k::text LIKE $1)",
	                      "%not-stored%"),
	          0);
	free_req(&t);
	return 0;
}

static int test_versions_and_services(void)
{
	char vsp[64], who[64];
	name(vsp, sizeof vsp, "vsp-ver");
	name(who, sizeof who, "val-ver");
	CHECK_INT(add_provider(vsp, 1), 0);
	CHECK_INT(add_sla(vsp, "[\"a\", \"b\", \"c\"]", "[\"JWK\", \"RAW\"]", 10, -60, 3600, 0), 0);
	test_req t1, t2, t3;
	const char *s1[] = {"a:JWK:kty=oct,alg=A128GCM", "b:RAW:"};
	const char *s2[] = {"a:JWK:kty=oct,alg=A256GCM", "b:RAW:", "c:RAW:len=32"};
	/* same formats, content keys in another order: no new version */
	const char *s3[] = {"c:RAW:len=32", "a:JWK:alg=A256GCM,kty=oct"};
	build_req(&t1, who, 2, s1);
	build_req(&t2, who, 3, s2);
	build_req(&t3, who, 2, s3);
	t3.req.endpoint = "https://moved.example/"; /* the last one wins */
	store_item it[3];
	item_for(&it[0], &t1, vsp);
	item_for(&it[1], &t2, vsp);
	item_for(&it[2], &t3, vsp);
	/* one batch: the later requests see what the earlier ones wrote */
	CHECK_INT(decide(it, 3, "kms-1", now_ms()), 0);
	for (int i = 0; i < 3; i++) {
		CHECK_INT(it[i].outcome, STORE_OUTCOME_DECIDED);
		CHECK_INT(it[i].result, CODEC_RESULT_SUCCESS);
	}
	CHECK_INT(count_key_formats(who, "a"), 2);
	CHECK_INT(count_key_formats(who, "b"), 1);
	CHECK_INT(count_key_formats(who, "c"), 1);
	const char *p[1] = {who};
	CHECK_INT(sql_int("SELECT count(*) FROM key_formats WHERE requester_identity = $1"
	                  " AND val_service_id = 'a' AND version = 1"
	                  " AND content->>'alg' = 'A128GCM'",
	                  1, p),
	          1);
	CHECK_INT(sql_int("SELECT count(*) FROM key_formats WHERE requester_identity = $1"
	                  " AND val_service_id = 'a' AND version = 2"
	                  " AND content->>'alg' = 'A256GCM'",
	                  1, p),
	          1);
	CHECK_INT(count_where("SELECT count(*) FROM val_servers WHERE requester_identity = $1"
	                      " AND endpoint = 'https://moved.example/'",
	                      who),
	          1);
	/* a changed format version alone makes a new version */
	test_req t4;
	const char *s4[] = {"b:RAW:"};
	build_req(&t4, who, 1, s4);
	t4.svc[0].format_version = "2";
	store_item i4;
	item_for(&i4, &t4, vsp);
	CHECK_INT(decide(&i4, 1, "kms-1", now_ms()), 0);
	CHECK_INT(count_key_formats(who, "b"), 2);
	CHECK_INT(count_where("SELECT val_server_count FROM providers WHERE vsp_id = $1", vsp), 1);
	free_req(&t1);
	free_req(&t2);
	free_req(&t3);
	free_req(&t4);
	return 0;
}

/* A request of one new VAL server to vsp listing spec; expects cause and a
 * detail containing needle, and nothing applied. */
static int expect_refused(const char *vsp, const char *who, const char *const *specs, size_t n,
                          codec_cause cause, const char *needle)
{
	test_req t;
	build_req(&t, who, n, specs);
	store_item it;
	item_for(&it, &t, vsp);
	int64_t at = now_ms();
	CHECK_INT(decide(&it, 1, "kms-2", at), 0);
	CHECK_INT(it.outcome, STORE_OUTCOME_DECIDED);
	CHECK_INT(it.has_result, 1);
	CHECK_INT(it.result, CODEC_RESULT_FAILURE);
	CHECK_INT(it.cause, cause);
	if (strstr(it.detail, needle) == NULL) {
		fprintf(stderr, "    detail \"%s\" lacks \"%s\"\n", it.detail, needle);
		return -1;
	}
	CHECK_INT(it.processed_at, at);
	CHECK_INT(
	    count_where("SELECT count(*) FROM key_formats WHERE requester_identity = $1", who), 0);
	CHECK_INT(count_where("SELECT count(*) FROM decisions WHERE request_id = $1"
	                      " AND result = 'FAILURE'",
	                      t.id),
	          1);
	CHECK_INT(count_where("SELECT count(*) FROM audit WHERE request_id = $1", t.id), 1);
	free_req(&t);
	return 0;
}

static int test_sla_refusals(void)
{
	char none[64], unknown[64], expired[64], revoked[64], disabled[64], who[64];
	name(none, sizeof none, "vsp-none");
	name(unknown, sizeof unknown, "vsp-unknown");
	name(expired, sizeof expired, "vsp-expired");
	name(revoked, sizeof revoked, "vsp-revoked");
	name(disabled, sizeof disabled, "vsp-disabled");
	name(who, sizeof who, "val-refused");
	CHECK_INT(add_provider(none, 1), 0);
	CHECK_INT(add_provider(expired, 1), 0);
	CHECK_INT(add_sla(expired, "[\"a\"]", "[\"JWK\"]", 10, -7200, -3600, 0), 0);
	CHECK_INT(add_sla(expired, "[\"a\"]", "[\"JWK\"]", 10, 3600, 7200, 0), 0); /* future */
	CHECK_INT(add_provider(revoked, 1), 0);
	CHECK_INT(add_sla(revoked, "[\"a\"]", "[\"JWK\"]", 10, -60, 3600, 1), 0);
	CHECK_INT(add_provider(disabled, 0), 0);
	CHECK_INT(add_sla(disabled, "[\"a\"]", "[\"JWK\"]", 10, -60, 3600, 0), 0);
	const char *a[] = {"a:JWK:"};
	CHECK_INT(expect_refused(none, who, a, 1, CODEC_CAUSE_NOT_ALLOWED_BY_SLA, "covers"), 0);
	CHECK_INT(expect_refused(unknown, who, a, 1, CODEC_CAUSE_NOT_ALLOWED_BY_SLA, "has no SLA"),
	          0);
	CHECK_INT(expect_refused(expired, who, a, 1, CODEC_CAUSE_NOT_ALLOWED_BY_SLA, "'a'"), 0);
	CHECK_INT(expect_refused(revoked, who, a, 1, CODEC_CAUSE_NOT_ALLOWED_BY_SLA, "'a'"), 0);
	CHECK_INT(expect_refused(disabled, who, a, 1, CODEC_CAUSE_NOT_ALLOWED_BY_SLA, "disabled"),
	          0);
	CHECK_INT(
	    count_where("SELECT count(*) FROM val_servers WHERE requester_identity = $1", who), 0);
	return 0;
}

static int test_partly_covered_applies_nothing(void)
{
	char vsp[64], who[64];
	name(vsp, sizeof vsp, "vsp-partly");
	name(who, sizeof who, "val-partly");
	CHECK_INT(add_provider(vsp, 1), 0);
	CHECK_INT(add_sla(vsp, "[\"a\"]", "[\"JWK\"]", 10, -60, 3600, 0), 0);
	const char *ok[] = {"a:JWK:"};
	test_req t;
	build_req(&t, who, 1, ok);
	store_item it;
	item_for(&it, &t, vsp);
	CHECK_INT(decide(&it, 1, "kms-1", now_ms()), 0);
	CHECK_INT(it.result, CODEC_RESULT_SUCCESS);
	/* a then changes and b is not covered: neither is applied */
	const char *two[] = {"a:JWK:kty=EC", "b:JWK:"};
	test_req t2;
	build_req(&t2, who, 2, two);
	store_item i2;
	item_for(&i2, &t2, vsp);
	CHECK_INT(decide(&i2, 1, "kms-1", now_ms()), 0);
	CHECK_INT(i2.cause, CODEC_CAUSE_NOT_ALLOWED_BY_SLA);
	CHECK(strstr(i2.detail, "'b'") != NULL);
	CHECK_INT(count_key_formats(who, "a"), 1);
	CHECK_INT(count_key_formats(who, "b"), 0);
	CHECK_INT(count_where("SELECT count(*) FROM val_servers WHERE last_request_id = $1", t.id),
	          1);
	free_req(&t);
	free_req(&t2);
	return 0;
}

static int test_limit_and_other_provider(void)
{
	char vsp[64], other[64], who1[64], who2[64];
	name(vsp, sizeof vsp, "vsp-max");
	name(other, sizeof other, "vsp-other");
	name(who1, sizeof who1, "val-max-1");
	name(who2, sizeof who2, "val-max-2");
	CHECK_INT(add_provider(vsp, 1), 0);
	CHECK_INT(add_sla(vsp, "[\"a\"]", "[\"JWK\"]", 1, -60, 3600, 0), 0);
	CHECK_INT(add_provider(other, 1), 0);
	CHECK_INT(add_sla(other, "[\"a\"]", "[\"JWK\"]", 10, -60, 3600, 0), 0);
	const char *a[] = {"a:JWK:"};
	test_req t1, t2;
	build_req(&t1, who1, 1, a);
	build_req(&t2, who2, 1, a);
	store_item it[2];
	item_for(&it[0], &t1, vsp);
	item_for(&it[1], &t2, vsp);
	CHECK_INT(decide(it, 2, "kms-1", now_ms()), 0);
	CHECK_INT(it[0].result, CODEC_RESULT_SUCCESS);
	CHECK_INT(it[1].cause, CODEC_CAUSE_NOT_ALLOWED_BY_SLA);
	CHECK(strstr(it[1].detail, "limit") != NULL);
	/* the admitted one comes back: still within the limit */
	const char *a2[] = {"a:JWK:kty=oct"};
	test_req t3;
	build_req(&t3, who1, 1, a2);
	store_item i3;
	item_for(&i3, &t3, vsp);
	CHECK_INT(decide(&i3, 1, "kms-1", now_ms()), 0);
	CHECK_INT(i3.result, CODEC_RESULT_SUCCESS);
	/* the same VAL server under another provider is refused */
	test_req t4;
	build_req(&t4, who1, 1, a);
	store_item i4;
	item_for(&i4, &t4, other);
	CHECK_INT(decide(&i4, 1, "kms-1", now_ms()), 0);
	CHECK_INT(i4.cause, CODEC_CAUSE_NOT_ALLOWED_BY_SLA);
	CHECK(strstr(i4.detail, "another") != NULL);
	CHECK_INT(count_where("SELECT count(*) FROM val_servers WHERE vsp_id = $1", vsp), 1);
	CHECK_INT(count_where("SELECT count(*) FROM val_servers WHERE vsp_id = $1", other), 0);
	free_req(&t1);
	free_req(&t2);
	free_req(&t3);
	free_req(&t4);
	return 0;
}

static int test_key_format_not_allowed(void)
{
	char vsp[64], who[64];
	name(vsp, sizeof vsp, "vsp-kf");
	name(who, sizeof who, "val-kf");
	CHECK_INT(add_provider(vsp, 1), 0);
	CHECK_INT(add_sla(vsp, "[\"a\", \"b\"]", "[\"JWK\"]", 10, -60, 3600, 0), 0);
	const char *s[] = {"a:JWK:", "b:X509:"};
	return expect_refused(vsp, who, s, 2, CODEC_CAUSE_KEY_FORMAT_NOT_ALLOWED,
	                      "key format X509 is not allowed by the SLA for VAL service 'b'");
}

static int test_replay_conflict_redelivery(void)
{
	char vsp[64], who[64];
	name(vsp, sizeof vsp, "vsp-idem");
	name(who, sizeof who, "val-idem");
	CHECK_INT(add_provider(vsp, 1), 0);
	CHECK_INT(add_sla(vsp, "[\"a\"]", "[\"JWK\"]", 10, -60, 3600, 0), 0);
	const char *a[] = {"a:JWK:kty=oct"};
	test_req t;
	build_req(&t, who, 1, a);
	store_item first;
	item_for(&first, &t, vsp);
	int64_t at = now_ms() - 5000;
	CHECK_INT(decide(&first, 1, "kms-first", at), 0);
	CHECK_INT(first.result, CODEC_RESULT_SUCCESS);

	/* the same request again, at another offset, decided by another KM-S
	 * later: the stored Result, nothing changed */
	store_item again;
	item_for(&again, &t, vsp);
	CHECK_INT(decide(&again, 1, "kms-second", at + 1000), 0);
	CHECK_INT(again.outcome, STORE_OUTCOME_REPLAYED);
	CHECK_INT(again.has_result, 1);
	CHECK_INT(again.result, CODEC_RESULT_SUCCESS);
	CHECK_INT(again.cause, CODEC_CAUSE_NONE);
	CHECK_STR(again.detail, "");
	CHECK_STR(again.kms_id, "kms-first");
	CHECK_INT(again.processed_at, at);
	CHECK_INT(count_key_formats(who, "a"), 1);

	/* same requestId, other content */
	const char *b[] = {"a:JWK:kty=EC"};
	test_req other;
	build_req(&other, who, 1, b);
	memcpy(other.id, t.id, sizeof t.id);
	store_item conflict;
	item_for(&conflict, &other, vsp);
	CHECK_INT(decide(&conflict, 1, "kms-second", at + 2000), 0);
	CHECK_INT(conflict.outcome, STORE_OUTCOME_CONFLICT);
	CHECK_INT(conflict.result, CODEC_RESULT_FAILURE);
	CHECK_INT(conflict.cause, CODEC_CAUSE_REQUEST_ID_CONFLICT);
	CHECK_STR(conflict.detail, "requestId was already used with other content");
	CHECK_STR(conflict.kms_id, "kms-second");
	CHECK_INT(conflict.processed_at, at + 2000);
	CHECK_INT(count_key_formats(who, "a"), 1);
	CHECK_INT(count_where("SELECT count(*) FROM decisions WHERE request_id = $1", t.id), 1);
	CHECK_INT(count_where("SELECT count(*) FROM audit WHERE request_id = $1", t.id), 3);

	/* each message consumed again (crash recovery): its recorded outcome,
	 * whatever the clock and the KM-S say now */
	store_item *orig[3] = {&first, &again, &conflict};
	for (int i = 0; i < 3; i++) {
		store_item re = *orig[i];
		CHECK_INT(decide(&re, 1, "kms-third", at + 9000), 0);
		CHECK_INT(re.outcome, STORE_OUTCOME_REDELIVERED);
		CHECK_INT(re.has_result, orig[i]->has_result);
		CHECK_INT(re.result, orig[i]->result);
		CHECK_INT(re.cause, orig[i]->cause);
		CHECK_STR(re.detail, orig[i]->detail);
		CHECK_STR(re.kms_id, orig[i]->kms_id);
		CHECK_INT(re.processed_at, orig[i]->processed_at);
	}
	CHECK_INT(count_where("SELECT count(*) FROM audit WHERE request_id = $1", t.id), 3);

	/* the same requestId twice in one batch: the second is a replay */
	test_req u;
	build_req(&u, who, 1, a);
	store_item pair[2];
	item_for(&pair[0], &u, vsp);
	item_for(&pair[1], &u, vsp);
	CHECK_INT(decide(pair, 2, "kms-1", at + 10000), 0);
	CHECK_INT(pair[0].outcome, STORE_OUTCOME_DECIDED);
	CHECK_INT(pair[1].outcome, STORE_OUTCOME_REPLAYED);
	CHECK_INT(pair[1].processed_at, at + 10000);
	free_req(&t);
	free_req(&other);
	free_req(&u);
	return 0;
}

static int test_dlq(void)
{
	char who[64], id[37];
	name(who, sizeof who, "val-dlq");
	new_uuid(id);
	store_item it[2];
	memset(it, 0, sizeof it);
	for (int i = 0; i < 2; i++) {
		it[i].topic = topic();
		it[i].offset = ++offset_seq;
		it[i].dlq = 1;
		it[i].pre_cause = CODEC_CAUSE_INVALID_REQUEST;
		it[i].pre_detail = "the value is not a request";
	}
	it[0].request_id = id;
	it[0].requester_identity = who;
	it[1].request_id = id; /* identity not salvaged: no Result */
	int64_t at = now_ms();
	CHECK_INT(decide(it, 2, "kms-1", at), 0);
	CHECK_INT(it[0].outcome, STORE_OUTCOME_DLQ);
	CHECK_INT(it[0].has_result, 1);
	CHECK_INT(it[0].result, CODEC_RESULT_FAILURE);
	CHECK_INT(it[0].cause, CODEC_CAUSE_INVALID_REQUEST);
	CHECK_STR(it[0].detail, "the value is not a request");
	CHECK_INT(it[0].processed_at, at);
	CHECK_INT(it[1].outcome, STORE_OUTCOME_DLQ);
	CHECK_INT(it[1].has_result, 0);
	CHECK_INT(count_where("SELECT count(*) FROM decisions WHERE request_id = $1", id), 0);
	CHECK_INT(
	    count_where("SELECT count(*) FROM audit WHERE request_id = $1 AND outcome = 'DLQ'", id),
	    2);
	store_item re = it[1];
	CHECK_INT(decide(&re, 1, "kms-1", at + 1), 0);
	CHECK_INT(re.outcome, STORE_OUTCOME_REDELIVERED);
	CHECK_INT(re.has_result, 0);
	return 0;
}

static int test_pre_check_failures(void)
{
	char vsp[64], who[64];
	name(vsp, sizeof vsp, "vsp-pre");
	name(who, sizeof who, "val-pre");
	const char *a[] = {"a:JWK:"};
	test_req t1, t2;
	build_req(&t1, who, 1, a);
	build_req(&t2, who, 1, a);
	t2.req.request_id = "not-a-uuid";
	store_item it[2];
	item_for(&it[0], &t1, NULL);
	it[0].pre_cause = CODEC_CAUSE_UNAUTHORIZED;
	it[0].pre_detail = "the access token has expired";
	item_for(&it[1], &t2, NULL);
	it[1].pre_cause = CODEC_CAUSE_INVALID_REQUEST;
	it[1].pre_detail = "requestId is not a well-formed UUID";
	it[1].reply_note = "reply topic refused";
	CHECK_INT(decide(it, 2, "kms-1", now_ms()), 0);
	CHECK_INT(it[0].outcome, STORE_OUTCOME_DECIDED);
	CHECK_INT(it[0].cause, CODEC_CAUSE_UNAUTHORIZED);
	CHECK_STR(it[0].detail, "the access token has expired");
	CHECK_INT(it[1].cause, CODEC_CAUSE_INVALID_REQUEST);
	CHECK_INT(it[1].has_result, 1);
	CHECK_INT(count_where("SELECT count(*) FROM decisions WHERE request_id = $1"
	                      " AND cause = 'UNAUTHORIZED'",
	                      t1.id),
	          1);
	CHECK_INT(count_where("SELECT count(*) FROM decisions WHERE request_id = $1", "not-a-uuid"),
	          0);
	CHECK_INT(count_where("SELECT count(*) FROM audit WHERE requester_identity = $1"
	                      " AND reply_note = 'reply topic refused'",
	                      who),
	          1);
	CHECK_INT(
	    count_where("SELECT count(*) FROM val_servers WHERE requester_identity = $1", who), 0);
	free_req(&t1);
	free_req(&t2);
	return 0;
}

static int test_data_error_confined(void)
{
	char vsp[64], who[64], who3[64];
	name(vsp, sizeof vsp, "vsp-data");
	name(who, sizeof who, "val-data");
	name(who3, sizeof who3, "val-data-3");
	CHECK_INT(add_provider(vsp, 1), 0);
	CHECK_INT(add_sla(vsp, "[\"a\"]", "[\"JWK\"]", 10, -60, 3600, 0), 0);
	const char *a[] = {"a:JWK:"};
	test_req t[4];
	build_req(&t[0], who, 1, a);
	build_req(&t[1], who, 1, a);
	build_req(&t[2], who, 1, a);
	build_req(&t[3], who3, 1, a);
	/* item 1: an endpoint that is not UTF-8 (SQLSTATE 22021) */
	t[1].req.endpoint = "https://val.example/\xff\xfe";
	/* item 2: an identity too long for a btree entry (SQLSTATE 54000);
	 * pseudo-random so that it does not compress */
	static char long_identity[4001];
	unsigned x = 12345;
	for (size_t i = 0; i + 1 < sizeof long_identity; i++) {
		x = x * 1103515245u + 12345u;
		long_identity[i] = (char)('a' + (x >> 16) % 26);
	}
	t[2].req.requester_identity = long_identity;
	store_item it[4];
	for (int i = 0; i < 4; i++)
		item_for(&it[i], &t[i], vsp);
	int64_t at = now_ms();
	CHECK_INT(decide(it, 4, "kms-1", at), 0);
	CHECK_INT(it[0].outcome, STORE_OUTCOME_DECIDED);
	CHECK_INT(it[0].result, CODEC_RESULT_SUCCESS);
	for (int i = 1; i <= 2; i++) {
		CHECK_INT(it[i].outcome, STORE_OUTCOME_ERROR);
		CHECK_INT(it[i].has_result, 1);
		CHECK_INT(it[i].result, CODEC_RESULT_FAILURE);
		CHECK_INT(it[i].cause, CODEC_CAUSE_INTERNAL_ERROR);
		CHECK_STR(it[i].detail, "the KM-S could not record the request");
		CHECK_INT(it[i].processed_at, at);
		CHECK_INT(
		    count_where("SELECT count(*) FROM decisions WHERE request_id = $1", t[i].id),
		    0);
		CHECK_INT(count_where("SELECT count(*) FROM audit WHERE request_id = $1"
		                      " AND outcome = 'ERROR'",
		                      t[i].id),
		          1);
	}
	CHECK_INT(it[3].outcome, STORE_OUTCOME_DECIDED);
	CHECK_INT(it[3].result, CODEC_RESULT_SUCCESS);
	CHECK_INT(count_where("SELECT count(*) FROM decisions WHERE request_id = $1", t[3].id), 1);
	CHECK_INT(count_key_formats(who, "a"), 1);
	CHECK_INT(count_key_formats(who3, "a"), 1);
	/* redelivered, the error is answered the same */
	store_item re = it[2];
	CHECK_INT(decide(&re, 1, "kms-2", at + 5), 0);
	CHECK_INT(re.outcome, STORE_OUTCOME_REDELIVERED);
	CHECK_INT(re.cause, CODEC_CAUSE_INTERNAL_ERROR);
	CHECK_INT(re.processed_at, at);
	for (int i = 0; i < 4; i++)
		free_req(&t[i]);
	return 0;
}

typedef struct {
	store_item *items;
	size_t n;
	int rc;
	char err[256];
} batch_arg;

static void *batch_thread(void *p)
{
	batch_arg *a = p;
	a->rc =
	    store_decide_batch(st, a->items, a->n, "kms-thread", now_ms(), a->err, sizeof a->err);
	return NULL;
}

/* Wait (up to 10 s) until the store's session waits for a lock. */
static int store_waits_for_lock(void)
{
	for (int i = 0; i < 200; i++) {
		if (sql_int("SELECT count(*) FROM pg_stat_activity WHERE"
		            " application_name = 'test_store' AND wait_event_type = 'Lock'",
		            0, NULL) > 0)
			return 1;
		usleep(50 * 1000);
	}
	return 0;
}

/* A peer session that holds an uncommitted VAL server row of identity for
 * provider vsp, so that the store's admission of it waits. */
static PGconn *peer_holding(const char *identity, const char *vsp)
{
	PGconn *peer = PQconnectdb(dsn);
	const char *p[2] = {identity, vsp};
	PQclear(PQexec(peer, "BEGIN"));
	PGresult *r =
	    PQexecParams(peer,
	                 "INSERT INTO val_servers VALUES ($1, $2, 'https://peer.example/',"
	                 " now(), now(), 'peer')",
	                 2, NULL, p, NULL, NULL, 0);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	if (!ok) {
		fprintf(stderr, "    peer: %s", PQerrorMessage(peer));
		PQfinish(peer);
		return NULL;
	}
	return peer;
}

static int test_connection_lost(void)
{
	char vsp[64], who[64], held[64];
	name(vsp, sizeof vsp, "vsp-lost");
	name(who, sizeof who, "val-lost");
	name(held, sizeof held, "val-lost-held");
	CHECK_INT(add_provider(vsp, 1), 0);
	CHECK_INT(add_sla(vsp, "[\"a\"]", "[\"JWK\"]", 10, -60, 3600, 0), 0);
	const char *a[] = {"a:JWK:"};
	const char *end_store =
	    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
	    " WHERE pid <> pg_backend_pid() AND application_name = 'test_store'";

	/* the session ends while idle: the next batch connects again */
	test_req t0;
	build_req(&t0, who, 1, a);
	store_item i0;
	item_for(&i0, &t0, vsp);
	CHECK(sql_int(end_store, 0, NULL) >= 1);
	usleep(100 * 1000);
	CHECK_INT(decide(&i0, 1, "kms-1", now_ms()), 0);
	CHECK_INT(i0.outcome, STORE_OUTCOME_DECIDED);

	/* the session ends in the middle of a batch: nothing of the batch is
	 * committed, the outputs are reset, and the batch can be retried */
	test_req t[2];
	build_req(&t[0], who, 1, a);
	build_req(&t[1], held, 1, a);
	store_item it[2];
	item_for(&it[0], &t[0], vsp);
	item_for(&it[1], &t[1], vsp);
	PGconn *peer = peer_holding(held, vsp);
	CHECK(peer != NULL);
	batch_arg arg = {it, 2, -2, ""};
	pthread_t th;
	CHECK(pthread_create(&th, NULL, batch_thread, &arg) == 0);
	int waited = store_waits_for_lock();
	long long ended = sql_int(end_store, 0, NULL);
	pthread_join(th, NULL);
	PQclear(PQexec(peer, "ROLLBACK"));
	PQfinish(peer);
	CHECK(waited);
	CHECK(ended >= 1);
	CHECK_INT(arg.rc, -1);
	CHECK(arg.err[0] != '\0');
	CHECK_INT(it[0].outcome, STORE_OUTCOME_ERROR); /* reset */
	CHECK_INT(it[0].processed_at, 0);
	CHECK_INT(count_where("SELECT count(*) FROM audit WHERE request_id = $1", t[0].id), 0);
	CHECK_INT(count_where("SELECT count(*) FROM decisions WHERE request_id = $1", t[0].id), 0);

	CHECK_INT(decide(it, 2, "kms-1", now_ms()), 0);
	CHECK_INT(it[0].outcome, STORE_OUTCOME_DECIDED);
	CHECK_INT(it[1].outcome, STORE_OUTCOME_DECIDED);
	CHECK_INT(it[1].result, CODEC_RESULT_SUCCESS);
	char err[256];
	CHECK_INT(store_ping(st, err, sizeof err), 0);
	free_req(&t0);
	free_req(&t[0]);
	free_req(&t[1]);
	return 0;
}

/* Another KM-S stores the same new VAL server for another provider while
 * this one admits it: this one waits on the other's row, finds it taken,
 * decides the request again and refuses it. */
static int test_admission_race(void)
{
	char vsp[64], other[64], who[64];
	name(vsp, sizeof vsp, "vsp-race");
	name(other, sizeof other, "vsp-race-other");
	name(who, sizeof who, "val-race");
	CHECK_INT(add_provider(vsp, 1), 0);
	CHECK_INT(add_sla(vsp, "[\"a\"]", "[\"JWK\"]", 10, -60, 3600, 0), 0);
	CHECK_INT(add_provider(other, 1), 0);
	PGconn *peer = peer_holding(who, other);
	CHECK(peer != NULL);

	const char *a[] = {"a:JWK:"};
	test_req t;
	build_req(&t, who, 1, a);
	store_item it;
	item_for(&it, &t, vsp);
	batch_arg arg = {&it, 1, -2, ""};
	pthread_t th;
	CHECK(pthread_create(&th, NULL, batch_thread, &arg) == 0);
	/* let the peer commit only once the store waits for its row */
	int waited = store_waits_for_lock();
	PQclear(PQexec(peer, "COMMIT"));
	PQfinish(peer);
	pthread_join(th, NULL);
	CHECK(waited);
	CHECK_INT(arg.rc, 0);
	CHECK_INT(it.outcome, STORE_OUTCOME_DECIDED);
	CHECK_INT(it.cause, CODEC_CAUSE_NOT_ALLOWED_BY_SLA);
	CHECK(strstr(it.detail, "another") != NULL);
	CHECK_INT(count_where("SELECT count(*) FROM val_servers WHERE requester_identity = $1"
	                      " AND last_request_id = 'peer'",
	                      who),
	          1);
	CHECK_INT(count_key_formats(who, "a"), 0);
	CHECK_INT(count_where("SELECT val_server_count FROM providers WHERE vsp_id = $1", vsp), 0);
	free_req(&t);
	return 0;
}

/* A fleet: 10,000 VAL servers of one provider, each with 3 services, in
 * batches of 250; then the same requests again (replays). Prints the rates. */
static int test_fleet_rate(void)
{
	enum { FLEET = 10000, BATCH = 250 };
	char vsp[64];
	name(vsp, sizeof vsp, "vsp-fleet");
	CHECK_INT(add_provider(vsp, 1), 0);
	CHECK_INT(add_sla(vsp, "[\"a\", \"b\", \"c\"]", "[\"JWK\", \"RAW\"]", FLEET, -60, 3600, 0),
	          0);
	test_req *t = calloc(FLEET, sizeof *t);
	store_item *it = calloc(FLEET, sizeof *it);
	CHECK(t != NULL && it != NULL);
	const char *s[] = {"a:JWK:kty=oct,alg=A256GCM", "b:RAW:len=32", "c:JWK:kty=EC,crv=P-256"};
	for (int i = 0; i < FLEET; i++) {
		char who[64];
		snprintf(who, sizeof who, "fleet-%d-%s", i, tag);
		build_req(&t[i], who, 3, s);
	}
	static const char *const pass_name[3] = {"first provisioning", "replays",
	                                         "renewal with one changed format"};
	for (int pass = 0; pass < 3; pass++) {
		for (int i = 0; i < FLEET && pass == 2; i++) {
			new_uuid(t[i].id);
			free(t[i].kv[0][1].value);
			t[i].kv[0][1].value = strdup("A128GCM");
		}
		for (int i = 0; i < FLEET; i++)
			item_for(&it[i], &t[i], vsp);
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		for (int i = 0; i < FLEET; i += BATCH)
			CHECK_INT(decide(&it[i], BATCH, "kms-1", now_ms()), 0);
		clock_gettime(CLOCK_MONOTONIC, &b);
		double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
		printf("    fleet %s: %d requests in %.2f s (%.0f/s)\n", pass_name[pass], FLEET,
		       secs, FLEET / secs);
		for (int i = 0; i < FLEET; i++)
			CHECK_INT(it[i].outcome,
			          pass == 1 ? STORE_OUTCOME_REPLAYED : STORE_OUTCOME_DECIDED);
	}
	CHECK_INT(count_where("SELECT val_server_count FROM providers WHERE vsp_id = $1", vsp),
	          FLEET);
	CHECK_INT(count_where("SELECT count(*) FROM key_formats k JOIN val_servers v"
	                      " USING (requester_identity) WHERE v.vsp_id = $1",
	                      vsp),
	          4 * FLEET);
	for (int i = 0; i < FLEET; i++)
		free_req(&t[i]);
	free(t);
	free(it);
	return 0;
}

static const check_case cases[] = {
    {"migrate_twice", test_migrate_twice},
    {"success_one_service", test_success_one_service},
    {"versions_and_services", test_versions_and_services},
    {"sla_refusals", test_sla_refusals},
    {"partly_covered_applies_nothing", test_partly_covered_applies_nothing},
    {"limit_and_other_provider", test_limit_and_other_provider},
    {"key_format_not_allowed", test_key_format_not_allowed},
    {"replay_conflict_redelivery", test_replay_conflict_redelivery},
    {"dlq", test_dlq},
    {"pre_check_failures", test_pre_check_failures},
    {"data_error_confined", test_data_error_confined},
    {"connection_lost", test_connection_lost},
    {"admission_race", test_admission_race},
    {"fleet_rate", test_fleet_rate},
};

int main(void)
{
	dsn = getenv("KMS_DSN");
	if (dsn == NULL || dsn[0] == '\0') {
		fprintf(stderr, "store: KMS_DSN is not set (eval \"$(scripts/stack env)\")\n");
		printf("0 passed, 1 failed\n");
		return 1;
	}
	snprintf(tag, sizeof tag, "%lx%x", (unsigned long)time(NULL), (unsigned)getpid());
	/* the data-error case logs its item errors by design */
	log_set_level(LOG_ERROR);
	/* the store's session is named so that a case can find and end it */
	char full[1024];
	snprintf(full, sizeof full, "%s%sapplication_name=test_store", dsn,
	         strchr(dsn, '?') != NULL ? "&" : (strstr(dsn, "://") != NULL ? "?" : " "));
	char err[256];
	st = store_new(full, err, sizeof err);
	db = PQconnectdb(dsn);
	if (st == NULL || PQstatus(db) != CONNECTION_OK) {
		fprintf(stderr, "cannot connect: %s\n", st == NULL ? err : PQerrorMessage(db));
		printf("0 passed, 1 failed\n");
		store_destroy(st);
		PQfinish(db);
		return 1;
	}
	int rc = check_run("store", cases, sizeof cases / sizeof cases[0]);
	store_destroy(st);
	PQfinish(db);
	return rc;
}
