/*
 * jwks: JWK Sets (RFC 7517, key types of RFC 7518 section 6 and RFC 8037)
 * into PEM public keys, with jansson (duplicate members refused) and
 * OpenSSL 3 (EVP_PKEY_fromdata, then EVP_PKEY_public_check so that an EC
 * point off its curve or an RSA modulus that is not one is refused before
 * anything trusts it). Each key is built from its own members only: the
 * certificate members (x5c, x5t, x5u) are not read, since a key set fetched
 * over verified TLS from the issuer's own URI is what vouches for the keys.
 *
 * The output is PEM so that the verifier loads a JWKS key exactly as it
 * loads a configured PEM file, through the same strict classification, and
 * so that two sets are compared as text.
 */
#include "jwks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "errstr.h"
#include "jwt.h"

#define JWKS_MIN_RSA_BITS 2048
/* A larger modulus only makes every verification slower; none is issued. */
#define JWKS_MAX_RSA_BITS 8192
#define JWKS_MAX_KID      256

/* What became of one key. */
typedef enum { KEY_OK = 0, KEY_SKIP, KEY_BAD, KEY_NOMEM } key_verdict;

void jwks_set_free(jwks_set *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free(s->keys[i].kid);
		free(s->keys[i].pem);
	}
	free(s->keys);
	s->keys = NULL;
	s->n = 0;
}

/* ---- one member ---- */

/* A base64url member of the key (RFC 7518: unpadded, canonical). KEY_OK with
 * *out malloc'd, KEY_BAD with why filled, KEY_NOMEM. */
static key_verdict member_bytes(const json_t *jwk, const char *name, unsigned char **out,
                                size_t *out_len, char *why, size_t why_size)
{
	const json_t *j = json_object_get(jwk, name);
	const char *s;
	int r;

	*out = NULL;
	*out_len = 0;
	if (j == NULL) {
		errstr_set(why, why_size, "member %s is missing", name);
		return KEY_BAD;
	}
	if (!json_is_string(j)) {
		errstr_set(why, why_size, "member %s is not a string", name);
		return KEY_BAD;
	}
	s = json_string_value(j);
	r = jwt_base64url_decode(s, json_string_length(j), out, out_len);
	if (r == JWT_ERR_NOMEM)
		return KEY_NOMEM;
	if (r != 0 || *out_len == 0) {
		free(*out);
		*out = NULL;
		errstr_set(why, why_size, "member %s is not base64url", name);
		return KEY_BAD;
	}
	return KEY_OK;
}

/* An optional string member: 1 present (*out set), 0 absent, -1 not a
 * string. */
static int member_string(const json_t *jwk, const char *name, const char **out)
{
	const json_t *j = json_object_get(jwk, name);

	*out = NULL;
	if (j == NULL)
		return 0;
	if (!json_is_string(j))
		return -1;
	*out = json_string_value(j);
	return 1;
}

/* ---- building keys ---- */

/* The key OpenSSL built, checked: KEY_OK, KEY_BAD (not a valid public key)
 * or KEY_NOMEM. */
static key_verdict check_public(EVP_PKEY *pkey, const char *what, char *why, size_t why_size)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	int ok;

	if (ctx == NULL)
		return KEY_NOMEM;
	ok = EVP_PKEY_public_check(ctx) == 1;
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	if (!ok) {
		errstr_set(why, why_size, "not a valid %s public key", what);
		return KEY_BAD;
	}
	return KEY_OK;
}

static key_verdict from_params(const char *type, OSSL_PARAM *params, EVP_PKEY **out)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	key_verdict v = KEY_BAD;

	if (ctx == NULL)
		return KEY_NOMEM;
	if (EVP_PKEY_fromdata_init(ctx) == 1 &&
	    EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) == 1)
		v = KEY_OK;
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return v;
}

static key_verdict build_rsa(const json_t *jwk, EVP_PKEY **out, char *why, size_t why_size)
{
	unsigned char *n = NULL, *e = NULL;
	size_t n_len = 0, e_len = 0;
	BIGNUM *bn_n = NULL, *bn_e = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	key_verdict v;
	int bits;

	v = member_bytes(jwk, "n", &n, &n_len, why, why_size);
	if (v == KEY_OK)
		v = member_bytes(jwk, "e", &e, &e_len, why, why_size);
	if (v != KEY_OK)
		goto done;
	/* Bounded before anything is computed with it. */
	if (n_len > JWKS_MAX_RSA_BITS / 8 + 1 || e_len > 8) {
		errstr_set(why, why_size,
		           "RSA key is larger than %d bits or has an oversized exponent",
		           JWKS_MAX_RSA_BITS);
		v = KEY_SKIP;
		goto done;
	}
	v = KEY_NOMEM;
	bn_n = BN_bin2bn(n, (int)n_len, NULL);
	bn_e = BN_bin2bn(e, (int)e_len, NULL);
	bld = OSSL_PARAM_BLD_new();
	if (bn_n == NULL || bn_e == NULL || bld == NULL ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) != 1)
		goto done;
	bits = BN_num_bits(bn_n);
	if (bits < JWKS_MIN_RSA_BITS) {
		errstr_set(why, why_size, "RSA key of %d bits is under %d", bits,
		           JWKS_MIN_RSA_BITS);
		v = KEY_SKIP;
		goto done;
	}
	if (bits > JWKS_MAX_RSA_BITS) {
		errstr_set(why, why_size, "RSA key of %d bits is over %d", bits, JWKS_MAX_RSA_BITS);
		v = KEY_SKIP;
		goto done;
	}
	params = OSSL_PARAM_BLD_to_param(bld);
	if (params == NULL)
		goto done;
	v = from_params("RSA", params, out);
	if (v == KEY_BAD)
		errstr_set(why, why_size, "not a valid RSA public key");
	if (v == KEY_OK)
		v = check_public(*out, "RSA", why, why_size);
done:
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn_n);
	BN_free(bn_e);
	free(n);
	free(e);
	return v;
}

static key_verdict build_ec(const json_t *jwk, EVP_PKEY **out, char *why, size_t why_size)
{
	const char *crv = NULL, *group;
	unsigned char *x = NULL, *y = NULL, *point = NULL;
	size_t x_len = 0, y_len = 0, size;
	key_verdict v;

	if (member_string(jwk, "crv", &crv) != 1) {
		errstr_set(why, why_size, "member crv is missing or not a string");
		return KEY_BAD;
	}
	if (strcmp(crv, "P-256") == 0) {
		group = "prime256v1";
		size = 32;
	} else if (strcmp(crv, "P-384") == 0) {
		group = "secp384r1";
		size = 48;
	} else {
		errstr_set(why, why_size, "EC curve %.40s is not supported (P-256, P-384)", crv);
		return KEY_SKIP;
	}
	v = member_bytes(jwk, "x", &x, &x_len, why, why_size);
	if (v == KEY_OK)
		v = member_bytes(jwk, "y", &y, &y_len, why, why_size);
	if (v != KEY_OK)
		goto done;
	/* RFC 7518 section 6.2.1.2: the full length of a coordinate, always. */
	if (x_len != size || y_len != size) {
		errstr_set(why, why_size, "coordinates of a %s key must be %zu bytes each", crv,
		           size);
		v = KEY_BAD;
		goto done;
	}
	point = malloc(1 + 2 * size);
	if (point == NULL) {
		v = KEY_NOMEM;
		goto done;
	}
	point[0] = 0x04; /* uncompressed */
	memcpy(point + 1, x, size);
	memcpy(point + 1 + size, y, size);
	{
		OSSL_PARAM params[] = {
		    OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0),
		    OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * size),
		    OSSL_PARAM_construct_end()};
		v = from_params("EC", params, out);
	}
	if (v == KEY_BAD)
		errstr_set(why, why_size, "the point is not on the %s curve", crv);
	if (v == KEY_OK)
		v = check_public(*out, "EC", why, why_size);
done:
	free(point);
	free(x);
	free(y);
	return v;
}

static key_verdict build_okp(const json_t *jwk, EVP_PKEY **out, char *why, size_t why_size)
{
	const char *crv = NULL;
	unsigned char *x = NULL;
	size_t x_len = 0;
	key_verdict v;

	if (member_string(jwk, "crv", &crv) != 1) {
		errstr_set(why, why_size, "member crv is missing or not a string");
		return KEY_BAD;
	}
	if (strcmp(crv, "Ed25519") != 0) {
		errstr_set(why, why_size, "OKP curve %.40s is not supported (Ed25519)", crv);
		return KEY_SKIP;
	}
	v = member_bytes(jwk, "x", &x, &x_len, why, why_size);
	if (v != KEY_OK)
		return v;
	if (x_len != 32) {
		errstr_set(why, why_size, "an Ed25519 key must be 32 bytes");
		free(x);
		return KEY_BAD;
	}
	*out = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, x_len);
	free(x);
	ERR_clear_error();
	return *out != NULL ? KEY_OK : KEY_NOMEM;
}

/* Whether an algorithm is one a key of this kty (and EC curve) can sign
 * with: a JWK whose "alg" does not fit its own type is skipped. */
static int alg_fits(jwt_alg a, const char *kty, const char *crv)
{
	if (strcmp(kty, "RSA") == 0)
		return a == JWT_ALG_RS256 || a == JWT_ALG_PS256;
	if (strcmp(kty, "OKP") == 0)
		return a == JWT_ALG_EDDSA;
	if (strcmp(kty, "EC") == 0 && crv != NULL)
		return (a == JWT_ALG_ES256 && strcmp(crv, "P-256") == 0) ||
		       (a == JWT_ALG_ES384 && strcmp(crv, "P-384") == 0);
	return 0;
}

/* What the key is for (use, key_ops, alg): KEY_OK with *algs, KEY_SKIP or
 * KEY_BAD with why filled. */
static key_verdict key_purpose(const json_t *jwk, const char *kty, unsigned *algs, char *why,
                               size_t why_size)
{
	const char *use = NULL, *alg = NULL, *crv = NULL;
	const json_t *ops = json_object_get(jwk, "key_ops");
	jwt_alg a;

	*algs = 0;
	if (member_string(jwk, "use", &use) < 0) {
		errstr_set(why, why_size, "member use is not a string");
		return KEY_BAD;
	}
	if (member_string(jwk, "alg", &alg) < 0) {
		errstr_set(why, why_size, "member alg is not a string");
		return KEY_BAD;
	}
	if (ops != NULL) {
		size_t i;
		const json_t *op;
		int verify = 0;

		if (!json_is_array(ops)) {
			errstr_set(why, why_size, "member key_ops is not an array");
			return KEY_BAD;
		}
		json_array_foreach(ops, i, op)
		{
			if (!json_is_string(op)) {
				errstr_set(why, why_size, "member key_ops holds a non-string");
				return KEY_BAD;
			}
			verify |= strcmp(json_string_value(op), "verify") == 0;
		}
		if (!verify) {
			errstr_set(why, why_size, "key_ops does not include verify");
			return KEY_SKIP;
		}
	}
	if (use != NULL && strcmp(use, "sig") != 0) {
		errstr_set(why, why_size, "use %.20s: not a signature key", use);
		return KEY_SKIP;
	}
	if (alg == NULL)
		return KEY_OK;
	if (strncmp(alg, "HS", 2) == 0 || strcmp(alg, "none") == 0 || jwt_alg_parse(alg, &a) != 0) {
		errstr_set(why, why_size, "algorithm %.20s is not supported", alg);
		return KEY_SKIP;
	}
	(void)member_string(jwk, "crv", &crv);
	if (!alg_fits(a, kty, crv)) {
		errstr_set(why, why_size, "algorithm %.20s does not fit the key type %.10s", alg,
		           kty);
		return KEY_SKIP;
	}
	*algs = 1u << a;
	return KEY_OK;
}

/* One entry of "keys": KEY_OK with *key filled, KEY_SKIP / KEY_BAD with why,
 * KEY_NOMEM. */
static key_verdict read_key(const json_t *jwk, jwks_key *key, char *why, size_t why_size)
{
	const char *kty = NULL, *kid = NULL;
	EVP_PKEY *pkey = NULL;
	unsigned algs = 0;
	key_verdict v;
	int r;

	memset(key, 0, sizeof *key);
	if (!json_is_object(jwk)) {
		errstr_set(why, why_size, "not a JSON object");
		return KEY_BAD;
	}
	r = member_string(jwk, "kid", &kid);
	if (r < 0 || (r == 1 && (kid[0] == '\0' || strlen(kid) > JWKS_MAX_KID))) {
		errstr_set(why, why_size, "member kid is not a string of 1 to %d bytes",
		           JWKS_MAX_KID);
		return KEY_BAD;
	}
	if (member_string(jwk, "kty", &kty) != 1) {
		errstr_set(why, why_size, "member kty is missing or not a string");
		return KEY_BAD;
	}
	if (strcmp(kty, "oct") == 0) {
		errstr_set(why, why_size, "a symmetric (oct) key is never trusted");
		return KEY_SKIP;
	}
	if (strcmp(kty, "RSA") != 0 && strcmp(kty, "EC") != 0 && strcmp(kty, "OKP") != 0) {
		errstr_set(why, why_size, "key type %.20s is not supported (RSA, EC, OKP)", kty);
		return KEY_SKIP;
	}
	v = key_purpose(jwk, kty, &algs, why, why_size);
	if (v != KEY_OK)
		return v;
	if (strcmp(kty, "RSA") == 0)
		v = build_rsa(jwk, &pkey, why, why_size);
	else if (strcmp(kty, "EC") == 0)
		v = build_ec(jwk, &pkey, why, why_size);
	else
		v = build_okp(jwk, &pkey, why, why_size);
	if (v != KEY_OK)
		goto done;
	v = KEY_NOMEM;
	key->pem = jwt_key_pem(pkey, JWT_PEM_PUBLIC, NULL);
	key->kid = kid != NULL ? strdup(kid) : NULL;
	if (key->pem == NULL || (kid != NULL && key->kid == NULL))
		goto done;
	key->algs = algs;
	v = KEY_OK;
done:
	if (v != KEY_OK) {
		free(key->pem);
		free(key->kid);
		memset(key, 0, sizeof *key);
	}
	EVP_PKEY_free(pkey);
	return v;
}

/* The kids of the usable keys must tell them apart, as the verifier needs:
 * unique, and present on each when there are several. */
static int check_kids(const jwks_set *s, char *errstr, size_t errstr_size)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->keys[i].kid == NULL) {
			if (s->n > 1) {
				errstr_set(errstr, errstr_size,
				           "the set has several usable keys, so each needs a kid");
				return -1;
			}
			continue;
		}
		for (size_t j = i + 1; j < s->n; j++)
			if (s->keys[j].kid != NULL && strcmp(s->keys[i].kid, s->keys[j].kid) == 0) {
				errstr_set(errstr, errstr_size,
				           "two usable keys share the kid %.64s", s->keys[i].kid);
				return -1;
			}
	}
	return 0;
}

int jwks_parse(const char *doc, size_t len, jwks_set *out, jwks_skip_fn skip, void *ctx,
               char *errstr, size_t errstr_size)
{
	json_t *root = NULL;
	const json_t *keys, *jwk;
	json_error_t jerr;
	jwks_set set = {0};
	size_t i, skipped = 0;
	char first_skip[200] = "";
	int rc = -1;

	if (out != NULL)
		memset(out, 0, sizeof *out);
	if (doc == NULL || out == NULL) {
		errstr_set(errstr, errstr_size, "jwks_parse: missing argument");
		return -1;
	}
	if (len > JWKS_MAX_BYTES) {
		errstr_set(errstr, errstr_size, "the document is larger than %d bytes",
		           JWKS_MAX_BYTES);
		return -1;
	}
	root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		/* jansson's text may quote the document: position only. */
		if (json_error_code(&jerr) == json_error_duplicate_key)
			errstr_set(errstr, errstr_size,
			           "the document has a duplicate member (line %d)", jerr.line);
		else
			errstr_set(errstr, errstr_size,
			           "the document is not valid JSON (line %d, column %d)", jerr.line,
			           jerr.column);
		goto done;
	}
	keys = json_object_get(root, "keys");
	if (!json_is_array(keys)) {
		errstr_set(errstr, errstr_size, "the document has no \"keys\" array");
		goto done;
	}
	if (json_array_size(keys) > JWKS_MAX_KEYS) {
		errstr_set(errstr, errstr_size, "the document has more than %d keys",
		           JWKS_MAX_KEYS);
		goto done;
	}
	set.keys = calloc(json_array_size(keys) + 1, sizeof *set.keys);
	if (set.keys == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto done;
	}
	json_array_foreach(keys, i, jwk)
	{
		char why[160] = "";
		const char *kid = NULL;
		key_verdict v = read_key(jwk, &set.keys[set.n], why, sizeof why);

		if (json_is_object(jwk) && member_string(jwk, "kid", &kid) != 1)
			kid = NULL;
		if (v == KEY_NOMEM) {
			errstr_set(errstr, errstr_size, "out of memory");
			goto done;
		}
		if (v == KEY_BAD) {
			if (kid != NULL)
				errstr_set(errstr, errstr_size, "key %zu (kid %.64s): %s", i + 1,
				           kid, why);
			else
				errstr_set(errstr, errstr_size, "key %zu: %s", i + 1, why);
			goto done;
		}
		if (v == KEY_SKIP) {
			if (skipped++ == 0)
				errstr_set(first_skip, sizeof first_skip, "key %zu: %s", i + 1,
				           why);
			if (skip != NULL)
				skip(ctx, i, kid, why);
			continue;
		}
		set.n++;
	}
	if (set.n == 0 && skipped > 0) {
		errstr_set(errstr, errstr_size,
		           "no key of the document is usable (%zu skipped; %s)", skipped,
		           first_skip);
		goto done;
	}
	if (check_kids(&set, errstr, errstr_size) != 0)
		goto done;
	*out = set;
	memset(&set, 0, sizeof set); /* now the caller's */
	rc = 0;
done:
	jwks_set_free(&set);
	json_decref(root);
	return rc;
}

int jwks_set_copy(jwks_set *dst, const jwks_set *src)
{
	jwks_set s = {0};

	memset(dst, 0, sizeof *dst);
	if (src == NULL || src->n == 0)
		return 0;
	s.keys = calloc(src->n, sizeof *s.keys);
	if (s.keys == NULL)
		return -1;
	for (; s.n < src->n; s.n++) {
		const jwks_key *k = &src->keys[s.n];
		jwks_key *c = &s.keys[s.n];

		c->pem = strdup(k->pem);
		c->kid = k->kid != NULL ? strdup(k->kid) : NULL;
		c->algs = k->algs;
		if (c->pem == NULL || (k->kid != NULL && c->kid == NULL)) {
			s.n++; /* so that the partial key is freed too */
			jwks_set_free(&s);
			return -1;
		}
	}
	*dst = s;
	return 0;
}

static int same_key(const jwks_key *a, const jwks_key *b)
{
	if ((a->kid == NULL) != (b->kid == NULL))
		return 0;
	if (a->kid != NULL && strcmp(a->kid, b->kid) != 0)
		return 0;
	return a->algs == b->algs && strcmp(a->pem, b->pem) == 0;
}

int jwks_set_equal(const jwks_set *a, const jwks_set *b)
{
	if (a->n != b->n)
		return 0;
	/* Kids are unique within a set, so a match each way is the same set;
	 * sets are small (JWKS_MAX_KEYS), quadratic is fine. */
	for (size_t i = 0; i < a->n; i++) {
		int found = 0;
		for (size_t j = 0; j < b->n && !found; j++)
			found = same_key(&a->keys[i], &b->keys[j]);
		if (!found)
			return 0;
	}
	return 1;
}
