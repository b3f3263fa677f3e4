/*
 * jwt_sign: making tokens, for valctl token and the tests; the KM-S itself
 * never signs. A jwt_signer reads its PEM private key once, since OpenSSL 3
 * reads a PEM key through its decoder framework, which costs far more than
 * an ECDSA signature; jwt_sign() and jwt_sign_raw() are the one-shot forms.
 * A key signs only with the algorithms its class fits, the same binding
 * verification enforces, so that a token made here is never one the KM-S
 * refuses for its key. ECDSA signatures leave OpenSSL as DER and go into the
 * token as the fixed-size r||s of RFC 7518 section 3.4.
 */
#include "jwt_int.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "errstr.h"

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
		jwt_set_ossl_err(errstr, errstr_size, "cannot allocate a digest context");
		goto fail;
	}
	if (EVP_DigestSignInit_ex(ctx, &pctx, jwt_alg_md(alg), NULL, NULL, pkey, NULL) != 1 ||
	    jwt_set_rsa_padding(pctx, alg) != 0) {
		jwt_set_ossl_err(errstr, errstr_size, "cannot set up signing");
		goto fail;
	}
	if (EVP_DigestSign(ctx, NULL, &der_len, msg, msg_len) != 1) {
		jwt_set_ossl_err(errstr, errstr_size, "cannot size the signature");
		goto fail;
	}
	der = malloc(der_len == 0 ? 1 : der_len);
	if (der == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto fail;
	}
	if (EVP_DigestSign(ctx, der, &der_len, msg, msg_len) != 1) {
		jwt_set_ossl_err(errstr, errstr_size, "signing failed");
		goto fail;
	}
	if (jwt_ec_sig_len(alg) != 0) {
		/* JWS carries ECDSA signatures as fixed-size r||s, not DER. */
		size_t half = jwt_ec_sig_len(alg) / 2;
		const unsigned char *p = der;
		const BIGNUM *r = NULL, *s = NULL;

		es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
		if (es == NULL) {
			jwt_set_ossl_err(errstr, errstr_size, "cannot decode the ECDSA signature");
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
			jwt_set_ossl_err(errstr, errstr_size,
			                 "ECDSA signature does not fit its size");
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

struct jwt_signer {
	EVP_PKEY *pkey;
	jwt_key_class cls;
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
		jwt_set_ossl_err(errstr, errstr_size, "cannot allocate a BIO");
		free(s);
		return NULL;
	}
	s->pkey = PEM_read_bio_PrivateKey(bio, NULL, jwt_no_passphrase, NULL);
	BIO_free(bio);
	if (s->pkey == NULL) {
		jwt_set_ossl_err(errstr, errstr_size, "cannot read the private key");
		free(s);
		ERR_clear_error();
		return NULL;
	}
	s->cls = jwt_classify_key(s->pkey);
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
	return jwt_key_fits_alg(s->cls, alg);
}

/* "a.b", malloc'd; NULL when out of memory. */
static char *join_dot(const char *a, const char *b)
{
	size_t a_len = strlen(a), b_len = strlen(b);
	char *out = malloc(a_len + 1 + b_len + 1);

	if (out == NULL)
		return NULL;
	memcpy(out, a, a_len);
	out[a_len] = '.';
	memcpy(out + a_len + 1, b, b_len + 1);
	return out;
}

char *jwt_signer_sign_raw(const jwt_signer *s, jwt_alg alg, const char *header_json,
                          const char *payload_json, char *errstr, size_t errstr_size)
{
	char *h64 = NULL, *p64 = NULL, *s64 = NULL, *input = NULL, *token = NULL;
	unsigned char *sig = NULL;
	size_t sig_len = 0;

	if (s == NULL || header_json == NULL || payload_json == NULL ||
	    (unsigned)alg >= JWT_ALG__COUNT) {
		errstr_set(errstr, errstr_size, "jwt_sign: missing argument or unknown algorithm");
		goto fail;
	}
	if (!jwt_key_fits_alg(s->cls, alg)) {
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
	input = join_dot(h64, p64);
	if (input == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto fail;
	}
	if (sign_bytes(s->pkey, alg, (const unsigned char *)input, strlen(input), &sig, &sig_len,
	               errstr, errstr_size) != 0)
		goto fail;
	s64 = jwt_base64url_encode(sig, sig_len);
	if (s64 == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto fail;
	}
	token = join_dot(input, s64);
	if (token == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		goto fail;
	}
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
	if (h == NULL || json_object_set_new(h, "alg", json_string(jwt_alg_name(alg))) != 0 ||
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
