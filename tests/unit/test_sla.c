/*
 * test_sla: each rule of the SLA evaluation (contract rules 4 and 5), without
 * a database: coverage, activity (validity window, revocation, provider
 * enabled), the VAL server limit, the VAL server's provider, and the allowed
 * key formats; plus the UTF-8-safe copy used for details.
 */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "sla.h"

#define NOW 1700000000000LL

static const char *const svc_ab[] = {"svc-a", "svc-b"};
static const char *const svc_c[] = {"svc-c"};

static sla_terms terms(const char *const *services, size_t n, unsigned formats, int64_t max)
{
	sla_terms t = {0};
	t.sla_id = 1;
	t.services = services;
	t.service_count = n;
	t.key_formats = formats;
	t.max_val_servers = max;
	t.valid_from_ms = NOW - 1000;
	t.valid_until_ms = NOW + 1000;
	return t;
}

static sla_context context(const sla_terms *slas, size_t n)
{
	sla_context c = {0};
	c.vsp_id = "vsp-1";
	c.provider_known = 1;
	c.provider_enabled = 1;
	c.slas = slas;
	c.sla_count = n;
	c.now_ms = NOW;
	return c;
}

static codec_val_service service(char *id, codec_key_format_type t)
{
	codec_val_service s = {0};
	s.val_service_id = id;
	s.format_type = t;
	return s;
}

#define JWK (1u << CODEC_KF_JWK)
#define RAW (1u << CODEC_KF_RAW)

static int test_allowed(void)
{
	sla_terms t = terms(svc_ab, 2, JWK | RAW, 10);
	sla_context c = context(&t, 1);
	codec_val_service req[2] = {service("svc-a", CODEC_KF_JWK), service("svc-b", CODEC_KF_RAW)};
	char detail[256] = "x";
	CHECK_INT(sla_evaluate(&c, req, 2, detail, sizeof detail), CODEC_CAUSE_NONE);
	CHECK_STR(detail, "");
	return 0;
}

static int test_unknown_provider(void)
{
	sla_context c = context(NULL, 0);
	c.provider_known = 0;
	codec_val_service req[1] = {service("svc-a", CODEC_KF_JWK)};
	char detail[256];
	CHECK_INT(sla_evaluate(&c, req, 1, detail, sizeof detail), CODEC_CAUSE_NOT_ALLOWED_BY_SLA);
	CHECK_STR(detail, "VAL service provider 'vsp-1' has no SLA");
	return 0;
}

static int test_disabled_provider(void)
{
	sla_terms t = terms(svc_ab, 2, JWK, 10);
	sla_context c = context(&t, 1);
	c.provider_enabled = 0;
	codec_val_service req[1] = {service("svc-a", CODEC_KF_JWK)};
	char detail[256];
	CHECK_INT(sla_evaluate(&c, req, 1, detail, sizeof detail), CODEC_CAUSE_NOT_ALLOWED_BY_SLA);
	CHECK_STR(detail, "VAL service provider 'vsp-1' is disabled");
	return 0;
}

static int test_no_sla(void)
{
	sla_context c = context(NULL, 0);
	codec_val_service req[1] = {service("svc-a", CODEC_KF_JWK)};
	char detail[256];
	CHECK_INT(sla_evaluate(&c, req, 1, detail, sizeof detail), CODEC_CAUSE_NOT_ALLOWED_BY_SLA);
	CHECK_STR(detail,
	          "no active SLA of VAL service provider 'vsp-1' covers VAL service 'svc-a'");
	return 0;
}

static int test_service_not_covered(void)
{
	/* one service covered, the other not: the request fails whole, and
	 * coverage (rule 4) wins over a bad format (rule 5) on svc-a */
	sla_terms t = terms(svc_ab, 2, RAW, 10);
	sla_context c = context(&t, 1);
	codec_val_service req[2] = {service("svc-a", CODEC_KF_JWK), service("svc-c", CODEC_KF_RAW)};
	char detail[256];
	CHECK_INT(sla_evaluate(&c, req, 2, detail, sizeof detail), CODEC_CAUSE_NOT_ALLOWED_BY_SLA);
	CHECK_STR(detail,
	          "no active SLA of VAL service provider 'vsp-1' covers VAL service 'svc-c'");
	return 0;
}

static int test_two_slas_cover_two_services(void)
{
	sla_terms t[2] = {terms(svc_ab, 2, JWK, 10), terms(svc_c, 1, RAW, 10)};
	sla_context c = context(t, 2);
	codec_val_service req[2] = {service("svc-a", CODEC_KF_JWK), service("svc-c", CODEC_KF_RAW)};
	char detail[256];
	CHECK_INT(sla_evaluate(&c, req, 2, detail, sizeof detail), CODEC_CAUSE_NONE);
	return 0;
}

static int test_expired_and_not_yet_valid(void)
{
	sla_terms t = terms(svc_ab, 2, JWK, 10);
	sla_context c = context(&t, 1);
	codec_val_service req[1] = {service("svc-a", CODEC_KF_JWK)};
	char detail[256];
	t.valid_until_ms = NOW; /* valid_until is exclusive */
	CHECK_INT(sla_evaluate(&c, req, 1, detail, sizeof detail), CODEC_CAUSE_NOT_ALLOWED_BY_SLA);
	t.valid_until_ms = NOW + 1;
	t.valid_from_ms = NOW + 1;
	CHECK_INT(sla_evaluate(&c, req, 1, detail, sizeof detail), CODEC_CAUSE_NOT_ALLOWED_BY_SLA);
	t.valid_from_ms = NOW; /* valid_from is inclusive */
	CHECK_INT(sla_evaluate(&c, req, 1, detail, sizeof detail), CODEC_CAUSE_NONE);
	return 0;
}

static int test_revoked(void)
{
	sla_terms t = terms(svc_ab, 2, JWK, 10);
	t.revoked = 1;
	sla_context c = context(&t, 1);
	codec_val_service req[1] = {service("svc-a", CODEC_KF_JWK)};
	char detail[256];
	CHECK_INT(sla_evaluate(&c, req, 1, detail, sizeof detail), CODEC_CAUSE_NOT_ALLOWED_BY_SLA);
	return 0;
}

static int test_limit(void)
{
	sla_terms t = terms(svc_ab, 2, JWK, 3);
	sla_context c = context(&t, 1);
	codec_val_service req[1] = {service("svc-a", CODEC_KF_JWK)};
	char detail[256];
	c.val_server_count = 2; /* room for one more */
	CHECK_INT(sla_evaluate(&c, req, 1, detail, sizeof detail), CODEC_CAUSE_NONE);
	c.val_server_count = 3; /* full: a new VAL server is refused ... */
	CHECK_INT(sla_evaluate(&c, req, 1, detail, sizeof detail), CODEC_CAUSE_NOT_ALLOWED_BY_SLA);
	CHECK_STR(detail, "VAL service provider 'vsp-1' has reached the VAL server limit of its "
	                  "SLA for VAL service 'svc-a'");
	c.val_server_stored = 1; /* ... one already admitted is not */
	CHECK_INT(sla_evaluate(&c, req, 1, detail, sizeof detail), CODEC_CAUSE_NONE);
	return 0;
}

static int test_limit_of_each_sla_used(void)
{
	/* svc-a's only SLA is full, svc-c's has room: refused */
	sla_terms t[2] = {terms(svc_ab, 2, JWK, 2), terms(svc_c, 1, JWK, 100)};
	sla_context c = context(t, 2);
	c.val_server_count = 2;
	codec_val_service req[2] = {service("svc-c", CODEC_KF_JWK), service("svc-a", CODEC_KF_JWK)};
	char detail[256];
	CHECK_INT(sla_evaluate(&c, req, 2, detail, sizeof detail), CODEC_CAUSE_NOT_ALLOWED_BY_SLA);
	CHECK(strstr(detail, "'svc-a'") != NULL);
	/* a second SLA covering svc-a with room admits it */
	sla_terms u[3] = {t[0], t[1], terms(svc_ab, 2, JWK, 5)};
	c = context(u, 3);
	c.val_server_count = 2;
	CHECK_INT(sla_evaluate(&c, req, 2, detail, sizeof detail), CODEC_CAUSE_NONE);
	return 0;
}

static int test_other_provider(void)
{
	sla_terms t = terms(svc_ab, 2, JWK, 10);
	sla_context c = context(&t, 1);
	c.val_server_stored = 1;
	c.val_server_other_provider = 1;
	codec_val_service req[1] = {service("svc-a", CODEC_KF_JWK)};
	char detail[256];
	CHECK_INT(sla_evaluate(&c, req, 1, detail, sizeof detail), CODEC_CAUSE_NOT_ALLOWED_BY_SLA);
	CHECK_STR(detail, "the VAL server is registered with another VAL service provider");
	return 0;
}

static int test_key_format_not_allowed(void)
{
	sla_terms t = terms(svc_ab, 2, JWK, 10);
	sla_context c = context(&t, 1);
	codec_val_service req[2] = {service("svc-a", CODEC_KF_JWK),
	                            service("svc-b", CODEC_KF_PKCS8)};
	char detail[256];
	CHECK_INT(sla_evaluate(&c, req, 2, detail, sizeof detail),
	          CODEC_CAUSE_KEY_FORMAT_NOT_ALLOWED);
	CHECK_STR(detail, "key format PKCS8 is not allowed by the SLA for VAL service 'svc-b'");
	return 0;
}

static int test_format_from_another_covering_sla(void)
{
	/* formats are allowed per service by any active SLA covering it, but
	 * not by an SLA that covers only other services */
	sla_terms t[2] = {terms(svc_ab, 2, JWK, 10), terms(svc_ab, 2, RAW, 10)};
	sla_context c = context(t, 2);
	codec_val_service req[1] = {service("svc-b", CODEC_KF_RAW)};
	char detail[256];
	CHECK_INT(sla_evaluate(&c, req, 1, detail, sizeof detail), CODEC_CAUSE_NONE);
	sla_terms u[2] = {terms(svc_ab, 2, JWK, 10), terms(svc_c, 1, RAW, 10)};
	c = context(u, 2);
	CHECK_INT(sla_evaluate(&c, req, 1, detail, sizeof detail),
	          CODEC_CAUSE_KEY_FORMAT_NOT_ALLOWED);
	/* and, for a new VAL server, only by a covering SLA with room */
	sla_terms v[2] = {terms(svc_ab, 2, RAW, 1), terms(svc_ab, 2, JWK, 10)};
	c = context(v, 2);
	c.val_server_count = 1;
	CHECK_INT(sla_evaluate(&c, req, 1, detail, sizeof detail),
	          CODEC_CAUSE_KEY_FORMAT_NOT_ALLOWED);
	return 0;
}

static int test_long_names_clipped_utf8(void)
{
	/* a 300-byte service ID of 2-byte characters: the detail fits, ends
	 * on a character boundary, and marks the cut */
	char id[301];
	for (size_t i = 0; i < 300; i += 2) {
		id[i] = (char)0xC3;
		id[i + 1] = (char)0xA9; /* é */
	}
	id[300] = '\0';
	sla_context c = context(NULL, 0);
	codec_val_service req[1] = {service(id, CODEC_KF_JWK)};
	char detail[256];
	CHECK_INT(sla_evaluate(&c, req, 1, detail, sizeof detail), CODEC_CAUSE_NOT_ALLOWED_BY_SLA);
	CHECK(strlen(detail) < 200);
	CHECK(strstr(detail, "...'") != NULL);
	const char *cut = strstr(detail, "...'");
	CHECK(((unsigned char)cut[-1] & 0xC0) == 0x80); /* the cut is after a whole é */
	CHECK((unsigned char)cut[-2] == 0xC3);
	return 0;
}

static const check_case cases[] = {
    {"allowed", test_allowed},
    {"unknown_provider", test_unknown_provider},
    {"disabled_provider", test_disabled_provider},
    {"no_sla", test_no_sla},
    {"service_not_covered", test_service_not_covered},
    {"two_slas_cover_two_services", test_two_slas_cover_two_services},
    {"expired_and_not_yet_valid", test_expired_and_not_yet_valid},
    {"revoked", test_revoked},
    {"limit", test_limit},
    {"limit_of_each_sla_used", test_limit_of_each_sla_used},
    {"other_provider", test_other_provider},
    {"key_format_not_allowed", test_key_format_not_allowed},
    {"format_from_another_covering_sla", test_format_from_another_covering_sla},
    {"long_names_clipped_utf8", test_long_names_clipped_utf8},
};

CHECK_MAIN("sla", cases)
