/*
 * authz: the token half of the contract's authorization rules (1 to 3). The
 * token is verified by jwt (issuer, algorithm, signature, exp/nbf/iat), then
 * its claims are held against the request: client_id is the requester,
 * scope holds the configured scope as a whole word, SKeyProv is present and
 * not false, and vsp_id names the VAL service provider whose SLA the store
 * checks next, which must be one that the token's issuer is bound to (one
 * tenant's authorization server must not mint tokens for another). Pure: no
 * I/O and no clock (now is passed in), so every branch is tested
 * in-process. Every denial is one short sentence for the Result's detail,
 * never quoting the token.
 *
 * With a token cache, the signature is verified once per token: what is
 * cached is the outcome of jwt_verify_signature() alone, and the time claims
 * and every rule above are checked at every call, so a cached token is held
 * to exactly the rules a fresh one is. Only tokens that verified are cached.
 */
#include "authz.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define AUTHZ_DEFAULT_SCOPE "ss-kpp"

static void set_detail(char *detail, size_t detail_size, const char *msg)
{
	if (detail == NULL || detail_size == 0)
		return;
	/* A cut sentence still names the cause; the Result wants no more. */
	(void)snprintf(detail, detail_size, "%s", msg);
}

/* Whether the space-separated list holds want as one whole token (RFC 6749
 * section 3.3), so "ss-kppx" or "xss-kpp" do not count as "ss-kpp". */
static int scope_has(const char *list, const char *want)
{
	size_t want_len = strlen(want);
	const char *p = list;

	while (*p != '\0') {
		const char *end;
		while (*p == ' ')
			p++;
		end = strchr(p, ' ');
		if (end == NULL)
			end = p + strlen(p);
		if ((size_t)(end - p) == want_len && memcmp(p, want, want_len) == 0)
			return 1;
		p = end;
	}
	return 0;
}

/* Whether the token's issuer may speak for vsp_id: the tenant check that
 * keeps one provider's authorization server from naming another provider. */
static int issuer_may_name(const authz_policy *p, const char *iss, const char *vsp_id)
{
	if (p->issuers == NULL)
		return 1;
	for (size_t i = 0; i < p->n_issuers; i++) {
		const authz_issuer *b = &p->issuers[i];
		if (iss == NULL || strcmp(b->iss, iss) != 0)
			continue;
		if (b->any)
			return 1;
		for (size_t k = 0; k < b->n_vsp_ids; k++)
			if (strcmp(b->vsp_ids[k], vsp_id) == 0)
				return 1;
		return 0;
	}
	return 0;
}

/* Keep the claims of a token whose signature just verified, until its exp
 * with the leeway: after that the time checks refuse it whatever the cache
 * says, so the entry would only take room. A failure to cache costs only the
 * saving. */
static void cache_verified(const authz_policy *p, const char *token, const jwt_claims *c,
                           int64_t now_s)
{
	int64_t leeway = p->leeway_s < 0                  ? 0
	                 : p->leeway_s > JWT_MAX_LEEWAY_S ? JWT_MAX_LEEWAY_S
	                                                  : p->leeway_s;
	int64_t expires;

	if (p->cache == NULL || !c->has_exp)
		return;
	expires = c->exp > INT64_MAX - leeway ? INT64_MAX : c->exp + leeway;
	if (expires < now_s)
		return;
	if (tokcache_insert(p->cache, token, c, expires) != 0)
		return; /* out of memory: the next use verifies again */
}

authz_decision authz_check(const authz_policy *p, const char *token, const char *requester_identity,
                           int64_t now_s, char *vsp_id, size_t vsp_id_size, char *detail,
                           size_t detail_size)
{
	jwt_claims own;
	const jwt_claims *c = NULL;
	char why[256];
	const char *scope;
	authz_decision d = AUTHZ_DENY;
	int r;

	memset(&own, 0, sizeof own);
	if (vsp_id != NULL && vsp_id_size > 0)
		vsp_id[0] = '\0';
	if (detail != NULL && detail_size > 0)
		detail[0] = '\0';
	if (p == NULL || p->verifier == NULL) {
		set_detail(detail, detail_size, "token verification is not configured");
		goto out;
	}
	scope = p->scope != NULL ? p->scope : AUTHZ_DEFAULT_SCOPE;
	if (scope[0] == '\0' || strchr(scope, ' ') != NULL) {
		set_detail(detail, detail_size, "the required scope is not a single word");
		goto out;
	}
	if (token == NULL || token[0] == '\0') {
		set_detail(detail, detail_size, "request has no access token");
		goto out;
	}
	if (p->cache != NULL)
		c = tokcache_lookup(p->cache, token, now_s);
	if (c == NULL) {
		r = jwt_verify_signature(p->verifier, token, &own, why, sizeof why);
		if (r == JWT_ERR_NOMEM) {
			set_detail(detail, detail_size, why);
			d = AUTHZ_ERROR;
			goto out;
		}
		if (r != 0) {
			set_detail(detail, detail_size, why);
			goto out;
		}
		c = &own;
		cache_verified(p, token, c, now_s);
	}
	if (jwt_check_times(c, now_s, p->leeway_s, why, sizeof why) != 0) {
		set_detail(detail, detail_size, why);
		goto out;
	}
	if (c->client_id == NULL) {
		set_detail(detail, detail_size, "token has no client_id");
		goto out;
	}
	if (requester_identity == NULL || strcmp(c->client_id, requester_identity) != 0) {
		set_detail(detail, detail_size, "client_id does not match requesterIdentity");
		goto out;
	}
	if (c->scope == NULL) {
		set_detail(detail, detail_size, "token has no scope");
		goto out;
	}
	if (!scope_has(c->scope, scope)) {
		if (detail != NULL && detail_size > 0)
			(void)snprintf(detail, detail_size, "token scope does not include %s",
			               scope);
		goto out;
	}
	if (!c->has_skeyprov) {
		set_detail(detail, detail_size, "token has no SKeyProv claim");
		goto out;
	}
	if (c->skeyprov_false) {
		set_detail(detail, detail_size, "token SKeyProv is false");
		goto out;
	}
	if (c->vsp_id == NULL || c->vsp_id[0] == '\0') {
		set_detail(detail, detail_size, "token has no vsp_id");
		goto out;
	}
	if (!issuer_may_name(p, c->iss, c->vsp_id)) {
		set_detail(
		    detail, detail_size,
		    "token issuer is not bound to the VAL service provider its vsp_id names");
		goto out;
	}
	/* Fail closed: a cut vsp_id would name another provider's SLAs. */
	if (vsp_id == NULL || strlen(c->vsp_id) >= vsp_id_size) {
		set_detail(detail, detail_size, "token vsp_id is too long");
		goto out;
	}
	memcpy(vsp_id, c->vsp_id, strlen(c->vsp_id) + 1);
	d = AUTHZ_ALLOW;
out:
	jwt_claims_free(&own);
	return d;
}
