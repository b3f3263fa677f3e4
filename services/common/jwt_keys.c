/*
 * jwt_keys: the algorithms and the keys they may use. Each algorithm accepts
 * one class of key (P-256 for ES256, P-384 for ES384, RSA of at least 2048
 * bits for RS256 and PS256, Ed25519 for EdDSA); a key is classified once,
 * when it is read, and both signing and verification hold it to that
 * binding, which is what stops a token from choosing how our key is used
 * (algorithm confusion). The OpenSSL settings of each algorithm (digest,
 * RSA padding, the size of an ECDSA signature) live here so that the signer
 * and the verifier cannot disagree on them. Keys also go out as PEM text
 * here, for the JWK Set reader and for valctl keygen.
 */
#include "jwt_int.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "errstr.h"

static const char *const alg_names[JWT_ALG__COUNT] = {"ES256", "ES384", "RS256", "PS256", "EdDSA"};

/* OpenSSL's error queue becomes text here, once, and is emptied so that the
 * next call on this thread does not see stale errors. */
void jwt_set_ossl_err(char *errstr, size_t errstr_size, const char *what)
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

jwt_key_class jwt_classify_key(EVP_PKEY *pkey)
{
	if (EVP_PKEY_is_a(pkey, "EC")) {
		char group[80];
		size_t glen = 0;
		/* Keys with explicit curve parameters have no group name and
		 * are refused: a named curve is the only kind we trust. */
		if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
		                                   sizeof group, &glen) != 1) {
			ERR_clear_error();
			return JWT_KEY_OTHER;
		}
		if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
			return JWT_KEY_P256;
		if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
			return JWT_KEY_P384;
		return JWT_KEY_OTHER;
	}
	/* "RSA" only: RSASSA-PSS-restricted keys are not supported. */
	if (EVP_PKEY_is_a(pkey, "RSA"))
		return EVP_PKEY_get_bits(pkey) >= JWT_MIN_RSA_BITS ? JWT_KEY_RSA : JWT_KEY_OTHER;
	if (EVP_PKEY_is_a(pkey, "ED25519"))
		return JWT_KEY_ED25519;
	return JWT_KEY_OTHER;
}

/* The one key class each algorithm accepts: this binding is what stops an
 * attacker from choosing how our key is used. */
int jwt_key_fits_alg(jwt_key_class k, jwt_alg alg)
{
	switch (alg) {
	case JWT_ALG_ES256:
		return k == JWT_KEY_P256;
	case JWT_ALG_ES384:
		return k == JWT_KEY_P384;
	case JWT_ALG_RS256:
	case JWT_ALG_PS256:
		return k == JWT_KEY_RSA;
	case JWT_ALG_EDDSA:
		return k == JWT_KEY_ED25519;
	case JWT_ALG__COUNT:
		break;
	}
	return 0;
}

const char *jwt_alg_md(jwt_alg alg)
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
size_t jwt_ec_sig_len(jwt_alg alg)
{
	if (alg == JWT_ALG_ES256)
		return 64;
	if (alg == JWT_ALG_ES384)
		return 96;
	return 0;
}

int jwt_set_rsa_padding(EVP_PKEY_CTX *pctx, jwt_alg alg)
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
int jwt_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

char *jwt_key_pem(const EVP_PKEY *pkey, jwt_pem_part part, size_t *len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data = NULL, *out = NULL;
	long n = 0;
	int ok;

	if (len != NULL)
		*len = 0;
	if (bio == NULL || pkey == NULL)
		goto done;
	if (part == JWT_PEM_PRIVATE)
		ok = PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL);
	else
		ok = PEM_write_bio_PUBKEY(bio, pkey);
	if (ok != 1)
		goto done;
	n = BIO_get_mem_data(bio, &data);
	if (n <= 0)
		goto done;
	out = malloc((size_t)n + 1);
	if (out == NULL)
		goto done;
	memcpy(out, data, (size_t)n);
	out[n] = '\0';
	if (len != NULL)
		*len = (size_t)n;
done:
	/* The memory BIO's buffer may hold a private key: clear it before
	 * it goes back to the allocator. */
	if (data != NULL && n > 0)
		OPENSSL_cleanse(data, (size_t)n);
	BIO_free(bio);
	ERR_clear_error();
	return out;
}
