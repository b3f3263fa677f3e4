/*
 * jwt_int: what the files of jwt share and nothing else includes: the
 * verifier's key table, the classification of keys and the OpenSSL settings
 * that signing and verification must agree on. Not a public interface.
 */
#ifndef KMS_JWT_INT_H
#define KMS_JWT_INT_H

#include <stddef.h>

#include <openssl/evp.h>

#include "jwt.h"

#define JWT_MIN_RSA_BITS 2048

/* What a key can be used for; anything else is refused when it is loaded. */
typedef enum {
	JWT_KEY_OTHER = 0,
	JWT_KEY_P256,
	JWT_KEY_P384,
	JWT_KEY_RSA,
	JWT_KEY_ED25519
} jwt_key_class;

typedef struct {
	char *iss;
	char *kid; /* NULL: the issuer's only key */
	EVP_PKEY *pkey;
	/* Classified once, when loaded: asking OpenSSL again at every token
	 * costs time, and a failed lookup (out of memory) would refuse a good
	 * token. */
	jwt_key_class cls;
	unsigned algs; /* 0: any algorithm that fits cls; else only these */
} jwt_key;

struct jwt_verifier {
	unsigned allow_mask;
	size_t max_token_bytes;
	jwt_key *keys;
	size_t n_keys, cap_keys;
};

/* The key a token of issuer iss naming kid (NULL: no kid) is checked with:
 * by kid when there is one, else the issuer's only key. *n_iss is the number
 * of keys of the issuer; without a kid the result is only that key when
 * *n_iss is 1. Borrowed from v. */
const jwt_key *jwt_verifier_find(const jwt_verifier *v, const char *iss, const char *kid,
                                 size_t *n_iss);

/* errstr = "what (OpenSSL's last error)", and OpenSSL's error queue emptied. */
void jwt_set_ossl_err(char *errstr, size_t errstr_size, const char *what);

jwt_key_class jwt_classify_key(EVP_PKEY *pkey);
/* 1 when keys of class k may be used with alg, else 0. */
int jwt_key_fits_alg(jwt_key_class k, jwt_alg alg);
/* The digest name for EVP_DigestSignInit_ex / VerifyInit_ex (NULL for EdDSA). */
const char *jwt_alg_md(jwt_alg alg);
/* Raw r||s length of an ECDSA signature (RFC 7518 section 3.4), 0 for others. */
size_t jwt_ec_sig_len(jwt_alg alg);
/* The RSA padding of alg on a signing or verifying context; 0 or -1. */
int jwt_set_rsa_padding(EVP_PKEY_CTX *pctx, jwt_alg alg);
/* A pem_password_cb that refuses: an encrypted key fails to load. */
int jwt_no_passphrase(char *buf, int size, int rwflag, void *u);

#endif
