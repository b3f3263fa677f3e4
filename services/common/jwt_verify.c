/*
 * jwt_verify: the KM-S's side of a token. Verification runs its checks in a
 * fixed order (size, form, base64url, header, algorithm, payload, issuer,
 * key, key type, signature, time claims) and stops at the first failure
 * with one sentence that never quotes the token, since tokens are
 * credentials and error texts end up in Results and logs. The payload is
 * read as claims only once the signature holds. The time claims are the only
 * checks that depend on when a token is used, so they can also run apart
 * (jwt_verify_signature() then jwt_check_times()) for a caller that keeps
 * verified claims. An allocation failure is reported apart (JWT_ERR_NOMEM)
 * wherever it can be told from a bad token, so that it is never mistaken for
 * a refusal. jwt_peek() reads a token's issuer and kid without trusting
 * them, with the same parsing rules.
 *
 * We do not use libjwt: the Debian package (1.10) cannot reject duplicate
 * JSON members, does not bind the key type to the algorithm strictly enough
 * to defeat algorithm confusion, and cannot pick a key by kid.
 */
#include "jwt_int.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>

#include "errstr.h"

/* Whether OpenSSL's error queue says an allocation failed: inside its
 * verification that is the only way to tell memory from a bad signature. */
static int ossl_out_of_memory(void)
{
	unsigned long e;
	int nomem = 0;

	while ((e = ERR_get_error()) != 0)
		if (!ERR_SYSTEM_ERROR(e) && ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE)
			nomem = 1;
	return nomem;
}

/* 1 when the signature over msg verifies, 0 when it does not, -1 when its
 * length is wrong for the algorithm, JWT_ERR_NOMEM when OpenSSL ran out of
 * memory (an allocator's NULL, or ERR_R_MALLOC_FAILURE in its error queue).
 * Any other OpenSSL failure counts as "does not verify", since a failure that
 * the token could provoke must end in a refusal, never in a retry that would
 * come back to it forever. */
static int verify_bytes(EVP_PKEY *pkey, jwt_alg alg, const unsigned char *msg, size_t msg_len,
                        const unsigned char *sig, size_t sig_len)
{
	EVP_MD_CTX *ctx = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	ECDSA_SIG *es = NULL;
	BIGNUM *r = NULL, *s = NULL;
	unsigned char *der = NULL;
	const unsigned char *check = sig;
	size_t check_len = sig_len;
	int rc = JWT_ERR_NOMEM;

	if (jwt_ec_sig_len(alg) != 0) {
		size_t half = jwt_ec_sig_len(alg) / 2;
		int n;

		if (sig_len != 2 * half)
			return -1;
		es = ECDSA_SIG_new();
		r = BN_bin2bn(sig, (int)half, NULL);
		s = BN_bin2bn(sig + half, (int)half, NULL);
		/* With three objects in hand set0 cannot fail, nor can the
		 * DER encoding of two bounded integers but for memory. */
		if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1)
			goto done;
		r = s = NULL; /* now owned by es */
		n = i2d_ECDSA_SIG(es, &der);
		if (n <= 0)
			goto done;
		check = der;
		check_len = (size_t)n;
	} else if (alg == JWT_ALG_EDDSA) {
		if (sig_len != 64)
			return -1;
	} else {
		/* RSA signatures are exactly as long as the modulus. */
		if (EVP_PKEY_get_size(pkey) <= 0 || sig_len != (size_t)EVP_PKEY_get_size(pkey))
			return -1;
	}
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		goto done;
	if (EVP_DigestVerifyInit_ex(ctx, &pctx, jwt_alg_md(alg), NULL, NULL, pkey, NULL) == 1 &&
	    jwt_set_rsa_padding(pctx, alg) == 0 &&
	    EVP_DigestVerify(ctx, check, check_len, msg, msg_len) == 1)
		rc = 1;
	else
		rc = ossl_out_of_memory() ? JWT_ERR_NOMEM : 0;
done:
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	ERR_clear_error();
	return rc;
}

/* Decode one base64url part of the token; what names it in errors. Returns
 * 0, -1 or JWT_ERR_NOMEM. */
static int decode_part(const char *in, size_t in_len, const char *what, unsigned char **out,
                       size_t *out_len, char *errstr, size_t errstr_size)
{
	int r = jwt_base64url_decode(in, in_len, out, out_len);

	if (r == JWT_ERR_NOMEM)
		errstr_set(errstr, errstr_size, "out of memory while decoding the token %s", what);
	else if (r != 0)
		errstr_set(errstr, errstr_size, "token %s is not valid base64url", what);
	return r;
}

/* Parse one decoded part as a JSON object into *out; what names it in
 * errors. Returns 0, -1 or JWT_ERR_NOMEM. */
static int parse_object(const unsigned char *raw, size_t raw_len, const char *what, json_t **out,
                        char *errstr, size_t errstr_size)
{
	json_t *j;
	json_error_t jerr;

	*out = NULL;
	/* Any JSON value is decoded, so that a valid non-object is reported as
	 * such; jansson's own error text may quote the input, so it is not
	 * used. */
	j = json_loadb((const char *)raw, raw_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (j == NULL) {
		/* jansson 2.14's parser reports every refusal of the input in
		 * jerr, and fails without a word only when an allocation
		 * fails. (An allocation failure inside its lexer reads as bad
		 * JSON and is refused as such: that one cannot be told.) */
		if (jerr.text[0] == '\0' || json_error_code(&jerr) == json_error_out_of_memory) {
			errstr_set(errstr, errstr_size, "out of memory while reading the token %s",
			           what);
			return JWT_ERR_NOMEM;
		}
		if (json_error_code(&jerr) == json_error_duplicate_key)
			errstr_set(errstr, errstr_size, "token %s has a duplicate member", what);
		else
			errstr_set(errstr, errstr_size, "token %s is not valid JSON", what);
		return -1;
	}
	if (!json_is_object(j)) {
		errstr_set(errstr, errstr_size, "token %s is not a JSON object", what);
		json_decref(j);
		return -1;
	}
	*out = j;
	return 0;
}

/* A NumericDate: 1 and *out when present and a number, 0 when absent, -1
 * when of another type. Reals are rounded towards the stricter side
 * (round_up for nbf and iat, down for exp) and clamped to int64_t. */
static int get_numeric_date(const json_t *obj, const char *name, int round_up, int64_t *out)
{
	const json_t *j = json_object_get(obj, name);
	double d;

	if (j == NULL)
		return 0;
	if (json_is_integer(j)) {
		*out = (int64_t)json_integer_value(j);
		return 1;
	}
	if (!json_is_real(j))
		return -1;
	d = json_real_value(j);
	if (isnan(d))
		return -1;
	d = round_up ? ceil(d) : floor(d);
	if (d >= 9.2e18)
		*out = INT64_MAX;
	else if (d <= -9.2e18)
		*out = INT64_MIN;
	else
		*out = (int64_t)d;
	return 1;
}

/* One NumericDate claim into *out and *has (0 when absent); -1 with errstr
 * filled when it is not a number. */
static int time_claim(const json_t *pj, const char *name, int round_up, int64_t *out, int *has,
                      char *errstr, size_t errstr_size)
{
	int r = get_numeric_date(pj, name, round_up, out);

	if (r < 0) {
		errstr_set(errstr, errstr_size, "token claim %s is not a number", name);
		return -1;
	}
	*has = r;
	return 0;
}

/* a <= b + leeway, without overflow (leeway is 0 to 30). */
static int le_with_leeway(int64_t a, int64_t b, int64_t leeway)
{
	if (b > INT64_MAX - leeway)
		return 1;
	return a <= b + leeway;
}

/* 0 with *out strdup'd (or NULL when absent), -1 wrong type, -2 no memory. */
static int get_string_claim(const json_t *obj, const char *name, char **out)
{
	const json_t *j = json_object_get(obj, name);

	*out = NULL;
	if (j == NULL)
		return 0;
	if (!json_is_string(j))
		return -1;
	/* jansson refuses \u0000 unless asked, so the value is a C string. */
	*out = strdup(json_string_value(j));
	return *out == NULL ? -2 : 0;
}

/* SKeyProv values that mean "not authorized": false, 0, "false", "0", ""
 * and null. Anything else present counts as true. */
static int skeyprov_is_false(const json_t *j)
{
	if (json_is_false(j) || json_is_null(j))
		return 1;
	if (json_is_integer(j))
		return json_integer_value(j) == 0;
	if (json_is_real(j))
		return json_real_value(j) == 0.0;
	if (json_is_string(j)) {
		const char *s = json_string_value(j);
		return strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0 || s[0] == '\0';
	}
	return 0;
}

static int fill_claims(const json_t *pj, jwt_claims *c, char *errstr, size_t errstr_size)
{
	static const char *const names[] = {"iss", "client_id", "scope", "vsp_id"};
	char **slots[] = {&c->iss, &c->client_id, &c->scope, &c->vsp_id};
	const json_t *sk;

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		int r = get_string_claim(pj, names[i], slots[i]);
		if (r == -1) {
			errstr_set(errstr, errstr_size, "token claim %s is not a string", names[i]);
			return -1;
		}
		if (r == -2) {
			errstr_set(errstr, errstr_size, "out of memory while copying the claims");
			return JWT_ERR_NOMEM;
		}
	}
	sk = json_object_get(pj, "SKeyProv");
	if (sk != NULL) {
		c->has_skeyprov = 1;
		c->skeyprov_false = skeyprov_is_false(sk);
	}
	return 0;
}

/* The time checks, one claim each, so that jwt_verify() can run them at
 * the point of its fixed order where each claim is read. leeway is 0 to 30. */
static int check_exp(const jwt_claims *c, int64_t now_s, int64_t leeway, char *errstr,
                     size_t errstr_size)
{
	if (!c->has_exp) {
		errstr_set(errstr, errstr_size, "token has no exp claim");
		return -1;
	}
	if (!le_with_leeway(now_s, c->exp, leeway)) {
		errstr_set(errstr, errstr_size, "token has expired");
		return -1;
	}
	return 0;
}

/* nbf and iat: a time, when present, that must not be after now; why is
 * the sentence when it is. */
static int check_not_after_now(int has, int64_t when, int64_t now_s, int64_t leeway,
                               const char *why, char *errstr, size_t errstr_size)
{
	if (has && !le_with_leeway(when, now_s, leeway)) {
		errstr_set(errstr, errstr_size, "%s", why);
		return -1;
	}
	return 0;
}

static int check_nbf(const jwt_claims *c, int64_t now_s, int64_t leeway, char *errstr,
                     size_t errstr_size)
{
	return check_not_after_now(c->has_nbf, c->nbf, now_s, leeway,
	                           "token is not valid yet (nbf)", errstr, errstr_size);
}

static int check_iat(const jwt_claims *c, int64_t now_s, int64_t leeway, char *errstr,
                     size_t errstr_size)
{
	return check_not_after_now(c->has_iat, c->iat, now_s, leeway,
	                           "token was issued in the future (iat)", errstr, errstr_size);
}

static int64_t clamp_leeway(int64_t leeway_s)
{
	if (leeway_s < 0)
		return 0;
	return leeway_s > JWT_MAX_LEEWAY_S ? JWT_MAX_LEEWAY_S : leeway_s;
}

int jwt_check_times(const jwt_claims *claims, int64_t now_s, int64_t leeway_s, char *errstr,
                    size_t errstr_size)
{
	if (errstr != NULL && errstr_size > 0)
		errstr[0] = '\0';
	if (claims == NULL) {
		errstr_set(errstr, errstr_size, "jwt_check_times: missing argument");
		return -1;
	}
	leeway_s = clamp_leeway(leeway_s);
	if (check_exp(claims, now_s, leeway_s, errstr, errstr_size) != 0 ||
	    check_nbf(claims, now_s, leeway_s, errstr, errstr_size) != 0 ||
	    check_iat(claims, now_s, leeway_s, errstr, errstr_size) != 0)
		return -1;
	return 0;
}

/* jwt_verify() and, when now_s is NULL, jwt_verify_signature(). */
static int verify(const jwt_verifier *v, const char *token, const int64_t *now_s, int64_t leeway_s,
                  jwt_claims *claims, char *errstr, size_t errstr_size)
{
	const char *dot1, *dot2;
	size_t len, h_len, p_len, s_len, n_iss = 0;
	unsigned char *hdr = NULL, *pl = NULL, *sig = NULL;
	size_t hdr_len = 0, pl_len = 0, sig_len = 0;
	json_t *hj = NULL, *pj = NULL;
	const json_t *ja, *jk, *ji;
	const char *alg_s, *kid = NULL, *iss;
	const jwt_key *key = NULL;
	jwt_alg alg;
	jwt_claims c;
	int r, rc = -1;

	memset(&c, 0, sizeof c);
	if (claims != NULL)
		memset(claims, 0, sizeof *claims);
	if (errstr != NULL && errstr_size > 0)
		errstr[0] = '\0';
	if (v == NULL || claims == NULL) {
		errstr_set(errstr, errstr_size, "jwt_verify: missing argument");
		goto fail;
	}
	if (token == NULL || token[0] == '\0') {
		errstr_set(errstr, errstr_size, "there is no token");
		goto fail;
	}
	leeway_s = clamp_leeway(leeway_s);

	/* Size first: nothing else runs on an oversized token. */
	len = strnlen(token, v->max_token_bytes + 1);
	if (len > v->max_token_bytes) {
		errstr_set(errstr, errstr_size, "token is longer than %zu bytes",
		           v->max_token_bytes);
		goto fail;
	}
	dot1 = memchr(token, '.', len);
	dot2 = dot1 != NULL ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL) {
		errstr_set(errstr, errstr_size, "token is not three dot-separated parts");
		goto fail;
	}
	h_len = (size_t)(dot1 - token);
	p_len = (size_t)(dot2 - dot1 - 1);
	s_len = len - (size_t)(dot2 + 1 - token);
	if (h_len == 0 || p_len == 0 || s_len == 0) {
		errstr_set(errstr, errstr_size, "token has an empty part");
		goto fail;
	}
	/* All three parts are checked as base64url before any is read, so a
	 * malformed signature is reported as such whatever the header says. */
	r = decode_part(token, h_len, "header", &hdr, &hdr_len, errstr, errstr_size);
	if (r == 0)
		r = decode_part(dot1 + 1, p_len, "payload", &pl, &pl_len, errstr, errstr_size);
	if (r == 0)
		r = decode_part(dot2 + 1, s_len, "signature", &sig, &sig_len, errstr, errstr_size);
	if (r != 0) {
		rc = r;
		goto fail;
	}

	r = parse_object(hdr, hdr_len, "header", &hj, errstr, errstr_size);
	if (r != 0) {
		rc = r;
		goto fail;
	}
	ja = json_object_get(hj, "alg");
	if (!json_is_string(ja)) {
		errstr_set(errstr, errstr_size, "token header has no alg string");
		goto fail;
	}
	alg_s = json_string_value(ja);
	if (strcasecmp(alg_s, "none") == 0) {
		errstr_set(errstr, errstr_size, "algorithm none is not allowed");
		goto fail;
	}
	if (strncasecmp(alg_s, "HS", 2) == 0) {
		errstr_set(errstr, errstr_size, "HMAC algorithms are not allowed");
		goto fail;
	}
	if (jwt_alg_parse(alg_s, &alg) != 0) {
		errstr_set(errstr, errstr_size, "token algorithm is not supported");
		goto fail;
	}
	if ((v->allow_mask & (1u << alg)) == 0) {
		errstr_set(errstr, errstr_size, "token algorithm is not in the allow-list");
		goto fail;
	}
	jk = json_object_get(hj, "kid");
	if (jk != NULL) {
		if (!json_is_string(jk)) {
			errstr_set(errstr, errstr_size, "token header kid is not a string");
			goto fail;
		}
		kid = json_string_value(jk);
	}
	/* RFC 7515 section 4.1.11: extensions listed in "crit" must be
	 * understood; we understand none. */
	if (json_object_get(hj, "crit") != NULL) {
		errstr_set(errstr, errstr_size, "token header lists critical extensions");
		goto fail;
	}

	r = parse_object(pl, pl_len, "payload", &pj, errstr, errstr_size);
	if (r != 0) {
		rc = r;
		goto fail;
	}
	ji = json_object_get(pj, "iss");
	if (ji == NULL) {
		errstr_set(errstr, errstr_size, "token has no iss claim");
		goto fail;
	}
	if (!json_is_string(ji)) {
		errstr_set(errstr, errstr_size, "token claim iss is not a string");
		goto fail;
	}
	iss = json_string_value(ji);
	key = jwt_verifier_find(v, iss, kid, &n_iss);
	if (n_iss == 0) {
		errstr_set(errstr, errstr_size, "token issuer is not trusted");
		goto fail;
	}
	if (kid != NULL && key == NULL) {
		errstr_set(errstr, errstr_size, "token kid names no key trusted for its issuer");
		goto fail;
	}
	if (kid == NULL && n_iss != 1) {
		errstr_set(errstr, errstr_size, "token has no kid and its issuer has several keys");
		goto fail;
	}
	if (!jwt_key_fits_alg(key->cls, alg)) {
		errstr_set(errstr, errstr_size,
		           "the trusted key's type does not fit the algorithm");
		goto fail;
	}
	/* A key published for one algorithm (a JWK's "alg") verifies no
	 * other, even one of its type. */
	if (key->algs != 0 && (key->algs & (1u << alg)) == 0) {
		errstr_set(errstr, errstr_size, "the trusted key is not for the token's algorithm");
		goto fail;
	}
	r = verify_bytes(key->pkey, alg, (const unsigned char *)token, (size_t)(dot2 - token), sig,
	                 sig_len);
	if (r == JWT_ERR_NOMEM) {
		errstr_set(errstr, errstr_size, "out of memory while checking the token signature");
		rc = JWT_ERR_NOMEM;
		goto fail;
	}
	if (r == -1) {
		errstr_set(errstr, errstr_size,
		           "token signature has the wrong length for its algorithm");
		goto fail;
	}
	if (r != 1) {
		errstr_set(errstr, errstr_size, "token signature does not verify");
		goto fail;
	}

	/* Only now is the payload trusted enough to be read as claims. */
	if (time_claim(pj, "exp", 0, &c.exp, &c.has_exp, errstr, errstr_size) != 0)
		goto fail;
	if (!c.has_exp) {
		errstr_set(errstr, errstr_size, "token has no exp claim");
		goto fail;
	}
	if (now_s != NULL && check_exp(&c, *now_s, leeway_s, errstr, errstr_size) != 0)
		goto fail;
	if (time_claim(pj, "nbf", 1, &c.nbf, &c.has_nbf, errstr, errstr_size) != 0 ||
	    (now_s != NULL && check_nbf(&c, *now_s, leeway_s, errstr, errstr_size) != 0))
		goto fail;
	if (time_claim(pj, "iat", 1, &c.iat, &c.has_iat, errstr, errstr_size) != 0 ||
	    (now_s != NULL && check_iat(&c, *now_s, leeway_s, errstr, errstr_size) != 0))
		goto fail;
	r = fill_claims(pj, &c, errstr, errstr_size);
	if (r != 0) {
		rc = r;
		goto fail;
	}
	*claims = c;
	memset(&c, 0, sizeof c); /* now owned by the caller */
	rc = 0;
fail:
	jwt_claims_free(&c);
	json_decref(hj);
	json_decref(pj);
	free(hdr);
	free(pl);
	free(sig);
	return rc;
}

int jwt_verify(const jwt_verifier *v, const char *token, int64_t now_s, int64_t leeway_s,
               jwt_claims *claims, char *errstr, size_t errstr_size)
{
	return verify(v, token, &now_s, leeway_s, claims, errstr, errstr_size);
}

int jwt_verify_signature(const jwt_verifier *v, const char *token, jwt_claims *claims, char *errstr,
                         size_t errstr_size)
{
	return verify(v, token, NULL, 0, claims, errstr, errstr_size);
}

/* Copy a JSON string into out; -1 when it does not fit. */
static int copy_fit(const char *s, char *out, size_t out_size)
{
	size_t n = strlen(s);

	if (out == NULL || n >= out_size)
		return -1;
	memcpy(out, s, n + 1);
	return 0;
}

int jwt_peek(const char *token, size_t max_token_bytes, char *iss, size_t iss_size, char *kid,
             size_t kid_size)
{
	const char *dot1, *dot2;
	unsigned char *hdr = NULL, *pl = NULL;
	size_t len, hdr_len = 0, pl_len = 0;
	json_t *hj = NULL, *pj = NULL;
	const json_t *jk, *ji;
	int rc = -1;

	if (iss != NULL && iss_size > 0)
		iss[0] = '\0';
	if (kid != NULL && kid_size > 0)
		kid[0] = '\0';
	if (token == NULL)
		return -1;
	len = strnlen(token, max_token_bytes + 1);
	if (len > max_token_bytes)
		return -1;
	dot1 = memchr(token, '.', len);
	dot2 = dot1 != NULL ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (dot2 == NULL)
		return -1;
	if (jwt_base64url_decode(token, (size_t)(dot1 - token), &hdr, &hdr_len) != 0 ||
	    jwt_base64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &pl, &pl_len) != 0)
		goto done;
	if (parse_object(hdr, hdr_len, "header", &hj, NULL, 0) != 0 ||
	    parse_object(pl, pl_len, "payload", &pj, NULL, 0) != 0)
		goto done;
	ji = json_object_get(pj, "iss");
	jk = json_object_get(hj, "kid");
	if (!json_is_string(ji) || (jk != NULL && !json_is_string(jk)))
		goto done;
	if (copy_fit(json_string_value(ji), iss, iss_size) != 0 ||
	    (jk != NULL && copy_fit(json_string_value(jk), kid, kid_size) != 0))
		goto done;
	rc = 0;
done:
	json_decref(hj);
	json_decref(pj);
	free(hdr);
	free(pl);
	return rc;
}

void jwt_claims_free(jwt_claims *c)
{
	if (c == NULL)
		return;
	free(c->iss);
	free(c->client_id);
	free(c->scope);
	free(c->vsp_id);
	memset(c, 0, sizeof *c);
}
