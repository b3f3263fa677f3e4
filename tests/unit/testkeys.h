/*
 * testkeys: key pairs made in-process for the tests that sign and verify
 * real tokens, with the PEM texts jwt_sign() and jwt_verifier_add_key()
 * take. Linked into every unit test and the token fuzz target; part of no
 * product binary.
 */
#ifndef KMS_TESTKEYS_H
#define KMS_TESTKEYS_H

#include <openssl/evp.h>

#define TESTKEYS_MUST_CHECK __attribute__((warn_unused_result))

typedef struct {
	EVP_PKEY *pkey; /* owned */
	char *priv_pem; /* owned, malloc'd: the private key, PKCS#8 */
	char *pub_pem;  /* owned, malloc'd: the public key, SubjectPublicKeyInfo */
} testkeys_pair;

/* The PEM text of k's private key (private_key != 0) or public key.
 * Caller frees with free(). NULL when k is NULL or OpenSSL or malloc fails. */
char *testkeys_pem(EVP_PKEY *k, int private_key) TESTKEYS_MUST_CHECK;

/* Fill k with pkey and both its PEM texts. Takes ownership of pkey, on
 * failure too, so the result of EVP_PKEY_Q_keygen() can be passed as it is
 * (NULL fails). Returns 0, or -1 with k holding what was made; either way
 * testkeys_pair_free(k) releases it. */
int testkeys_pair_fill(testkeys_pair *k, EVP_PKEY *pkey) TESTKEYS_MUST_CHECK;

/* Free what k holds and zero it. k == NULL is a no-op. */
void testkeys_pair_free(testkeys_pair *k);

#endif
