/*
 * test_decide: the decision of a batch (decide.c) without a database. Each
 * case loads a decide_state by hand as the store would from its reads,
 * decides a few items, and checks what a person can check against the
 * contract: each item's outcome, Result, cause, detail, deciding KM-S and
 * time, and the plan of rows to write (audit, decision, VAL server and
 * key-format rows, with their version numbers and content text, and the
 * admissions per provider). One case per behaviour: success, renewal with
 * and without a new key-format version, redelivery, replay, conflict, DLQ,
 * the pure checks' refusals, each SLA refusal, the VAL server limit (also
 * filling up inside the batch), the same VAL server or requestId twice in a
 * batch, and the helpers of the header.
 *
 * Over 800 lines on purpose: one suite for one pure function
 * (decide_batch). Every case builds its state and items with the builders
 * and checks at the top of the file; split, they would become a shared
 * header for no gain to a reader, who finds each behaviour by its section.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "decide.h"
#include "validate.h"

#define NOW INT64_C(1700000000000)
#define KMS "kms-1"
#define ID1 "6f1c2a9e-0000-4000-8000-000000000001"
#define ID2 "6f1c2a9e-0000-4000-8000-000000000002"
#define ID3 "6f1c2a9e-0000-4000-8000-000000000003"
#define ID4 "6f1c2a9e-0000-4000-8000-000000000004"

#define JWK  (1u << CODEC_KF_JWK)
#define RAW  (1u << CODEC_KF_RAW)
#define X509 (1u << CODEC_KF_X509)

static const char TOPIC[] = "seal.provisioning.requests";
static const char *const SVC_AB[] = {"a", "b"};

/* ---- requests and items built in memory ---- */

typedef struct {
	codec_request req;
	codec_val_service svc[4];
	codec_kv kv[4][4];
} test_req;

static void req_init(test_req *t, const char *request_id, const char *identity)
{
	memset(t, 0, sizeof *t);
	t->req.request_id = (char *)request_id;
	t->req.requester_identity = (char *)identity;
	t->req.endpoint = (char *)"https://val.example/kms";
	t->req.access_token = (char *)"not.a.token";
	t->req.services = t->svc;
	t->req.sent_at = NOW - 100;
}

/* Add a VAL service whose content is given as key, value, ..., NULL. */
static void req_service(test_req *t, const char *id, codec_key_format_type type,
                        const char *format_version, ...) __attribute__((sentinel));

static void req_service(test_req *t, const char *id, codec_key_format_type type,
                        const char *format_version, ...)
{
	codec_val_service *sv = &t->svc[t->req.service_count];
	codec_kv *kv = t->kv[t->req.service_count];
	const char *key;
	va_list ap;

	t->req.service_count++;
	sv->val_service_id = (char *)id;
	sv->format_type = type;
	sv->format_version = (char *)format_version;
	sv->content = kv;
	va_start(ap, format_version);
	while ((key = va_arg(ap, const char *)) != NULL) {
		kv[sv->content_count].key = (char *)key;
		kv[sv->content_count].value = (char *)va_arg(ap, const char *);
		sv->content_count++;
	}
	va_end(ap);
}

/* An item for a well-formed request authorized for vsp (NULL: none), with
 * the content hash the service computes. The outputs are filled with junk,
 * which the decision must overwrite. Returns 0, or -1 if the hash fails. */
static int item_for(store_item *it, const test_req *t, const char *vsp, int64_t offset)
{
	memset(it, 0, sizeof *it);
	it->topic = TOPIC;
	it->partition = 0;
	it->offset = offset;
	it->req = &t->req;
	it->pre_cause = CODEC_CAUSE_NONE;
	it->vsp_id = vsp;
	it->outcome = STORE_OUTCOME_CONFLICT;
	it->has_result = 7;
	it->result = CODEC_RESULT_SUCCESS;
	it->cause = CODEC_CAUSE_INTERNAL_ERROR;
	snprintf(it->detail, sizeof it->detail, "stale detail");
	snprintf(it->kms_id, sizeof it->kms_id, "stale-kms");
	it->processed_at = -1;
	return validate_content_hash(&t->req, it->content_hash);
}

/* An undecodable message at offset, with what was salvaged of it. */
static void item_dlq(store_item *it, int64_t offset, const char *request_id, const char *identity)
{
	memset(it, 0, sizeof *it);
	it->topic = TOPIC;
	it->offset = offset;
	it->request_id = request_id;
	it->requester_identity = identity;
	it->dlq = 1;
	it->pre_cause = CODEC_CAUSE_INVALID_REQUEST;
	it->pre_detail = "the value is not a request";
}

/* ---- the state, as the store would load it ---- */

static sla_terms sla(const char *const *services, size_t n, unsigned formats, int64_t max)
{
	sla_terms t;
	memset(&t, 0, sizeof t);
	t.sla_id = 1;
	t.services = services;
	t.service_count = n;
	t.key_formats = formats;
	t.max_val_servers = max;
	t.valid_from_ms = NOW - 60000;
	t.valid_until_ms = NOW + 60000;
	return t;
}

/* A provider with val_server_count VAL servers and one active SLA covering
 * VAL services a and b with JWK and RAW for at most max VAL servers. */
static int add_provider(decide_state *st, const char *vsp, int enabled, int64_t count, int64_t max)
{
	sla_terms t = sla(SVC_AB, 2, JWK | RAW, max);
	if (decide_state_add_provider(st, vsp, enabled, count) != 0)
		return -1;
	return decide_state_add_sla(st, vsp, &t);
}

/* A state holding the enabled provider vsp-a: no VAL server yet, room for
 * ten. NULL when out of memory. */
static decide_state *state_with_vsp_a(void)
{
	decide_state *st = decide_state_new();
	if (st != NULL && add_provider(st, "vsp-a", 1, 0, 10) != 0) {
		decide_state_destroy(st);
		st = NULL;
	}
	return st;
}

static decide_outcome stored(int has_result, codec_result result, codec_cause cause,
                             const char *detail, const char *kms_id, int64_t at)
{
	decide_outcome o = {has_result, result, cause, detail, kms_id, at};
	return o;
}

/* ---- checks ---- */

/* Are an item's outputs these? Says which one is not. */
static int item_is(const store_item *it, store_outcome outcome, int has_result, codec_result result,
                   codec_cause cause, const char *detail, const char *kms_id, int64_t at)
{
	CHECK_INT(it->outcome, outcome);
	CHECK_INT(it->has_result, has_result);
	CHECK_INT(it->result, result);
	CHECK_INT(it->cause, cause);
	CHECK_STR(it->detail, detail);
	CHECK_STR(it->kms_id, kms_id);
	CHECK_INT(it->processed_at, at);
	return 0;
}

#define CHECK_ITEM(it, ...)                                                                        \
	do {                                                                                       \
		if (item_is(it, __VA_ARGS__) != 0) {                                               \
			fprintf(stderr, "    %s:%d: outputs of %s\n", __FILE__, __LINE__, #it);    \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

/* A new refusal of ours (decided now by KMS) with a detail holding fragment. */
static int refused(const store_item *it, codec_cause cause, const char *fragment)
{
	CHECK_INT(it->outcome, STORE_OUTCOME_DECIDED);
	CHECK_INT(it->has_result, 1);
	CHECK_INT(it->result, CODEC_RESULT_FAILURE);
	CHECK_INT(it->cause, cause);
	if (strstr(it->detail, fragment) == NULL) {
		fprintf(stderr, "    detail \"%s\" lacks \"%s\"\n", it->detail, fragment);
		return -1;
	}
	CHECK_STR(it->kms_id, KMS);
	CHECK_INT(it->processed_at, NOW);
	return 0;
}

#define CHECK_REFUSED(it, cause, fragment)                                                         \
	do {                                                                                       \
		if (refused(it, cause, fragment) != 0) {                                           \
			fprintf(stderr, "    %s:%d: outputs of %s\n", __FILE__, __LINE__, #it);    \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

static int list_eq(const char *what, const size_t *got, size_t ngot, const size_t *want,
                   size_t nwant)
{
	int same = ngot == nwant;
	for (size_t k = 0; same && k < ngot; k++)
		same = got[k] == want[k];
	if (!same) {
		fprintf(stderr, "    %s: got [", what);
		for (size_t k = 0; k < ngot; k++)
			fprintf(stderr, "%s%zu", k ? ", " : "", got[k]);
		fprintf(stderr, "], expected [");
		for (size_t k = 0; k < nwant; k++)
			fprintf(stderr, "%s%zu", k ? ", " : "", want[k]);
		fprintf(stderr, "]\n");
	}
	return same;
}

/* The plan's list of item indexes equals the given ones (at least one). */
#define CHECK_LIST(plan, field, ...)                                                               \
	do {                                                                                       \
		static const size_t want_[] = {__VA_ARGS__};                                       \
		CHECK(list_eq(#field, (plan).field, (plan).n##field, want_,                        \
		              sizeof want_ / sizeof want_[0]));                                    \
	} while (0)

static int key_format_is(const decide_key_format_row *row, size_t item, size_t service,
                         int64_t version, const char *content)
{
	CHECK_INT(row->item, item);
	CHECK_INT(row->service, service);
	CHECK_INT(row->version, version);
	CHECK_STR(row->content, content);
	return 0;
}

#define CHECK_KEY_FORMAT(row, ...)                                                                 \
	do {                                                                                       \
		if (key_format_is(row, __VA_ARGS__) != 0) {                                        \
			fprintf(stderr, "    %s:%d: %s\n", __FILE__, __LINE__, #row);              \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

/* The plan provisions nothing: no VAL server, key-format or provider row. */
#define CHECK_NO_PROVISIONING(plan)                                                                \
	do {                                                                                       \
		CHECK_INT((plan).nval_servers, 0);                                                 \
		CHECK_INT((plan).nkey_formats, 0);                                                 \
		CHECK_INT((plan).nproviders, 0);                                                   \
	} while (0)

/* ---- success ---- */

static int test_success_one_service(void)
{
	decide_state *st = state_with_vsp_a();
	test_req t;
	store_item it;
	decide_plan plan;

	CHECK(st != NULL);
	req_init(&t, ID1, "val-1");
	req_service(&t, "a", CODEC_KF_JWK, NULL, "kty", "oct", "alg", "A256GCM", NULL);
	CHECK_INT(item_for(&it, &t, "vsp-a", 1), 0);
	CHECK_INT(decide_batch(st, &it, 1, KMS, NOW, &plan), 0);
	CHECK_ITEM(&it, STORE_OUTCOME_DECIDED, 1, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "", KMS,
	           NOW);
	CHECK_LIST(plan, audits, 0);
	CHECK_LIST(plan, decisions, 0);
	CHECK_LIST(plan, val_servers, 0);
	CHECK_INT(plan.nkey_formats, 1);
	/* a new VAL service starts at version 1; content compact, keys sorted */
	CHECK_KEY_FORMAT(&plan.key_formats[0], 0, 0, 1, "{\"alg\":\"A256GCM\",\"kty\":\"oct\"}");
	CHECK_INT(plan.nproviders, 1);
	CHECK_STR(plan.providers[0].vsp_id, "vsp-a");
	CHECK_INT(plan.providers[0].added, 1);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_success_two_services(void)
{
	decide_state *st = state_with_vsp_a();
	test_req t;
	store_item it;
	decide_plan plan;

	CHECK(st != NULL);
	req_init(&t, ID1, "val-1");
	req_service(&t, "a", CODEC_KF_JWK, "1", "kty", "EC", "crv", "P-256", NULL);
	req_service(&t, "b", CODEC_KF_RAW, NULL, NULL);
	CHECK_INT(item_for(&it, &t, "vsp-a", 1), 0);
	CHECK_INT(decide_batch(st, &it, 1, KMS, NOW, &plan), 0);
	CHECK_ITEM(&it, STORE_OUTCOME_DECIDED, 1, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "", KMS,
	           NOW);
	CHECK_LIST(plan, val_servers, 0);
	CHECK_INT(plan.nkey_formats, 2);
	CHECK_KEY_FORMAT(&plan.key_formats[0], 0, 0, 1, "{\"crv\":\"P-256\",\"kty\":\"EC\"}");
	CHECK_KEY_FORMAT(&plan.key_formats[1], 0, 1, 1, "{}");
	/* one VAL server admitted, however many services it lists */
	CHECK_INT(plan.nproviders, 1);
	CHECK_INT(plan.providers[0].added, 1);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

/* ---- renewal of a stored VAL server ---- */

/* vsp-a with val-1 stored, its service a at version 3 (JWK, no format
 * version, {"alg":"A256GCM","kty":"oct"} as PostgreSQL prints jsonb) and b at
 * version 1 (RAW, format version "1", {"len":"32"}). */
static decide_state *state_with_val_1(void)
{
	decide_state *st = state_with_vsp_a();
	if (st == NULL)
		return NULL;
	if (decide_state_add_val_server(st, "val-1", "vsp-a") != 0 ||
	    decide_state_add_key_format(st, "val-1", "a", 3, "JWK", NULL,
	                                "{\"alg\": \"A256GCM\", \"kty\": \"oct\"}") != 0 ||
	    decide_state_add_key_format(st, "val-1", "b", 1, "RAW", "1", "{\"len\": \"32\"}") !=
	        0) {
		decide_state_destroy(st);
		return NULL;
	}
	return st;
}

static int test_renewal_same_format(void)
{
	decide_state *st = state_with_val_1();
	test_req t;
	store_item it;
	decide_plan plan;

	CHECK(st != NULL);
	req_init(&t, ID1, "val-1");
	req_service(&t, "a", CODEC_KF_JWK, NULL, "alg", "A256GCM", "kty", "oct", NULL);
	req_service(&t, "b", CODEC_KF_RAW, "1", "len", "32", NULL);
	CHECK_INT(item_for(&it, &t, "vsp-a", 1), 0);
	CHECK_INT(decide_batch(st, &it, 1, KMS, NOW, &plan), 0);
	CHECK_ITEM(&it, STORE_OUTCOME_DECIDED, 1, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "", KMS,
	           NOW);
	CHECK_LIST(plan, audits, 0);
	CHECK_LIST(plan, decisions, 0);
	CHECK_LIST(plan, val_servers, 0); /* its endpoint and last request are updated */
	CHECK_INT(plan.nkey_formats, 0);  /* no new version */
	CHECK_INT(plan.nproviders, 0);    /* stored already: no admission */
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_content_key_order_and_spacing_ignored(void)
{
	decide_state *st = state_with_vsp_a();
	test_req t;
	store_item it;
	decide_plan plan;

	CHECK(st != NULL);
	CHECK_INT(decide_state_add_val_server(st, "val-1", "vsp-a"), 0);
	/* other key order, other spacing, escapes for what the request has
	 * as plain UTF-8 */
	CHECK_INT(decide_state_add_key_format(st, "val-1", "a", 2, "JWK", NULL,
	                                      "{ \"n\" : \"a\\\"b\",\n\t\"\\u00e9\":\"\\u00fc\","
	                                      " \"alg\":\"A256GCM\" }"),
	          0);
	req_init(&t, ID1, "val-1");
	req_service(&t, "a", CODEC_KF_JWK, NULL, "\xc3\xa9", "\xc3\xbc", "alg", "A256GCM", "n",
	            "a\"b", NULL);
	CHECK_INT(item_for(&it, &t, "vsp-a", 1), 0);
	CHECK_INT(decide_batch(st, &it, 1, KMS, NOW, &plan), 0);
	CHECK_INT(it.result, CODEC_RESULT_SUCCESS);
	CHECK_INT(plan.nkey_formats, 0);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_renewal_changed_content(void)
{
	decide_state *st = state_with_val_1();
	test_req t;
	store_item it;
	decide_plan plan;

	CHECK(st != NULL);
	req_init(&t, ID1, "val-1");
	req_service(&t, "b", CODEC_KF_RAW, "1", "len", "32", NULL);
	req_service(&t, "a", CODEC_KF_JWK, NULL, "alg", "A128GCM", "kty", "oct", NULL);
	CHECK_INT(item_for(&it, &t, "vsp-a", 1), 0);
	CHECK_INT(decide_batch(st, &it, 1, KMS, NOW, &plan), 0);
	CHECK_INT(it.result, CODEC_RESULT_SUCCESS);
	/* only a, the request's second service, changed: 3 -> 4 */
	CHECK_INT(plan.nkey_formats, 1);
	CHECK_KEY_FORMAT(&plan.key_formats[0], 0, 1, 4, "{\"alg\":\"A128GCM\",\"kty\":\"oct\"}");
	CHECK_INT(plan.nproviders, 0);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_renewal_changed_format_type(void)
{
	decide_state *st = state_with_val_1();
	test_req t;
	store_item it;
	decide_plan plan;

	CHECK(st != NULL);
	req_init(&t, ID1, "val-1");
	/* a's very content, but RAW instead of JWK */
	req_service(&t, "a", CODEC_KF_RAW, NULL, "kty", "oct", "alg", "A256GCM", NULL);
	req_service(&t, "b", CODEC_KF_RAW, "1", "len", "32", NULL);
	CHECK_INT(item_for(&it, &t, "vsp-a", 1), 0);
	CHECK_INT(decide_batch(st, &it, 1, KMS, NOW, &plan), 0);
	CHECK_INT(it.result, CODEC_RESULT_SUCCESS);
	CHECK_INT(plan.nkey_formats, 1);
	CHECK_KEY_FORMAT(&plan.key_formats[0], 0, 0, 4, "{\"alg\":\"A256GCM\",\"kty\":\"oct\"}");
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_renewal_changed_format_version(void)
{
	decide_state *st = state_with_val_1();
	test_req t;
	store_item it;
	decide_plan plan;

	CHECK(st != NULL);
	req_init(&t, ID1, "val-1");
	/* a: none -> "1"; b: "1" -> none; contents unchanged */
	req_service(&t, "a", CODEC_KF_JWK, "1", "kty", "oct", "alg", "A256GCM", NULL);
	req_service(&t, "b", CODEC_KF_RAW, NULL, "len", "32", NULL);
	CHECK_INT(item_for(&it, &t, "vsp-a", 1), 0);
	CHECK_INT(decide_batch(st, &it, 1, KMS, NOW, &plan), 0);
	CHECK_INT(it.result, CODEC_RESULT_SUCCESS);
	CHECK_INT(plan.nkey_formats, 2);
	CHECK_KEY_FORMAT(&plan.key_formats[0], 0, 0, 4, "{\"alg\":\"A256GCM\",\"kty\":\"oct\"}");
	CHECK_KEY_FORMAT(&plan.key_formats[1], 0, 1, 2, "{\"len\":\"32\"}");
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_key_formats_per_val_server(void)
{
	decide_state *st = state_with_val_1();
	test_req t;
	store_item it;
	decide_plan plan;

	CHECK(st != NULL);
	CHECK_INT(decide_state_add_key_format(st, "val-2", "b", 5, "RAW", NULL, "{}"), 0);
	req_init(&t, ID1, "val-1");
	/* b of val-1 is at version 1, whatever val-2's b is at */
	req_service(&t, "b", CODEC_KF_RAW, NULL, NULL);
	CHECK_INT(item_for(&it, &t, "vsp-a", 1), 0);
	CHECK_INT(decide_batch(st, &it, 1, KMS, NOW, &plan), 0);
	CHECK_INT(plan.nkey_formats, 1);
	CHECK_KEY_FORMAT(&plan.key_formats[0], 0, 0, 2, "{}");
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

/* ---- redelivery ---- */

static int test_redelivery_from_audit(void)
{
	decide_state *st = state_with_vsp_a();
	decide_outcome unauthorized = stored(1, CODEC_RESULT_FAILURE, CODEC_CAUSE_UNAUTHORIZED,
	                                     "the access token has expired", "kms-old", NOW - 5000);
	decide_outcome success =
	    stored(1, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "", "kms-old", NOW - 4000);
	decide_outcome dlq = stored(0, CODEC_RESULT_FAILURE, CODEC_CAUSE_INVALID_REQUEST,
	                            "the value is not a request", "kms-old", NOW - 3000);
	test_req t;
	store_item it[4];
	decide_plan plan;

	CHECK(st != NULL);
	CHECK_INT(decide_state_add_audit(st, TOPIC, 3, 42, &unauthorized), 0);
	CHECK_INT(decide_state_add_audit(st, TOPIC, 3, 43, &success), 0);
	CHECK_INT(decide_state_add_audit(st, TOPIC, 3, 44, &dlq), 0);
	req_init(&t, ID1, "val-1");
	req_service(&t, "a", CODEC_KF_JWK, NULL, NULL);
	/* a grantable request, at audited coordinates: the recorded outcome */
	CHECK_INT(item_for(&it[0], &t, "vsp-a", 42), 0);
	it[0].partition = 3;
	CHECK_INT(item_for(&it[1], &t, "vsp-a", 43), 0);
	it[1].partition = 3;
	/* an undecodable value at audited coordinates is not sent to the
	 * DLQ again */
	item_dlq(&it[2], 44, ID2, "val-2");
	it[2].partition = 3;
	/* the same offset in another partition is another message */
	CHECK_INT(item_for(&it[3], &t, "vsp-a", 42), 0);
	CHECK_INT(decide_batch(st, it, 4, KMS, NOW, &plan), 0);
	CHECK_ITEM(&it[0], STORE_OUTCOME_REDELIVERED, 1, CODEC_RESULT_FAILURE,
	           CODEC_CAUSE_UNAUTHORIZED, "the access token has expired", "kms-old", NOW - 5000);
	CHECK_ITEM(&it[1], STORE_OUTCOME_REDELIVERED, 1, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "",
	           "kms-old", NOW - 4000);
	CHECK_ITEM(&it[2], STORE_OUTCOME_REDELIVERED, 0, CODEC_RESULT_FAILURE,
	           CODEC_CAUSE_INVALID_REQUEST, "the value is not a request", "kms-old",
	           NOW - 3000);
	CHECK_ITEM(&it[3], STORE_OUTCOME_DECIDED, 1, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "",
	           KMS, NOW);
	/* the redelivered write nothing */
	CHECK_LIST(plan, audits, 3);
	CHECK_LIST(plan, decisions, 3);
	CHECK_LIST(plan, val_servers, 3);
	CHECK_INT(plan.nkey_formats, 1);
	CHECK_INT(plan.key_formats[0].item, 3);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_same_coordinates_twice_in_batch(void)
{
	decide_state *st = state_with_vsp_a();
	test_req t1, t2;
	store_item it[2];
	decide_plan plan;

	CHECK(st != NULL);
	req_init(&t1, ID1, "val-1");
	req_service(&t1, "a", CODEC_KF_JWK, NULL, "kty", "oct", NULL);
	req_init(&t2, ID2, "val-2");
	req_service(&t2, "a", CODEC_KF_JWK, NULL, NULL);
	CHECK_INT(item_for(&it[0], &t1, "vsp-a", 7), 0);
	/* the same message consumed twice in one batch: what is read there
	 * does not matter, the coordinates are the message */
	CHECK_INT(item_for(&it[1], &t2, "vsp-a", 7), 0);
	CHECK_INT(decide_batch(st, it, 2, KMS, NOW, &plan), 0);
	CHECK_ITEM(&it[0], STORE_OUTCOME_DECIDED, 1, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "",
	           KMS, NOW);
	CHECK_ITEM(&it[1], STORE_OUTCOME_REDELIVERED, 1, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "",
	           KMS, NOW);
	CHECK_LIST(plan, audits, 0);
	CHECK_LIST(plan, decisions, 0);
	CHECK_LIST(plan, val_servers, 0);
	CHECK_INT(plan.nkey_formats, 1);
	CHECK_INT(plan.nproviders, 1);
	CHECK_INT(plan.providers[0].added, 1);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

/* ---- replay and conflict ---- */

/* vsp-a and a decision stored for ID1 of val-1 with hash (NULL: none). */
static decide_state *state_with_decision(const char *identity, const unsigned char hash[32],
                                         const decide_outcome *o)
{
	decide_state *st = state_with_vsp_a();
	if (st != NULL && decide_state_add_decision(st, ID1, identity, hash, o) != 0) {
		decide_state_destroy(st);
		st = NULL;
	}
	return st;
}

static int test_replay_success(void)
{
	decide_outcome o =
	    stored(0, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "", "kms-old", NOW - 9000);
	test_req t;
	store_item it;
	decide_plan plan;

	unsigned char hash[32];

	req_init(&t, ID1, "val-1");
	req_service(&t, "a", CODEC_KF_JWK, NULL, "kty", "oct", NULL);
	CHECK_INT(validate_content_hash(&t.req, hash), 0);
	/* a retry: the token and sentAt may differ, the content may not */
	t.req.access_token = (char *)"a.renewed.token";
	t.req.sent_at = NOW - 10;
	CHECK_INT(item_for(&it, &t, "vsp-a", 2), 0);
	decide_state *st = state_with_decision("val-1", hash, &o);
	CHECK(st != NULL);
	CHECK_INT(decide_batch(st, &it, 1, KMS, NOW, &plan), 0);
	CHECK_ITEM(&it, STORE_OUTCOME_REPLAYED, 1, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "",
	           "kms-old", NOW - 9000);
	CHECK_LIST(plan, audits, 0);
	CHECK_INT(plan.ndecisions, 0);
	CHECK_NO_PROVISIONING(plan);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_replay_failure(void)
{
	decide_outcome o =
	    stored(0, CODEC_RESULT_FAILURE, CODEC_CAUSE_NOT_ALLOWED_BY_SLA,
	           "VAL service provider 'vsp-a' is disabled", "kms-old", NOW - 9000);
	test_req t;
	store_item it;
	decide_plan plan;

	req_init(&t, ID1, "val-1");
	req_service(&t, "a", CODEC_KF_JWK, NULL, NULL);
	CHECK_INT(item_for(&it, &t, "vsp-a", 2), 0);
	/* refused then, grantable now: still the stored Result */
	decide_state *st = state_with_decision("val-1", it.content_hash, &o);
	CHECK(st != NULL);
	CHECK_INT(decide_batch(st, &it, 1, KMS, NOW, &plan), 0);
	CHECK_ITEM(&it, STORE_OUTCOME_REPLAYED, 1, CODEC_RESULT_FAILURE,
	           CODEC_CAUSE_NOT_ALLOWED_BY_SLA, "VAL service provider 'vsp-a' is disabled",
	           "kms-old", NOW - 9000);
	CHECK_LIST(plan, audits, 0);
	CHECK_INT(plan.ndecisions, 0);
	CHECK_NO_PROVISIONING(plan);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_replay_before_pre_checks(void)
{
	decide_outcome o =
	    stored(0, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "", "kms-old", NOW - 9000);
	test_req t;
	store_item it;
	decide_plan plan;

	req_init(&t, ID1, "val-1");
	req_service(&t, "a", CODEC_KF_JWK, NULL, NULL);
	CHECK_INT(item_for(&it, &t, NULL, 2), 0);
	/* a retry whose token has expired since: the requestId was decided,
	 * and its Result is sent again */
	it.pre_cause = CODEC_CAUSE_UNAUTHORIZED;
	it.pre_detail = "the access token has expired";
	decide_state *st = state_with_decision("val-1", it.content_hash, &o);
	CHECK(st != NULL);
	CHECK_INT(decide_batch(st, &it, 1, KMS, NOW, &plan), 0);
	CHECK_ITEM(&it, STORE_OUTCOME_REPLAYED, 1, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "",
	           "kms-old", NOW - 9000);
	CHECK_INT(plan.ndecisions, 0);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

/* One request of ID1 over st: a conflict, recorded in the audit alone. */
static int expect_conflict(decide_state *st, const test_req *t, const unsigned char *hash)
{
	store_item it;
	decide_plan plan;

	CHECK(st != NULL);
	CHECK_INT(item_for(&it, t, "vsp-a", 2), 0);
	if (hash != NULL)
		memcpy(it.content_hash, hash, sizeof it.content_hash);
	CHECK_INT(decide_batch(st, &it, 1, KMS, NOW, &plan), 0);
	CHECK_ITEM(&it, STORE_OUTCOME_CONFLICT, 1, CODEC_RESULT_FAILURE,
	           CODEC_CAUSE_REQUEST_ID_CONFLICT, "requestId was already used with other content",
	           KMS, NOW);
	CHECK_LIST(plan, audits, 0);
	CHECK_INT(plan.ndecisions, 0); /* the first decision stays */
	CHECK_NO_PROVISIONING(plan);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_conflict_other_content(void)
{
	decide_outcome o = stored(0, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "", "kms-old", 1);
	test_req first, t;
	unsigned char hash[32];

	req_init(&first, ID1, "val-1");
	req_service(&first, "a", CODEC_KF_JWK, NULL, "kty", "oct", NULL);
	CHECK_INT(validate_content_hash(&first.req, hash), 0);
	req_init(&t, ID1, "val-1");
	req_service(&t, "a", CODEC_KF_JWK, NULL, "kty", "EC", NULL);
	CHECK_INT(expect_conflict(state_with_decision("val-1", hash, &o), &t, NULL), 0);
	return 0;
}

static int test_conflict_other_identity(void)
{
	decide_outcome o = stored(0, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "", "kms-old", 1);
	test_req t;
	unsigned char hash[32];

	req_init(&t, ID1, "val-1");
	req_service(&t, "a", CODEC_KF_JWK, NULL, NULL);
	CHECK_INT(validate_content_hash(&t.req, hash), 0);
	/* the very hash, but recorded for another VAL server */
	CHECK_INT(expect_conflict(state_with_decision("val-2", hash, &o), &t, hash), 0);
	return 0;
}

static int test_conflict_stored_hash_null(void)
{
	decide_outcome o = stored(0, CODEC_RESULT_FAILURE, CODEC_CAUSE_INVALID_REQUEST,
	                          "the request could not be read", "kms-old", 1);
	test_req t;

	static const unsigned char zeros[32];

	/* the requestId was recorded for a request that could not be read;
	 * no hash, not even all zeros, is the same as none */
	req_init(&t, ID1, "val-1");
	req_service(&t, "a", CODEC_KF_JWK, NULL, NULL);
	CHECK_INT(expect_conflict(state_with_decision("val-1", NULL, &o), &t, zeros), 0);
	return 0;
}

static int test_same_request_id_twice_in_batch_replays(void)
{
	decide_state *st = state_with_vsp_a();
	test_req t, refused_t;
	store_item it[4];
	decide_plan plan;

	CHECK(st != NULL);
	req_init(&t, ID1, "val-1");
	req_service(&t, "a", CODEC_KF_JWK, NULL, "kty", "oct", NULL);
	req_init(&refused_t, ID2, "val-2");
	req_service(&refused_t, "a", CODEC_KF_JWK, NULL, NULL);
	CHECK_INT(item_for(&it[0], &t, "vsp-a", 1), 0);
	CHECK_INT(item_for(&it[1], &refused_t, "vsp-x", 2), 0);
	CHECK_INT(item_for(&it[2], &t, "vsp-a", 3), 0);
	CHECK_INT(item_for(&it[3], &refused_t, "vsp-x", 4), 0);
	CHECK_INT(decide_batch(st, it, 4, KMS, NOW, &plan), 0);
	CHECK_ITEM(&it[0], STORE_OUTCOME_DECIDED, 1, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "",
	           KMS, NOW);
	CHECK_REFUSED(&it[1], CODEC_CAUSE_NOT_ALLOWED_BY_SLA, "'vsp-x' has no SLA");
	CHECK_ITEM(&it[2], STORE_OUTCOME_REPLAYED, 1, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "",
	           KMS, NOW);
	CHECK_ITEM(&it[3], STORE_OUTCOME_REPLAYED, 1, CODEC_RESULT_FAILURE,
	           CODEC_CAUSE_NOT_ALLOWED_BY_SLA, it[1].detail, KMS, NOW);
	CHECK_LIST(plan, audits, 0, 1, 2, 3);
	CHECK_LIST(plan, decisions, 0, 1);
	CHECK_LIST(plan, val_servers, 0);
	CHECK_INT(plan.nkey_formats, 1);
	CHECK_INT(plan.nproviders, 1);
	CHECK_INT(plan.providers[0].added, 1);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_same_request_id_twice_in_batch_conflict(void)
{
	decide_state *st = state_with_vsp_a();
	test_req t1, t2;
	store_item it[2];
	decide_plan plan;

	CHECK(st != NULL);
	req_init(&t1, ID1, "val-1");
	req_service(&t1, "a", CODEC_KF_JWK, NULL, "kty", "oct", NULL);
	req_init(&t2, ID1, "val-1");
	req_service(&t2, "a", CODEC_KF_JWK, NULL, "kty", "EC", NULL);
	CHECK_INT(item_for(&it[0], &t1, "vsp-a", 1), 0);
	CHECK_INT(item_for(&it[1], &t2, "vsp-a", 2), 0);
	CHECK_INT(decide_batch(st, it, 2, KMS, NOW, &plan), 0);
	CHECK_INT(it[0].result, CODEC_RESULT_SUCCESS);
	CHECK_ITEM(&it[1], STORE_OUTCOME_CONFLICT, 1, CODEC_RESULT_FAILURE,
	           CODEC_CAUSE_REQUEST_ID_CONFLICT, "requestId was already used with other content",
	           KMS, NOW);
	CHECK_LIST(plan, audits, 0, 1);
	CHECK_LIST(plan, decisions, 0);
	CHECK_LIST(plan, val_servers, 0);
	CHECK_INT(plan.nkey_formats, 1);
	CHECK_KEY_FORMAT(&plan.key_formats[0], 0, 0, 1, "{\"kty\":\"oct\"}");
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

/* ---- undecodable values ---- */

static int test_dlq(void)
{
	decide_outcome o = stored(0, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "", "kms-old", 1);
	unsigned char hash[32] = {1};
	decide_state *st = state_with_decision("val-1", hash, &o);
	store_item it[4];
	decide_plan plan;

	CHECK(st != NULL);
	item_dlq(&it[0], 1, ID2, "val-2");
	item_dlq(&it[1], 2, ID2, NULL);    /* identity not salvaged: no Result */
	item_dlq(&it[2], 3, NULL, NULL);   /* nothing salvaged */
	item_dlq(&it[3], 4, ID1, "val-1"); /* a decided requestId: still the DLQ */
	it[1].pre_detail = NULL;
	CHECK_INT(decide_batch(st, it, 4, KMS, NOW, &plan), 0);
	CHECK_ITEM(&it[0], STORE_OUTCOME_DLQ, 1, CODEC_RESULT_FAILURE, CODEC_CAUSE_INVALID_REQUEST,
	           "the value is not a request", KMS, NOW);
	CHECK_ITEM(&it[1], STORE_OUTCOME_DLQ, 0, CODEC_RESULT_FAILURE, CODEC_CAUSE_INVALID_REQUEST,
	           "", KMS, NOW);
	CHECK_ITEM(&it[2], STORE_OUTCOME_DLQ, 0, CODEC_RESULT_FAILURE, CODEC_CAUSE_INVALID_REQUEST,
	           "the value is not a request", KMS, NOW);
	CHECK_ITEM(&it[3], STORE_OUTCOME_DLQ, 1, CODEC_RESULT_FAILURE, CODEC_CAUSE_INVALID_REQUEST,
	           "the value is not a request", KMS, NOW);
	/* audited, never a decision: the requestId stays free */
	CHECK_LIST(plan, audits, 0, 1, 2, 3);
	CHECK_INT(plan.ndecisions, 0);
	CHECK_NO_PROVISIONING(plan);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

/* ---- refusals of the pure checks ---- */

static int test_pre_check_unauthorized(void)
{
	decide_state *st = state_with_vsp_a();
	test_req t;
	store_item it;
	decide_plan plan;

	CHECK(st != NULL);
	req_init(&t, ID1, "val-1");
	req_service(&t, "a", CODEC_KF_JWK, NULL, NULL);
	CHECK_INT(item_for(&it, &t, NULL, 1), 0);
	it.pre_cause = CODEC_CAUSE_UNAUTHORIZED;
	it.pre_detail = "the access token has expired";
	CHECK_INT(decide_batch(st, &it, 1, KMS, NOW, &plan), 0);
	CHECK_ITEM(&it, STORE_OUTCOME_DECIDED, 1, CODEC_RESULT_FAILURE, CODEC_CAUSE_UNAUTHORIZED,
	           "the access token has expired", KMS, NOW);
	CHECK_LIST(plan, audits, 0);
	CHECK_LIST(plan, decisions, 0);
	CHECK_NO_PROVISIONING(plan);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_pre_check_invalid_without_uuid(void)
{
	decide_state *st = state_with_vsp_a();
	test_req t;
	store_item it[2];
	decide_plan plan;

	CHECK(st != NULL);
	req_init(&t, "not-a-uuid", "val-1");
	req_service(&t, "a", CODEC_KF_JWK, NULL, NULL);
	for (int i = 0; i < 2; i++) {
		CHECK_INT(item_for(&it[i], &t, NULL, i + 1), 0);
		it[i].pre_cause = CODEC_CAUSE_INVALID_REQUEST;
		it[i].pre_detail = "requestId is not a well-formed UUID";
	}
	CHECK_INT(decide_batch(st, it, 2, KMS, NOW, &plan), 0);
	/* no decision is recorded for such an id, so the second is decided
	 * afresh, not replayed */
	for (int i = 0; i < 2; i++)
		CHECK_ITEM(&it[i], STORE_OUTCOME_DECIDED, 1, CODEC_RESULT_FAILURE,
		           CODEC_CAUSE_INVALID_REQUEST, "requestId is not a well-formed UUID", KMS,
		           NOW);
	CHECK_LIST(plan, audits, 0, 1);
	CHECK_INT(plan.ndecisions, 0);
	CHECK_NO_PROVISIONING(plan);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_detail_clipped_at_a_character(void)
{
	decide_state *st = state_with_vsp_a();
	char longer[601];
	test_req t;
	store_item it;
	decide_plan plan;

	CHECK(st != NULL);
	for (size_t k = 0; k + 1 < sizeof longer; k += 2)
		memcpy(longer + k, "\xc3\xa9", 2); /* U+00E9, two bytes */
	longer[600] = '\0';
	req_init(&t, ID1, "val-1");
	req_service(&t, "a", CODEC_KF_JWK, NULL, NULL);
	CHECK_INT(item_for(&it, &t, NULL, 1), 0);
	it.pre_cause = CODEC_CAUSE_INVALID_REQUEST;
	it.pre_detail = longer;
	CHECK_INT(decide_batch(st, &it, 1, KMS, NOW, &plan), 0);
	/* 255 bytes would split a character: 254, ending on a whole one */
	CHECK_INT(strlen(it.detail), 254);
	CHECK(memcmp(it.detail, longer, 254) == 0);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

/* ---- SLA refusals ---- */

/* One request of the new VAL server val-1 listing t's services from vsp
 * over st: refused with cause and a detail holding fragment; a decision and
 * an audit row are recorded, nothing is provisioned. Destroys st. */
static int expect_refused(decide_state *st, const test_req *t, const char *vsp, codec_cause cause,
                          const char *fragment)
{
	store_item it;
	decide_plan plan;

	CHECK(st != NULL);
	CHECK_INT(item_for(&it, t, vsp, 1), 0);
	CHECK_INT(decide_batch(st, &it, 1, KMS, NOW, &plan), 0);
	CHECK_REFUSED(&it, cause, fragment);
	CHECK_LIST(plan, audits, 0);
	CHECK_LIST(plan, decisions, 0);
	CHECK_NO_PROVISIONING(plan);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static void req_a(test_req *t)
{
	req_init(t, ID1, "val-1");
	req_service(t, "a", CODEC_KF_JWK, NULL, "kty", "oct", NULL);
}

static int test_sla_unknown_provider(void)
{
	test_req t;
	req_a(&t);
	CHECK_INT(expect_refused(state_with_vsp_a(), &t, "vsp-x", CODEC_CAUSE_NOT_ALLOWED_BY_SLA,
	                         "VAL service provider 'vsp-x' has no SLA"),
	          0);
	return 0;
}

static int test_sla_no_provider_named(void)
{
	test_req t;
	/* a token without vsp_id that passed the pure checks */
	req_a(&t);
	CHECK_INT(expect_refused(state_with_vsp_a(), &t, NULL, CODEC_CAUSE_NOT_ALLOWED_BY_SLA,
	                         "has no SLA"),
	          0);
	return 0;
}

static int test_sla_disabled_provider(void)
{
	decide_state *st = decide_state_new();
	test_req t;

	CHECK(st != NULL);
	CHECK_INT(add_provider(st, "vsp-d", 0, 0, 10), 0);
	req_a(&t);
	CHECK_INT(expect_refused(st, &t, "vsp-d", CODEC_CAUSE_NOT_ALLOWED_BY_SLA,
	                         "VAL service provider 'vsp-d' is disabled"),
	          0);
	return 0;
}

static int test_sla_service_not_covered(void)
{
	test_req t;
	/* a is covered, c is not: nothing is provisioned, not even a */
	req_a(&t);
	req_service(&t, "c", CODEC_KF_JWK, NULL, NULL);
	CHECK_INT(expect_refused(state_with_vsp_a(), &t, "vsp-a", CODEC_CAUSE_NOT_ALLOWED_BY_SLA,
	                         "no active SLA of VAL service provider 'vsp-a' covers VAL "
	                         "service 'c'"),
	          0);
	return 0;
}

static int test_sla_key_format_not_allowed(void)
{
	test_req t;
	req_a(&t);
	req_service(&t, "b", CODEC_KF_X509, NULL, NULL);
	CHECK_INT(expect_refused(state_with_vsp_a(), &t, "vsp-a",
	                         CODEC_CAUSE_KEY_FORMAT_NOT_ALLOWED,
	                         "key format X509 is not allowed by the SLA for VAL service 'b'"),
	          0);
	return 0;
}

static int test_sla_val_server_of_another_provider(void)
{
	decide_state *st = state_with_vsp_a();
	test_req t;

	CHECK(st != NULL);
	CHECK_INT(add_provider(st, "vsp-b", 1, 1, 10), 0);
	CHECK_INT(decide_state_add_val_server(st, "val-1", "vsp-b"), 0);
	req_a(&t);
	CHECK_INT(expect_refused(st, &t, "vsp-a", CODEC_CAUSE_NOT_ALLOWED_BY_SLA,
	                         "the VAL server is registered with another VAL service provider"),
	          0);
	return 0;
}

/* A state with provider vsp-w whose only SLA is valid [from, until). */
static decide_state *state_with_window(int64_t from, int64_t until, int revoked)
{
	decide_state *st = decide_state_new();
	sla_terms t = sla(SVC_AB, 2, JWK, 10);
	t.valid_from_ms = from;
	t.valid_until_ms = until;
	t.revoked = revoked;
	if (st != NULL && (decide_state_add_provider(st, "vsp-w", 1, 0) != 0 ||
	                   decide_state_add_sla(st, "vsp-w", &t) != 0)) {
		decide_state_destroy(st);
		st = NULL;
	}
	return st;
}

static int test_sla_expired_at_now(void)
{
	test_req t;
	req_a(&t);
	/* valid until now, exclusive */
	CHECK_INT(expect_refused(state_with_window(NOW - 60000, NOW, 0), &t, "vsp-w",
	                         CODEC_CAUSE_NOT_ALLOWED_BY_SLA, "covers VAL service 'a'"),
	          0);
	return 0;
}

static int test_sla_not_yet_valid(void)
{
	test_req t;
	req_a(&t);
	CHECK_INT(expect_refused(state_with_window(NOW + 1, NOW + 60000, 0), &t, "vsp-w",
	                         CODEC_CAUSE_NOT_ALLOWED_BY_SLA, "covers VAL service 'a'"),
	          0);
	return 0;
}

static int test_sla_revoked(void)
{
	test_req t;
	req_a(&t);
	CHECK_INT(expect_refused(state_with_window(NOW - 60000, NOW + 60000, 1), &t, "vsp-w",
	                         CODEC_CAUSE_NOT_ALLOWED_BY_SLA, "covers VAL service 'a'"),
	          0);
	return 0;
}

static int test_sla_valid_from_now(void)
{
	decide_state *st = state_with_window(NOW, NOW + 1, 0);
	test_req t;
	store_item it;
	decide_plan plan;

	CHECK(st != NULL);
	req_a(&t);
	CHECK_INT(item_for(&it, &t, "vsp-w", 1), 0);
	CHECK_INT(decide_batch(st, &it, 1, KMS, NOW, &plan), 0);
	CHECK_INT(it.result, CODEC_RESULT_SUCCESS);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

/* ---- the VAL server limit ---- */

static int test_limit_reached_by_stored_count(void)
{
	decide_state *st = decide_state_new();
	test_req t_new, t_old;
	store_item it[2];
	decide_plan plan;

	CHECK(st != NULL);
	CHECK_INT(add_provider(st, "vsp-a", 1, 2, 2), 0);
	CHECK_INT(decide_state_add_val_server(st, "val-old", "vsp-a"), 0);
	req_init(&t_new, ID1, "val-new");
	req_service(&t_new, "a", CODEC_KF_JWK, NULL, NULL);
	req_init(&t_old, ID2, "val-old");
	req_service(&t_old, "a", CODEC_KF_JWK, NULL, NULL);
	CHECK_INT(item_for(&it[0], &t_new, "vsp-a", 1), 0);
	CHECK_INT(item_for(&it[1], &t_old, "vsp-a", 2), 0);
	CHECK_INT(decide_batch(st, it, 2, KMS, NOW, &plan), 0);
	CHECK_REFUSED(&it[0], CODEC_CAUSE_NOT_ALLOWED_BY_SLA,
	              "VAL service provider 'vsp-a' has reached the VAL server limit of its SLA "
	              "for VAL service 'a'");
	/* a stored VAL server needs no room */
	CHECK_ITEM(&it[1], STORE_OUTCOME_DECIDED, 1, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "",
	           KMS, NOW);
	CHECK_LIST(plan, audits, 0, 1);
	CHECK_LIST(plan, decisions, 0, 1);
	CHECK_LIST(plan, val_servers, 1);
	CHECK_INT(plan.nkey_formats, 1);
	CHECK_KEY_FORMAT(&plan.key_formats[0], 1, 0, 1, "{}");
	CHECK_INT(plan.nproviders, 0);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_limit_fills_inside_batch(void)
{
	decide_state *st = decide_state_new();
	static const char *const who[3] = {"val-1", "val-2", "val-3"};
	static const char *const ids[3] = {ID1, ID2, ID3};
	test_req t[3];
	store_item it[3];
	decide_plan plan;

	CHECK(st != NULL);
	CHECK_INT(add_provider(st, "vsp-a", 1, 1, 2), 0); /* room for one more */
	for (int i = 0; i < 3; i++) {
		req_init(&t[i], ids[i], who[i]);
		req_service(&t[i], "a", CODEC_KF_JWK, NULL, NULL);
		CHECK_INT(item_for(&it[i], &t[i], "vsp-a", i + 1), 0);
	}
	CHECK_INT(decide_batch(st, it, 3, KMS, NOW, &plan), 0);
	CHECK_ITEM(&it[0], STORE_OUTCOME_DECIDED, 1, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "",
	           KMS, NOW);
	CHECK_REFUSED(&it[1], CODEC_CAUSE_NOT_ALLOWED_BY_SLA, "reached the VAL server limit");
	CHECK_REFUSED(&it[2], CODEC_CAUSE_NOT_ALLOWED_BY_SLA, "reached the VAL server limit");
	CHECK_LIST(plan, audits, 0, 1, 2);
	CHECK_LIST(plan, decisions, 0, 1, 2);
	CHECK_LIST(plan, val_servers, 0);
	CHECK_INT(plan.nkey_formats, 1);
	CHECK_KEY_FORMAT(&plan.key_formats[0], 0, 0, 1, "{}");
	CHECK_INT(plan.nproviders, 1);
	CHECK_STR(plan.providers[0].vsp_id, "vsp-a");
	CHECK_INT(plan.providers[0].added, 1);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_admissions_counted_per_provider(void)
{
	decide_state *st = state_with_vsp_a();
	static const char *const who[3] = {"val-1", "val-2", "val-3"};
	static const char *const ids[3] = {ID1, ID2, ID3};
	static const char *const vsp[3] = {"vsp-a", "vsp-b", "vsp-a"};
	test_req t[3];
	store_item it[3];
	decide_plan plan;

	CHECK(st != NULL);
	CHECK_INT(add_provider(st, "vsp-b", 1, 0, 10), 0);
	for (int i = 0; i < 3; i++) {
		req_init(&t[i], ids[i], who[i]);
		req_service(&t[i], "a", CODEC_KF_JWK, NULL, NULL);
		CHECK_INT(item_for(&it[i], &t[i], vsp[i], i + 1), 0);
	}
	CHECK_INT(decide_batch(st, it, 3, KMS, NOW, &plan), 0);
	for (int i = 0; i < 3; i++)
		CHECK_INT(it[i].result, CODEC_RESULT_SUCCESS);
	CHECK_LIST(plan, val_servers, 0, 1, 2);
	CHECK_INT(plan.nproviders, 2);
	CHECK_STR(plan.providers[0].vsp_id, "vsp-a");
	CHECK_INT(plan.providers[0].added, 2);
	CHECK_STR(plan.providers[1].vsp_id, "vsp-b");
	CHECK_INT(plan.providers[1].added, 1);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

/* ---- one VAL server twice in a batch ---- */

static int test_same_val_server_twice_in_batch(void)
{
	decide_state *st = decide_state_new();
	test_req t[3];
	store_item it[3];
	decide_plan plan;

	CHECK(st != NULL);
	CHECK_INT(add_provider(st, "vsp-a", 1, 0, 1), 0); /* room for one */
	req_init(&t[0], ID1, "val-1");
	req_service(&t[0], "a", CODEC_KF_JWK, NULL, "kty", "oct", NULL);
	req_init(&t[1], ID2, "val-1");
	req_service(&t[1], "a", CODEC_KF_JWK, NULL, "kty", "EC", NULL);
	req_init(&t[2], ID3, "val-1");
	req_service(&t[2], "a", CODEC_KF_JWK, NULL, "kty", "EC", NULL);
	t[2].req.endpoint = (char *)"https://moved.example/kms";
	for (int i = 0; i < 3; i++)
		CHECK_INT(item_for(&it[i], &t[i], "vsp-a", i + 1), 0);
	CHECK_INT(decide_batch(st, it, 3, KMS, NOW, &plan), 0);
	/* the second and third see the first's admission: stored, no room
	 * needed, not admitted again */
	for (int i = 0; i < 3; i++)
		CHECK_ITEM(&it[i], STORE_OUTCOME_DECIDED, 1, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE,
		           "", KMS, NOW);
	CHECK_LIST(plan, audits, 0, 1, 2);
	CHECK_LIST(plan, decisions, 0, 1, 2);
	/* one row for the VAL server: the last request's */
	CHECK_LIST(plan, val_servers, 2);
	/* and the second sees the first's version; the third changes nothing */
	CHECK_INT(plan.nkey_formats, 2);
	CHECK_KEY_FORMAT(&plan.key_formats[0], 0, 0, 1, "{\"kty\":\"oct\"}");
	CHECK_KEY_FORMAT(&plan.key_formats[1], 1, 0, 2, "{\"kty\":\"EC\"}");
	CHECK_INT(plan.nproviders, 1);
	CHECK_INT(plan.providers[0].added, 1);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_admitted_under_a_then_requested_by_b(void)
{
	decide_state *st = state_with_vsp_a();
	test_req t[3];
	store_item it[3];
	decide_plan plan;

	CHECK(st != NULL);
	CHECK_INT(add_provider(st, "vsp-b", 1, 0, 10), 0);
	req_init(&t[0], ID1, "val-1");
	req_service(&t[0], "a", CODEC_KF_JWK, NULL, NULL);
	req_init(&t[1], ID2, "val-1");
	req_service(&t[1], "a", CODEC_KF_RAW, NULL, NULL);
	req_init(&t[2], ID3, "val-2");
	req_service(&t[2], "a", CODEC_KF_JWK, NULL, NULL);
	CHECK_INT(item_for(&it[0], &t[0], "vsp-a", 1), 0);
	CHECK_INT(item_for(&it[1], &t[1], "vsp-b", 2), 0);
	CHECK_INT(item_for(&it[2], &t[2], "vsp-b", 3), 0);
	CHECK_INT(decide_batch(st, it, 3, KMS, NOW, &plan), 0);
	CHECK_INT(it[0].result, CODEC_RESULT_SUCCESS);
	CHECK_REFUSED(&it[1], CODEC_CAUSE_NOT_ALLOWED_BY_SLA,
	              "the VAL server is registered with another VAL service provider");
	CHECK_INT(it[2].result, CODEC_RESULT_SUCCESS);
	CHECK_LIST(plan, decisions, 0, 1, 2);
	CHECK_LIST(plan, val_servers, 0, 2);
	CHECK_INT(plan.nkey_formats, 2);
	CHECK_KEY_FORMAT(&plan.key_formats[0], 0, 0, 1, "{}");
	CHECK_KEY_FORMAT(&plan.key_formats[1], 2, 0, 1, "{}");
	CHECK_INT(plan.nproviders, 2);
	CHECK_STR(plan.providers[0].vsp_id, "vsp-a");
	CHECK_INT(plan.providers[0].added, 1);
	CHECK_STR(plan.providers[1].vsp_id, "vsp-b");
	CHECK_INT(plan.providers[1].added, 1);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

/* ---- across batches, errors, the helpers ---- */

static int test_state_carries_to_next_batch(void)
{
	decide_state *st = state_with_vsp_a();
	test_req t1, t2;
	store_item first, again[3];
	decide_plan plan;

	CHECK(st != NULL);
	req_init(&t1, ID1, "val-1");
	req_service(&t1, "a", CODEC_KF_JWK, NULL, "kty", "oct", NULL);
	req_init(&t2, ID2, "val-1");
	req_service(&t2, "a", CODEC_KF_JWK, NULL, "kty", "EC", NULL);
	CHECK_INT(item_for(&first, &t1, "vsp-a", 1), 0);
	CHECK_INT(decide_batch(st, &first, 1, KMS, NOW, &plan), 0);
	decide_plan_free(&plan);
	/* the same state, a later batch: it holds the first batch's effects */
	CHECK_INT(item_for(&again[0], &t1, "vsp-a", 1), 0);
	CHECK_INT(item_for(&again[1], &t1, "vsp-a", 2), 0);
	CHECK_INT(item_for(&again[2], &t2, "vsp-a", 3), 0);
	CHECK_INT(decide_batch(st, again, 3, "kms-2", NOW + 1000, &plan), 0);
	CHECK_ITEM(&again[0], STORE_OUTCOME_REDELIVERED, 1, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE,
	           "", KMS, NOW);
	CHECK_ITEM(&again[1], STORE_OUTCOME_REPLAYED, 1, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "",
	           KMS, NOW);
	CHECK_ITEM(&again[2], STORE_OUTCOME_DECIDED, 1, CODEC_RESULT_SUCCESS, CODEC_CAUSE_NONE, "",
	           "kms-2", NOW + 1000);
	CHECK_LIST(plan, audits, 1, 2);
	CHECK_LIST(plan, decisions, 2);
	CHECK_INT(plan.nkey_formats, 1);
	CHECK_KEY_FORMAT(&plan.key_formats[0], 2, 0, 2, "{\"kty\":\"EC\"}");
	CHECK_INT(plan.nproviders, 0);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_internal_error(void)
{
	decide_state *st = state_with_vsp_a();
	test_req t;
	store_item it, dlq[2];
	decide_plan plan;

	CHECK(st != NULL);
	req_a(&t);
	CHECK_INT(item_for(&it, &t, "vsp-a", 1), 0);
	item_dlq(&dlq[0], 2, ID2, "val-2");
	item_dlq(&dlq[1], 3, ID3, NULL);
	CHECK_INT(decide_batch(st, &it, 1, KMS, NOW, &plan), 0);
	CHECK_INT(it.result, CODEC_RESULT_SUCCESS);
	/* the database refused what the item writes */
	decide_internal_error(&it, "kms-2", NOW + 5);
	CHECK_ITEM(&it, STORE_OUTCOME_ERROR, 1, CODEC_RESULT_FAILURE, CODEC_CAUSE_INTERNAL_ERROR,
	           "the KM-S could not record the request", "kms-2", NOW + 5);
	decide_internal_error(&dlq[0], "kms-2", NOW + 5);
	CHECK_ITEM(&dlq[0], STORE_OUTCOME_ERROR, 1, CODEC_RESULT_FAILURE,
	           CODEC_CAUSE_INTERNAL_ERROR, "the KM-S could not record the request", "kms-2",
	           NOW + 5);
	/* without a salvaged identity there is no one to answer */
	decide_internal_error(&dlq[1], "kms-2", NOW + 5);
	CHECK_ITEM(&dlq[1], STORE_OUTCOME_ERROR, 0, CODEC_RESULT_FAILURE,
	           CODEC_CAUSE_INTERNAL_ERROR, "the KM-S could not record the request", "kms-2",
	           NOW + 5);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_item_reset(void)
{
	test_req t;
	store_item it;

	req_a(&t);
	CHECK_INT(item_for(&it, &t, "vsp-a", 1), 0);
	decide_item_reset(&it);
	CHECK_ITEM(&it, STORE_OUTCOME_ERROR, 0, CODEC_RESULT_FAILURE, CODEC_CAUSE_NONE, "", "", 0);
	return 0;
}

static int test_empty_batch(void)
{
	decide_state *st = state_with_vsp_a();
	decide_plan plan;

	CHECK(st != NULL);
	CHECK_INT(decide_batch(st, NULL, 0, KMS, NOW, &plan), 0);
	CHECK_INT(plan.naudits, 0);
	CHECK_INT(plan.ndecisions, 0);
	CHECK_NO_PROVISIONING(plan);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_free_null_and_twice(void)
{
	decide_state *st = state_with_vsp_a();
	test_req t;
	store_item it;
	decide_plan plan;

	decide_state_destroy(NULL);
	decide_plan_free(NULL);
	memset(&plan, 0, sizeof plan);
	decide_plan_free(&plan); /* never filled */
	CHECK(st != NULL);
	req_a(&t);
	CHECK_INT(item_for(&it, &t, "vsp-a", 1), 0);
	CHECK_INT(decide_batch(st, &it, 1, KMS, NOW, &plan), 0);
	CHECK_INT(plan.naudits, 1);
	decide_plan_free(&plan);
	/* zeroed, so freeing again is a no-op */
	CHECK(plan.audits == NULL && plan.mem_ == NULL);
	CHECK_INT(plan.naudits, 0);
	CHECK_INT(plan.nkey_formats, 0);
	decide_plan_free(&plan);
	decide_state_destroy(st);
	return 0;
}

static int test_sla_needs_its_provider_first(void)
{
	decide_state *st = decide_state_new();
	sla_terms t = sla(SVC_AB, 2, JWK, 10);

	CHECK(st != NULL);
	CHECK_INT(decide_state_add_sla(st, "vsp-a", &t), -1);
	decide_state_destroy(st);
	return 0;
}

static int test_item_helpers(void)
{
	test_req t;
	store_item it, dlq;

	req_a(&t);
	CHECK_INT(item_for(&it, &t, "vsp-a", 1), 0);
	CHECK_STR(decide_request_id(&it), ID1);
	CHECK_STR(decide_identity(&it), "val-1");
	CHECK_INT(decide_has_decision_key(&it), 1);
	CHECK_INT(decide_needs_provider(&it), 1);
	it.vsp_id = NULL;
	CHECK_INT(decide_needs_provider(&it), 0);
	it.vsp_id = "vsp-a";
	it.pre_cause = CODEC_CAUSE_UNAUTHORIZED;
	CHECK_INT(decide_needs_provider(&it), 0);

	item_dlq(&dlq, 2, "not-a-uuid", "val-2");
	CHECK_STR(decide_request_id(&dlq), "not-a-uuid");
	CHECK_STR(decide_identity(&dlq), "val-2");
	CHECK_INT(decide_has_decision_key(&dlq), 0);
	CHECK_INT(decide_needs_provider(&dlq), 0);
	dlq.request_id = NULL;
	CHECK(decide_request_id(&dlq) == NULL);
	CHECK_INT(decide_has_decision_key(&dlq), 0);

	CHECK_STR(decide_outcome_name(STORE_OUTCOME_DECIDED), "DECIDED");
	CHECK_STR(decide_outcome_name(STORE_OUTCOME_REPLAYED), "REPLAYED");
	CHECK_STR(decide_outcome_name(STORE_OUTCOME_CONFLICT), "CONFLICT");
	CHECK_STR(decide_outcome_name(STORE_OUTCOME_DLQ), "DLQ");
	CHECK_STR(decide_outcome_name(STORE_OUTCOME_ERROR), "ERROR");
	return 0;
}

static const check_case cases[] = {
    {"success_one_service", test_success_one_service},
    {"success_two_services", test_success_two_services},
    {"renewal_same_format", test_renewal_same_format},
    {"content_key_order_and_spacing_ignored", test_content_key_order_and_spacing_ignored},
    {"renewal_changed_content", test_renewal_changed_content},
    {"renewal_changed_format_type", test_renewal_changed_format_type},
    {"renewal_changed_format_version", test_renewal_changed_format_version},
    {"key_formats_per_val_server", test_key_formats_per_val_server},
    {"redelivery_from_audit", test_redelivery_from_audit},
    {"same_coordinates_twice_in_batch", test_same_coordinates_twice_in_batch},
    {"replay_success", test_replay_success},
    {"replay_failure", test_replay_failure},
    {"replay_before_pre_checks", test_replay_before_pre_checks},
    {"conflict_other_content", test_conflict_other_content},
    {"conflict_other_identity", test_conflict_other_identity},
    {"conflict_stored_hash_null", test_conflict_stored_hash_null},
    {"same_request_id_twice_in_batch_replays", test_same_request_id_twice_in_batch_replays},
    {"same_request_id_twice_in_batch_conflict", test_same_request_id_twice_in_batch_conflict},
    {"dlq", test_dlq},
    {"pre_check_unauthorized", test_pre_check_unauthorized},
    {"pre_check_invalid_without_uuid", test_pre_check_invalid_without_uuid},
    {"detail_clipped_at_a_character", test_detail_clipped_at_a_character},
    {"sla_unknown_provider", test_sla_unknown_provider},
    {"sla_no_provider_named", test_sla_no_provider_named},
    {"sla_disabled_provider", test_sla_disabled_provider},
    {"sla_service_not_covered", test_sla_service_not_covered},
    {"sla_key_format_not_allowed", test_sla_key_format_not_allowed},
    {"sla_val_server_of_another_provider", test_sla_val_server_of_another_provider},
    {"sla_expired_at_now", test_sla_expired_at_now},
    {"sla_not_yet_valid", test_sla_not_yet_valid},
    {"sla_revoked", test_sla_revoked},
    {"sla_valid_from_now", test_sla_valid_from_now},
    {"limit_reached_by_stored_count", test_limit_reached_by_stored_count},
    {"limit_fills_inside_batch", test_limit_fills_inside_batch},
    {"admissions_counted_per_provider", test_admissions_counted_per_provider},
    {"same_val_server_twice_in_batch", test_same_val_server_twice_in_batch},
    {"admitted_under_a_then_requested_by_b", test_admitted_under_a_then_requested_by_b},
    {"state_carries_to_next_batch", test_state_carries_to_next_batch},
    {"internal_error", test_internal_error},
    {"item_reset", test_item_reset},
    {"empty_batch", test_empty_batch},
    {"free_null_and_twice", test_free_null_and_twice},
    {"sla_needs_its_provider_first", test_sla_needs_its_provider_first},
    {"item_helpers", test_item_helpers},
};

CHECK_MAIN("decide", cases)
