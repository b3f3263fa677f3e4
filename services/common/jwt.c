/*
 * jwt: compact JWS access tokens (RFC 7515, RFC 7519), signed for development
 * and tests and verified by the KM-S, on OpenSSL 3 (EVP_DigestSign/Verify,
 * keys from PEM) and jansson (json_loadb with JSON_REJECT_DUPLICATES). We do
 * not use libjwt: the Debian package (1.10) cannot reject duplicate JSON
 * members, does not bind the key type to the algorithm strictly enough to
 * defeat algorithm confusion, and cannot pick a key by kid. Verification runs
 * its checks in a fixed order (size, form, base64url, header, algorithm,
 * payload, issuer, key, key type, signature, time claims) and stops at the
 * first failure with one sentence that never quotes the token, since tokens
 * are credentials and error texts end up in Results and logs. The time
 * claims are the only checks that depend on when a token is used, so they
 * can also run apart (jwt_verify_signature() then jwt_check_times()) for a
 * caller that keeps verified claims. An allocation failure is reported apart
 * (JWT_ERR_NOMEM) wherever it can be told from a bad token, so that it is
 * never mistaken for a refusal.
 */
#include "jwt.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "errstr.h"
#include "file.h"

#define JWT_DEFAULT_MAX_TOKEN_BYTES 8192
/* A sane upper bound for a configured limit: a token rides in one Kafka
 * message, and the bound keeps the size arithmetic far from overflow. */
#define JWT_MAX_TOKEN_LIMIT     (1024 * 1024)
#define JWT_MIN_RSA_BITS        2048
#define JWT_MAX_KEYS_FILE_BYTES (1024 * 1024)
#define JWT_MAX_PEM_FILE_BYTES  (64 * 1024)

/* What a key can be used for; anything else is refused when it is loaded. */
typedef enum { KEY_OTHER = 0, KEY_P256, KEY_P384, KEY_RSA, KEY_ED25519 } key_class;

typedef struct {
	char *iss;
	char *kid; /* NULL: the issuer's only key */
	EVP_PKEY *pkey;
	/* Classified once, when loaded: asking OpenSSL again at every token
	 * costs time, and a failed lookup (out of memory) would refuse a good
	 * token. */
	key_class cls;
	unsigned algs; /* 0: any algorithm that fits cls; else only these */
} jwt_key;

struct jwt_verifier {
	unsigned allow_mask;
	size_t max_token_bytes;
	jwt_key *keys;
	size_t n_keys, cap_keys;
};

static const char *const alg_names[JWT_ALG__COUNT] = {"ES256", "ES384", "RS256", "PS256", "EdDSA"};

/* OpenSSL's error queue becomes text here, once, and is emptied so that the
 * next call on this thread does not see stale errors. */
static void set_ossl_err(char *errstr, size_t errstr_size, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char buf[256];

	if (e != 0) {
		ERR_error_string_n(e, buf, sizeof buf);
		errstr_set(errstr, errstr_size, "%s (%s)", what, buf);
	} else {
		errstr_set(errstr, errstr_size, "%s", what);
	}
	ERR_clear_error();
}

const char *jwt_alg_name(jwt_alg a)
{
	if ((unsigned)a >= JWT_ALG__COUNT)
		return "unknown";
	return alg_names[a];
}

int jwt_alg_parse(const char *name, jwt_alg *out)
{
	if (name == NULL || out == NULL)
		return -1;
	for (unsigned i = 0; i < JWT_ALG__COUNT; i++) {
		/* Case-sensitive, as RFC 7515 says of "alg" values. */
		if (strcmp(name, alg_names[i]) == 0) {
			*out = (jwt_alg)i;
			return 0;
		}
	}
	return -1;
}

/* ---- base64url (RFC 4648 section 5, without padding) ---- */

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

char *jwt_base64url_encode(const void *data, size_t len)
{
	const unsigned char *in = data;
	size_t out_len, o = 0, i = 0;
	char *out;

	if (data == NULL && len != 0)
		return NULL;
	if (len > (SIZE_MAX / 4 - 1) * 3)
		return NULL;
	out_len = len / 3 * 4 + (len % 3 == 0 ? 0 : len % 3 + 1);
	out = malloc(out_len + 1);
	if (out == NULL)
		return NULL;
	for (; i + 3 <= len; i += 3) {
		uint32_t w = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64url_alphabet[w >> 18 & 63];
		out[o++] = b64url_alphabet[w >> 12 & 63];
		out[o++] = b64url_alphabet[w >> 6 & 63];
		out[o++] = b64url_alphabet[w & 63];
	}
	if (len - i == 1) {
		uint32_t w = (uint32_t)in[i] << 16;
		out[o++] = b64url_alphabet[w >> 18 & 63];
		out[o++] = b64url_alphabet[w >> 12 & 63];
	} else if (len - i == 2) {
		uint32_t w = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = b64url_alphabet[w >> 18 & 63];
		out[o++] = b64url_alphabet[w >> 12 & 63];
		out[o++] = b64url_alphabet[w >> 6 & 63];
	}
	out[o] = '\0';
	return out;
}

int jwt_base64url_decode(const char *in, size_t in_len, unsigned char **out, size_t *out_len)
{
	unsigned char *buf;
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t n, o = 0;

	if (out == NULL || out_len == NULL)
		return -1;
	*out = NULL;
	*out_len = 0;
	if (in == NULL && in_len != 0)
		return -1;
	/* 4n+1 characters would leave 6 bits, not a whole byte. */
	if (in_len % 4 == 1)
		return -1;
	n = in_len / 4 * 3 + (in_len % 4 == 0 ? 0 : in_len % 4 - 1);
	buf = malloc(n == 0 ? 1 : n);
	if (buf == NULL)
		return JWT_ERR_NOMEM;
	for (size_t i = 0; i < in_len; i++) {
		int v = b64url_value((unsigned char)in[i]);
		if (v < 0)
			goto fail;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* Canonical form: the bits left over after the last whole byte are
	 * zero, so that each byte string has exactly one encoding. */
	if (acc != 0)
		goto fail;
	*out = buf;
	*out_len = o;
	return 0;
fail:
	free(buf);
	return -1;
}

/* ---- keys ---- */

static key_class classify_key(EVP_PKEY *pkey)
{
	if (EVP_PKEY_is_a(pkey, "EC")) {
		char group[80];
		size_t glen = 0;
		/* Keys with explicit curve parameters have no group name and
		 * are refused: a named curve is the only kind we trust. */
		if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
		                                   sizeof group, &glen) != 1) {
			ERR_clear_error();
			return KEY_OTHER;
		}
		if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
			return KEY_P256;
		if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
			return KEY_P384;
		return KEY_OTHER;
	}
	/* "RSA" only: RSASSA-PSS-restricted keys are not supported. */
	if (EVP_PKEY_is_a(pkey, "RSA"))
		return EVP_PKEY_get_bits(pkey) >= JWT_MIN_RSA_BITS ? KEY_RSA : KEY_OTHER;
	if (EVP_PKEY_is_a(pkey, "ED25519"))
		return KEY_ED25519;
	return KEY_OTHER;
}

/* The one key class each algorithm accepts: this binding is what stops an
 * attacker from choosing how our key is used. */
static int key_fits_alg(key_class k, jwt_alg alg)
{
	switch (alg) {
	case JWT_ALG_ES256:
		return k == KEY_P256;
	case JWT_ALG_ES384:
		return k == KEY_P384;
	case JWT_ALG_RS256:
	case JWT_ALG_PS256:
		return k == KEY_RSA;
	case JWT_ALG_EDDSA:
		return k == KEY_ED25519;
	case JWT_ALG__COUNT:
		break;
	}
	return 0;
}

static const char *alg_md(jwt_alg alg)
{
	switch (alg) {
	case JWT_ALG_ES384:
		return "SHA384";
	case JWT_ALG_EDDSA:
		return NULL; /* Ed25519 hashes internally */
	default:
		return "SHA256";
	}
}

/* Raw r||s length of an ECDSA signature (RFC 7518 section 3.4), 0 for others. */
static size_t ec_sig_len(jwt_alg alg)
{
	if (alg == JWT_ALG_ES256)
		return 64;
	if (alg == JWT_ALG_ES384)
		return 96;
	return 0;
}

static int set_rsa_padding(EVP_PKEY_CTX *pctx, jwt_alg alg)
{
	if (alg == JWT_ALG_RS256)
		return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1 ? 0 : -1;
	if (alg == JWT_ALG_PS256) {
		/* RFC 7518 section 3.5: MGF1 with SHA-256, salt as long as the
		 * digest. On verification, the same settings make OpenSSL
		 * require exactly that salt length. */
		if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1)
			return -1;
		if (EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1)
			return -1;
		if (EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, "SHA256", NULL) != 1)
			return -1;
	}
	return 0;
}

/* OpenSSL does not prompt for a passphrase when this callback says "none";
 * an encrypted key then simply fails to load. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* ---- signing ---- */

/* Sign msg; *sig is malloc'd, raw r||s for ECDSA. */
static int sign_bytes(EVP_PKEY *pkey, jwt_alg alg, const unsigned char *msg, size_t msg_len,
                      unsigned char **sig, size_t *sig_len, char *errstr, size_t errstr_size)
{
	EVP_MD_CTX *ctx = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	unsigned char *der = NULL, *raw = NULL;
	ECDSA_SIG *es = NULL;
	size_t der_len = 0;
	int rc = -1;

	ctx = EVP_MD_CTX_new();
	if (ctx == NULL) {
		set_ossl_err(errstr, errstr_size, "cannot allocate a digest context");
		goto fail;
	}
	if (EVP_DigestSignInit_ex(ctx, &pctx, alg_md(alg), NULL, NULL, pkey, NULL) != 1 ||
	    set_rsa_padding(pctx, alg) != 0) {
		set_ossl_err(errstr, errstr_size, "cannot set up signing");
		goto fail;
	}
	if (EVP_DigestSign(ctx, NULL, &der_len, msg, msg_len) != 1) {
		set_ossl_err(errstr, errstr_size, "cannot size the signature");
		goto fail;
	}
	der = malloc(der_len == 0 ? 1 : der_len);
	if (der == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto fail;
	}
	if (EVP_DigestSign(ctx, der, &der_len, msg, msg_len) != 1) {
		set_ossl_err(errstr, errstr_size, "signing failed");
		goto fail;
	}
	if (ec_sig_len(alg) != 0) {
		/* JWS carries ECDSA signatures as fixed-size r||s, not DER. */
		size_t half = ec_sig_len(alg) / 2;
		const unsigned char *p = der;
		const BIGNUM *r = NULL, *s = NULL;

		es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
		if (es == NULL) {
			set_ossl_err(errstr, errstr_size, "cannot decode the ECDSA signature");
			goto fail;
		}
		ECDSA_SIG_get0(es, &r, &s);
		raw = malloc(2 * half);
		if (raw == NULL) {
			errstr_set(errstr, errstr_size, "out of memory");
			goto fail;
		}
		if (BN_bn2binpad(r, raw, (int)half) != (int)half ||
		    BN_bn2binpad(s, raw + half, (int)half) != (int)half) {
			set_ossl_err(errstr, errstr_size, "ECDSA signature does not fit its size");
			goto fail;
		}
		*sig = raw;
		*sig_len = 2 * half;
		raw = NULL;
	} else {
		*sig = der;
		*sig_len = der_len;
		der = NULL;
	}
	rc = 0;
fail:
	ECDSA_SIG_free(es);
	free(raw);
	free(der);
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return rc;
}

/* A private key read once, for many signatures: OpenSSL 3 reads a PEM key
 * through its decoder framework, which costs far more than an ECDSA
 * signature. */
struct jwt_signer {
	EVP_PKEY *pkey;
	key_class cls;
};

jwt_signer *jwt_signer_new(const char *key_pem, char *errstr, size_t errstr_size)
{
	jwt_signer *s;
	BIO *bio;

	if (key_pem == NULL) {
		errstr_set(errstr, errstr_size, "jwt_sign: missing key");
		return NULL;
	}
	s = calloc(1, sizeof *s);
	if (s == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		return NULL;
	}
	bio = BIO_new_mem_buf(key_pem, -1);
	if (bio == NULL) {
		set_ossl_err(errstr, errstr_size, "cannot allocate a BIO");
		free(s);
		return NULL;
	}
	s->pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	if (s->pkey == NULL) {
		set_ossl_err(errstr, errstr_size, "cannot read the private key");
		free(s);
		ERR_clear_error();
		return NULL;
	}
	s->cls = classify_key(s->pkey);
	return s;
}

void jwt_signer_destroy(jwt_signer *s)
{
	if (s == NULL)
		return;
	EVP_PKEY_free(s->pkey);
	free(s);
}

int jwt_signer_fits(const jwt_signer *s, jwt_alg alg)
{
	return key_fits_alg(s->cls, alg);
}

char *jwt_signer_sign_raw(const jwt_signer *s, jwt_alg alg, const char *header_json,
                          const char *payload_json, char *errstr, size_t errstr_size)
{
	char *h64 = NULL, *p64 = NULL, *s64 = NULL, *input = NULL, *token = NULL;
	unsigned char *sig = NULL;
	size_t sig_len = 0, h_len, p_len, in_len, s_len;

	if (s == NULL || header_json == NULL || payload_json == NULL ||
	    (unsigned)alg >= JWT_ALG__COUNT) {
		errstr_set(errstr, errstr_size, "jwt_sign: missing argument or unknown algorithm");
		goto fail;
	}
	if (!key_fits_alg(s->cls, alg)) {
		errstr_set(errstr, errstr_size, "the private key's type does not fit %s",
		           jwt_alg_name(alg));
		goto fail;
	}
	h64 = jwt_base64url_encode(header_json, strlen(header_json));
	p64 = jwt_base64url_encode(payload_json, strlen(payload_json));
	if (h64 == NULL || p64 == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto fail;
	}
	h_len = strlen(h64);
	p_len = strlen(p64);
	in_len = h_len + 1 + p_len;
	input = malloc(in_len + 1);
	if (input == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto fail;
	}
	memcpy(input, h64, h_len);
	input[h_len] = '.';
	memcpy(input + h_len + 1, p64, p_len + 1);
	if (sign_bytes(s->pkey, alg, (const unsigned char *)input, in_len, &sig, &sig_len, errstr,
	               errstr_size) != 0)
		goto fail;
	s64 = jwt_base64url_encode(sig, sig_len);
	if (s64 == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto fail;
	}
	s_len = strlen(s64);
	token = malloc(in_len + 1 + s_len + 1);
	if (token == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto fail;
	}
	memcpy(token, input, in_len);
	token[in_len] = '.';
	memcpy(token + in_len + 1, s64, s_len + 1);
fail:
	free(h64);
	free(p64);
	free(s64);
	free(input);
	free(sig);
	ERR_clear_error();
	return token;
}

char *jwt_sign_raw(const char *key_pem, jwt_alg alg, const char *header_json,
                   const char *payload_json, char *errstr, size_t errstr_size)
{
	jwt_signer *s;
	char *token;

	if (key_pem == NULL || header_json == NULL || payload_json == NULL ||
	    (unsigned)alg >= JWT_ALG__COUNT) {
		errstr_set(errstr, errstr_size, "jwt_sign: missing argument or unknown algorithm");
		return NULL;
	}
	s = jwt_signer_new(key_pem, errstr, errstr_size);
	if (s == NULL)
		return NULL;
	token = jwt_signer_sign_raw(s, alg, header_json, payload_json, errstr, errstr_size);
	jwt_signer_destroy(s);
	return token;
}

char *jwt_sign(const char *key_pem, jwt_alg alg, const char *kid, const char *payload_json,
               char *errstr, size_t errstr_size)
{
	json_t *h = NULL;
	char *header = NULL, *token = NULL;

	if ((unsigned)alg >= JWT_ALG__COUNT) {
		errstr_set(errstr, errstr_size, "jwt_sign: unknown algorithm");
		return NULL;
	}
	h = json_object();
	if (h == NULL || json_object_set_new(h, "alg", json_string(alg_names[alg])) != 0 ||
	    json_object_set_new(h, "typ", json_string("JWT")) != 0) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto fail;
	}
	if (kid != NULL && json_object_set_new(h, "kid", json_string(kid)) != 0) {
		errstr_set(errstr, errstr_size, "kid is not valid UTF-8");
		goto fail;
	}
	/* jansson keeps insertion order, so the header reads alg, typ, kid. */
	header = json_dumps(h, JSON_COMPACT);
	if (header == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto fail;
	}
	token = jwt_sign_raw(key_pem, alg, header, payload_json, errstr, errstr_size);
fail:
	free(header);
	json_decref(h);
	return token;
}

/* ---- verifier ---- */

jwt_verifier *jwt_verifier_new(unsigned allow_mask, size_t max_token_bytes, char *errstr,
                               size_t errstr_size)
{
	jwt_verifier *v;

	if (allow_mask == 0) {
		errstr_set(errstr, errstr_size, "the algorithm allow-list is empty");
		return NULL;
	}
	if (max_token_bytes > JWT_MAX_TOKEN_LIMIT) {
		errstr_set(errstr, errstr_size, "the token size limit is above %d bytes",
		           JWT_MAX_TOKEN_LIMIT);
		return NULL;
	}
	if ((allow_mask >> JWT_ALG__COUNT) != 0) {
		errstr_set(errstr, errstr_size,
		           "the algorithm allow-list names an unknown algorithm");
		return NULL;
	}
	v = calloc(1, sizeof *v);
	if (v == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		return NULL;
	}
	v->allow_mask = allow_mask;
	v->max_token_bytes = max_token_bytes == 0 ? JWT_DEFAULT_MAX_TOKEN_BYTES : max_token_bytes;
	return v;
}

static void key_clear(jwt_key *k)
{
	free(k->iss);
	free(k->kid);
	EVP_PKEY_free(k->pkey);
	memset(k, 0, sizeof *k);
}

/* Drop the keys added after the first n (a failed load adds nothing). */
static void truncate_keys(jwt_verifier *v, size_t n)
{
	while (v->n_keys > n)
		key_clear(&v->keys[--v->n_keys]);
}

void jwt_verifier_destroy(jwt_verifier *v)
{
	if (v == NULL)
		return;
	truncate_keys(v, 0);
	free(v->keys);
	free(v);
}

int jwt_verifier_add_key(jwt_verifier *v, const char *iss, const char *kid,
                         const char *public_key_pem, char *errstr, size_t errstr_size)
{
	return jwt_verifier_add_key_algs(v, iss, kid, public_key_pem, 0, errstr, errstr_size);
}

int jwt_verifier_add_key_algs(jwt_verifier *v, const char *iss, const char *kid,
                              const char *public_key_pem, unsigned algs, char *errstr,
                              size_t errstr_size)
{
	BIO *bio = NULL;
	EVP_PKEY *pkey = NULL;
	jwt_key k = {0};
	key_class cls;
	int rc = -1;

	if (v == NULL || iss == NULL || iss[0] == '\0' || public_key_pem == NULL) {
		errstr_set(errstr, errstr_size, "a trusted key needs an issuer and a public key");
		goto fail;
	}
	if (kid != NULL && kid[0] == '\0') {
		errstr_set(errstr, errstr_size, "a trusted key's kid may not be empty");
		goto fail;
	}
	for (size_t i = 0; i < v->n_keys; i++) {
		const jwt_key *o = &v->keys[i];
		if (strcmp(o->iss, iss) != 0)
			continue;
		if (kid == NULL || o->kid == NULL) {
			/* A kid-less key is only ever chosen as its issuer's
			 * only key, so a second key would make it dead. */
			errstr_set(errstr, errstr_size,
			           "issuer %s has several keys, so each needs a kid", iss);
			goto fail;
		}
		if (strcmp(o->kid, kid) == 0) {
			errstr_set(errstr, errstr_size, "issuer %s already has a key with kid %s",
			           iss, kid);
			goto fail;
		}
	}
	bio = BIO_new_mem_buf(public_key_pem, -1);
	if (bio == NULL) {
		set_ossl_err(errstr, errstr_size, "cannot allocate a BIO");
		goto fail;
	}
	pkey = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
	if (pkey == NULL) {
		set_ossl_err(errstr, errstr_size, "cannot read the public key");
		goto fail;
	}
	cls = classify_key(pkey);
	if (cls == KEY_OTHER) {
		errstr_set(errstr, errstr_size,
		           "the public key is not EC P-256, EC P-384, RSA of at least %d bits or "
		           "Ed25519",
		           JWT_MIN_RSA_BITS);
		goto fail;
	}
	if (algs != 0) {
		unsigned fit = 0;
		for (unsigned a = 0; a < JWT_ALG__COUNT; a++)
			if ((algs & (1u << a)) != 0 && key_fits_alg(cls, (jwt_alg)a))
				fit = 1;
		if ((algs >> JWT_ALG__COUNT) != 0 || !fit) {
			errstr_set(errstr, errstr_size,
			           "the key's algorithm does not fit the key's type");
			goto fail;
		}
	}
	if (v->n_keys == v->cap_keys) {
		size_t cap = v->cap_keys == 0 ? 4 : v->cap_keys * 2;
		jwt_key *nk = realloc(v->keys, cap * sizeof *nk);
		if (nk == NULL) {
			errstr_set(errstr, errstr_size, "out of memory");
			goto fail;
		}
		v->keys = nk;
		v->cap_keys = cap;
	}
	k.iss = strdup(iss);
	k.kid = kid != NULL ? strdup(kid) : NULL;
	if (k.iss == NULL || (kid != NULL && k.kid == NULL)) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto fail;
	}
	k.pkey = pkey;
	k.cls = cls;
	k.algs = algs;
	pkey = NULL; /* now owned by the verifier */
	v->keys[v->n_keys++] = k;
	memset(&k, 0, sizeof k);
	rc = 0;
fail:
	key_clear(&k);
	EVP_PKEY_free(pkey);
	BIO_free(bio);
	ERR_clear_error();
	return rc;
}

/* One entry of the trusted keys file; dir (dir_len bytes) is the file's folder. */
static int load_entry(jwt_verifier *v, json_t *e, const char *dir, size_t dir_len, char *errstr,
                      size_t errstr_size)
{
	const char *name, *iss, *kid = NULL, *file;
	json_t *val;
	char *full = NULL, *pem = NULL;
	size_t pem_len = 0;
	int rc = -1;

	if (!json_is_object(e)) {
		errstr_set(errstr, errstr_size, "not a JSON object");
		goto fail;
	}
	json_object_foreach(e, name, val)
	{
		/* Unknown members are refused so a misspelt "kid" is not
		 * silently a kid-less key. */
		if (strcmp(name, "iss") != 0 && strcmp(name, "kid") != 0 &&
		    strcmp(name, "public_key_file") != 0) {
			errstr_set(errstr, errstr_size, "unknown member %s", name);
			goto fail;
		}
		if (!json_is_string(val)) {
			errstr_set(errstr, errstr_size, "%s is not a string", name);
			goto fail;
		}
	}
	iss = json_string_value(json_object_get(e, "iss"));
	file = json_string_value(json_object_get(e, "public_key_file"));
	if (json_object_get(e, "kid") != NULL)
		kid = json_string_value(json_object_get(e, "kid"));
	if (iss == NULL || file == NULL || file[0] == '\0') {
		errstr_set(errstr, errstr_size, "iss and public_key_file are required");
		goto fail;
	}
	if (file[0] == '/' || dir_len == 0) {
		full = strdup(file);
	} else {
		size_t n = dir_len + 1 + strlen(file) + 1;
		full = malloc(n);
		if (full != NULL) {
			memcpy(full, dir, dir_len);
			full[dir_len] = '/';
			memcpy(full + dir_len + 1, file, strlen(file) + 1);
		}
	}
	if (full == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto fail;
	}
	if ((pem = file_read(full, JWT_MAX_PEM_FILE_BYTES, &pem_len, errstr, errstr_size)) == NULL)
		goto fail;
	if (jwt_verifier_add_key(v, iss, kid, pem, errstr, errstr_size) != 0)
		goto fail;
	rc = 0;
fail:
	free(full);
	free(pem);
	return rc;
}

int jwt_verifier_load_file(jwt_verifier *v, const char *path, char *errstr, size_t errstr_size)
{
	char *buf = NULL;
	size_t len = 0, before, dir_len = 0, i;
	json_t *root = NULL, *e;
	json_error_t jerr;
	const char *slash;
	char why[256];
	int rc = -1;

	if (v == NULL || path == NULL) {
		errstr_set(errstr, errstr_size, "jwt_verifier_load_file: missing argument");
		return -1;
	}
	before = v->n_keys;
	if ((buf = file_read(path, JWT_MAX_KEYS_FILE_BYTES, &len, errstr, errstr_size)) == NULL)
		goto fail;
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		errstr_set(errstr, errstr_size, "%s: line %d: %s", path, jerr.line, jerr.text);
		goto fail;
	}
	if (!json_is_array(root)) {
		errstr_set(errstr, errstr_size, "%s: not a JSON array", path);
		goto fail;
	}
	slash = strrchr(path, '/');
	if (slash != NULL)
		dir_len = slash == path ? 1 : (size_t)(slash - path);
	json_array_foreach(root, i, e)
	{
		if (load_entry(v, e, path, dir_len, why, sizeof why) != 0) {
			errstr_set(errstr, errstr_size, "%s: entry %zu: %s", path, i + 1, why);
			goto fail;
		}
	}
	if (v->n_keys - before > INT_MAX) {
		errstr_set(errstr, errstr_size, "%s: too many keys", path);
		goto fail;
	}
	rc = (int)(v->n_keys - before);
fail:
	if (rc < 0)
		truncate_keys(v, before);
	json_decref(root);
	free(buf);
	return rc;
}

/* ---- verification ---- */

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

	if (ec_sig_len(alg) != 0) {
		size_t half = ec_sig_len(alg) / 2;
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
	if (EVP_DigestVerifyInit_ex(ctx, &pctx, alg_md(alg), NULL, NULL, pkey, NULL) == 1 &&
	    set_rsa_padding(pctx, alg) == 0 &&
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

static int check_nbf(const jwt_claims *c, int64_t now_s, int64_t leeway, char *errstr,
                     size_t errstr_size)
{
	if (c->has_nbf && !le_with_leeway(c->nbf, now_s, leeway)) {
		errstr_set(errstr, errstr_size, "token is not valid yet (nbf)");
		return -1;
	}
	return 0;
}

static int check_iat(const jwt_claims *c, int64_t now_s, int64_t leeway, char *errstr,
                     size_t errstr_size)
{
	if (c->has_iat && !le_with_leeway(c->iat, now_s, leeway)) {
		errstr_set(errstr, errstr_size, "token was issued in the future (iat)");
		return -1;
	}
	return 0;
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
	for (size_t i = 0; i < v->n_keys; i++) {
		if (strcmp(v->keys[i].iss, iss) != 0)
			continue;
		n_iss++;
		if (kid == NULL)
			key = &v->keys[i];
		else if (v->keys[i].kid != NULL && strcmp(v->keys[i].kid, kid) == 0)
			key = &v->keys[i];
	}
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
	if (!key_fits_alg(key->cls, alg)) {
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
	r = get_numeric_date(pj, "exp", 0, &c.exp);
	if (r == 0) {
		errstr_set(errstr, errstr_size, "token has no exp claim");
		goto fail;
	}
	if (r < 0) {
		errstr_set(errstr, errstr_size, "token claim exp is not a number");
		goto fail;
	}
	c.has_exp = 1;
	if (now_s != NULL && check_exp(&c, *now_s, leeway_s, errstr, errstr_size) != 0)
		goto fail;
	r = get_numeric_date(pj, "nbf", 1, &c.nbf);
	if (r < 0) {
		errstr_set(errstr, errstr_size, "token claim nbf is not a number");
		goto fail;
	}
	c.has_nbf = r;
	if (now_s != NULL && check_nbf(&c, *now_s, leeway_s, errstr, errstr_size) != 0)
		goto fail;
	r = get_numeric_date(pj, "iat", 1, &c.iat);
	if (r < 0) {
		errstr_set(errstr, errstr_size, "token claim iat is not a number");
		goto fail;
	}
	c.has_iat = r;
	if (now_s != NULL && check_iat(&c, *now_s, leeway_s, errstr, errstr_size) != 0)
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

int jwt_verifier_has_key(const jwt_verifier *v, const char *iss, const char *kid)
{
	size_t n_iss = 0;
	int found = 0;

	if (v == NULL || iss == NULL)
		return 0;
	/* The selection rule of verify(): by kid when the token has one,
	 * else the issuer's only key. */
	for (size_t i = 0; i < v->n_keys; i++) {
		if (strcmp(v->keys[i].iss, iss) != 0)
			continue;
		n_iss++;
		if (kid != NULL && v->keys[i].kid != NULL && strcmp(v->keys[i].kid, kid) == 0)
			found = 1;
	}
	return kid != NULL ? found : n_iss == 1;
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
