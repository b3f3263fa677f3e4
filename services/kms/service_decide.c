/*
 * service_decide: step 2 of a batch, what can be decided about each message
 * without I/O: where its Result goes (kafka_replyTopic, kafka_replyPartition
 * when allowed), its decoding (single-object, or Confluent-framed with the
 * writer schema from the registry), its validation and content hash, its
 * key, and its token. What it decides is the slot's store_item, which step 3
 * completes in the database; a message it cannot decide for want of memory
 * or of the registry is tried again after a backoff, never answered. The
 * trust the tokens are checked under is adopted here too (between batches,
 * and at once when a token's unknown kid brought a new key set).
 */
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <regex.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "service_int.h"

/* Point the policy at the trust in force; when it changed, drop the cached
 * tokens, which only the keys that verified them vouch for. */
void svc_adopt_trust(svc *s)
{
	uint64_t gen = trust_generation(s->trust);

	s->policy.verifier = trust_verifier(s->trust);
	s->policy.issuers = trust_issuers(s->trust, &s->policy.n_issuers);
	if (gen == s->trust_gen)
		return;
	tokcache_clear(s->tokens);
	if (s->trust_gen != 0)
		log_event(LOG_INFO, "trust_changed", "{s:I}", "generation", (json_int_t)gen);
	s->trust_gen = gen;
}

static int topic_name_ok(const char *t, size_t n)
{
	if (n == 0 || n > 249)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = t[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return !(n == 1 && t[0] == '.') && !(n == 2 && t[0] == '.' && t[1] == '.');
}

/* Where the Result goes: kafka_replyTopic and kafka_replyPartition when they
 * are allowed, the default results topic otherwise (with a note). */
static void route_reply(svc *s, slot *sl)
{
	const kms_config *cfg = s->cfg;
	snprintf(sl->reply_topic, sizeof sl->reply_topic, "%s", cfg->results_topic);
	sl->reply_partition = RD_KAFKA_PARTITION_UA;
	sl->reply_note[0] = '\0';
	sl->reroute = METRICS_REROUTE_NONE;

	const void *v;
	size_t n;
	if (svc_header(sl->msg, "kafka_replyTopic", &v, &n) != 0 || v == NULL)
		return;
	const char *t = v;
	char name[256];
	if (!topic_name_ok(t, n)) {
		snprintf(sl->reply_note, sizeof sl->reply_note,
		         "kafka_replyTopic refused: not a valid topic name");
		sl->reroute = METRICS_REROUTE_TOPIC_INVALID;
		return;
	}
	memcpy(name, t, n);
	name[n] = '\0';
	int allowed;
	if (s->derived->has_reply_re)
		allowed = regexec(&s->derived->reply_re, name, 0, NULL, 0) == 0;
	else
		allowed = strcmp(name, cfg->requests_topic) != 0 &&
		          strcmp(name, cfg->dlq_topic) != 0 && strncmp(name, "__", 2) != 0;
	if (!allowed) {
		snprintf(sl->reply_note, sizeof sl->reply_note,
		         "kafka_replyTopic refused: %.180s does not match the reply-topic pattern",
		         name);
		sl->reroute = METRICS_REROUTE_TOPIC_NOT_ALLOWED;
		return;
	}
	snprintf(sl->reply_topic, sizeof sl->reply_topic, "%s", name);

	if (svc_header(sl->msg, "kafka_replyPartition", &v, &n) != 0 || v == NULL)
		return;
	const unsigned char *b = v;
	int32_t p = n == 4 ? (int32_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
	                               (uint32_t)b[2] << 8 | (uint32_t)b[3])
	                   : -1;
	if (p < 0) {
		snprintf(sl->reply_note, sizeof sl->reply_note,
		         "kafka_replyPartition ignored: not a 4-byte non-negative integer");
		sl->reroute = METRICS_REROUTE_PARTITION_INVALID;
		return;
	}
	sl->reply_partition = p;
}

/* The id of the Result schema in the registry, asked once: looked up under
 * the results topic's subject, registered there when missing (as a
 * registry-aware serializer would). */
static int result_schema_id(svc *s, char *errstr, size_t errstr_size)
{
	char subject[300];
	uint32_t id;
	if (s->result_schema_id >= 0)
		return 0;
	snprintf(subject, sizeof subject, "%s-value", s->cfg->results_topic);
	registry_status st =
	    registry_schema_id(s->registry, subject, codec_response_schema_json(s->codec), 1, &id,
	                       NULL, errstr, errstr_size);
	if (st != REGISTRY_OK)
		return -1;
	s->result_schema_id = id;
	return 0;
}

/* Decode a request in either framing, the first byte telling them apart.
 * A Confluent-framed value needs its writer schema from the registry and,
 * for its Result, the Result schema's id: CODEC_ERR_UNAVAILABLE when the
 * registry could not give them. Kept from asking again for a moment after
 * an outage, so a batch of such values costs one time-out, not one each. */
static codec_status decode(svc *s, slot *sl)
{
	rd_kafka_message_t *m = sl->msg;
	size_t len = m->payload ? m->len : 0;

	sl->confluent =
	    s->registry != NULL && codec_framing_of(m->payload, len) == CODEC_FRAMING_CONFLUENT;
	if (!sl->confluent)
		return codec_decode_request(s->codec, m->payload, len, &sl->req, &sl->salvage,
		                            sl->decode_error, sizeof sl->decode_error);
	registry_set_offline(s->registry,
	                     s->registry_fail_ms != 0 && mono_ms() - s->registry_fail_ms < 100);
	if (result_schema_id(s, sl->decode_error, sizeof sl->decode_error) != 0)
		return CODEC_ERR_UNAVAILABLE;
	codec_status st =
	    registry_decode_request(s->registry, m->payload, len, &sl->req, &sl->salvage,
	                            sl->decode_error, sizeof sl->decode_error);
	if (st != CODEC_ERR_UNAVAILABLE) {
		s->registry_fail_ms = 0;
		health_set(s->health, HEALTH_REGISTRY, 1);
	}
	return st;
}

static void registry_unavailable(svc *s, slot *sl)
{
	if (s->registry_fail_ms == 0 || mono_ms() - s->registry_fail_ms >= 100)
		log_event(LOG_WARN, "registry_unavailable", "{s:s, s:s, s:i, s:I}", "error",
		          sl->decode_error, "topic", rd_kafka_topic_name(sl->msg->rkt), "partition",
		          (int)sl->msg->partition, "offset", (json_int_t)sl->msg->offset);
	s->registry_fail_ms = mono_ms();
	health_set(s->health, HEALTH_REGISTRY, 0);
	codec_request_free(sl->req);
	sl->req = NULL;
	codec_salvage_free(&sl->salvage);
	sl->item.dlq = 0;
	sl->item.pre_cause = CODEC_CAUSE_NONE;
}

/* Decide what can be decided without I/O: decode, validate, hash the
 * content, verify the token, route the reply. Returns 0 with sl->item
 * filled for the store, or -1 on an internal error (out of memory while
 * decoding, hashing or verifying the token), which says nothing about the
 * message: it must not be answered, sent to the DLQ, decided by the store,
 * nor its offset stored: svc_decide_pure_all() calls it again on the same slot
 * after a backoff and hands the batch to the store only once every slot
 * returned 0. Calling it again is safe: it releases what an earlier call
 * left in the slot. */
static int decide_pure(svc *s, slot *sl, int64_t now_s) __attribute__((warn_unused_result));

static int decide_pure(svc *s, slot *sl, int64_t now_s)
{
	rd_kafka_message_t *m = sl->msg;
	store_item *it = &sl->item;
	const char *why = NULL;

	codec_request_free(sl->req);
	sl->req = NULL;
	codec_salvage_free(&sl->salvage);
	memset(it, 0, sizeof *it);
	it->topic = rd_kafka_topic_name(m->rkt);
	it->partition = m->partition;
	it->offset = m->offset;
	it->pre_cause = CODEC_CAUSE_NONE;
	route_reply(s, sl);
	it->reply_note = sl->reply_note[0] ? sl->reply_note : NULL;

	int64_t decode_start = metrics_now_ns();
	sl->status = decode(s, sl);
	s->decode_ns += metrics_now_ns() - decode_start;
	if (sl->status == CODEC_ERR_UNAVAILABLE) {
		/* No verdict: the registry is away, the batch waits for it. */
		registry_unavailable(s, sl);
		return -1;
	}
	if (sl->status == CODEC_ERR_NOMEM) {
		why = sl->decode_error;
		goto internal;
	}
	if (sl->status != CODEC_OK) {
		it->dlq = 1;
		it->pre_cause = CODEC_CAUSE_INVALID_REQUEST;
		snprintf(sl->pre_detail, sizeof sl->pre_detail,
		         "value could not be decoded: %.200s", sl->decode_error);
		it->pre_detail = sl->pre_detail;
		/* a Result only when the request can still be named */
		if (sl->salvage.request_id != NULL && validate_uuid(sl->salvage.request_id) &&
		    sl->salvage.requester_identity != NULL) {
			it->request_id = sl->salvage.request_id;
			it->requester_identity = sl->salvage.requester_identity;
		}
		return 0;
	}

	codec_request *r = sl->req;
	it->req = r;
	it->request_id = r->request_id;
	it->requester_identity = r->requester_identity;
	if (validate_content_hash(r, it->content_hash) != 0) {
		/* A hash that is not the content's would match another
		 * request's, or miss this one's retry. */
		why = "the content hash could not be computed";
		goto internal;
	}

	if (validate_request(r, &s->limits, sl->pre_detail, sizeof sl->pre_detail) != 0) {
		it->pre_cause = CODEC_CAUSE_INVALID_REQUEST;
	} else if (m->key == NULL || m->key_len != strlen(r->requester_identity) ||
	           memcmp(m->key, r->requester_identity, m->key_len) != 0) {
		it->pre_cause = CODEC_CAUSE_INVALID_REQUEST;
		snprintf(sl->pre_detail, sizeof sl->pre_detail,
		         "the message key must be the requesterIdentity");
	} else {
		authz_decision d = authz_check(&s->policy, r->access_token, r->requester_identity,
		                               now_s, sl->vsp_id, sizeof sl->vsp_id, sl->pre_detail,
		                               sizeof sl->pre_detail);
		/* A kid its JWKS URI issuer's set lacks may be a rotation the
		 * issuer has just published: fetch the set (rate-limited), and
		 * when it changed, check the token again under it at once. */
		if (d == AUTHZ_DENY && trust_refresh_for_token(s->trust, r->access_token)) {
			svc_adopt_trust(s);
			d = authz_check(&s->policy, r->access_token, r->requester_identity, now_s,
			                sl->vsp_id, sizeof sl->vsp_id, sl->pre_detail,
			                sizeof sl->pre_detail);
		}
		if (d == AUTHZ_ERROR) {
			why = sl->pre_detail;
			goto internal;
		}
		if (d != AUTHZ_ALLOW)
			it->pre_cause = CODEC_CAUSE_UNAUTHORIZED;
		else
			it->vsp_id = sl->vsp_id;
	}
	if (it->pre_cause != CODEC_CAUSE_NONE)
		it->pre_detail = sl->pre_detail;
	return 0;

internal:
	log_event(LOG_ERROR, "decide_failed", "{s:s, s:s, s:i, s:I}", "error", why, "topic",
	          it->topic, "partition", (int)it->partition, "offset", (json_int_t)it->offset);
	it->dlq = 0;
	it->vsp_id = NULL;
	it->pre_cause = CODEC_CAUSE_INTERNAL_ERROR;
	snprintf(sl->pre_detail, sizeof sl->pre_detail, "the KM-S could not decide the request");
	it->pre_detail = sl->pre_detail;
	return -1;
}

/* Step 2 for every slot of the batch. An internal error (out of memory) is
 * no verdict on the message: the slots it hit are decided again after a
 * backoff, while the group is kept, until each has its verdict. Returns -1
 * when the graceful stop ran out of time. */
int svc_decide_pure_all(svc *s)
{
	int attempt = 0;
	for (;;) {
		size_t failed = 0;
		int64_t now_s = now_ms() / 1000;
		for (size_t i = 0; i < s->nslots; i++) {
			slot *sl = &s->slots[i];
			if (sl->pure_done)
				continue;
			if (decide_pure(s, sl, now_s) == 0)
				sl->pure_done = 1;
			else
				failed++;
		}
		if (failed == 0)
			return 0;
		log_event(LOG_WARN, "decide_pure_retry", "{s:i, s:i}", "failed", (int)failed,
		          "attempt", attempt);
		if (svc_wait_ms(s, svc_backoff_ms(s, attempt++)) != 0)
			return -1;
	}
}
