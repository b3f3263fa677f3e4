/*
 * testkeys: the tests' key pairs and their PEM texts. The tests that sign
 * real tokens (authz, jwt, jwks, trust, oom, the token fuzz target) each
 * had their own copy of this; one copy keeps the PEM handling they trust
 * the same everywhere.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/pem.h>

#include "testkeys.h"

char *testkeys_pem(EVP_PKEY *k, int private_key)
{
	BIO *b;
	char *data = NULL, *out = NULL;
	long n;
	int ok;

	if (k == NULL)
		return NULL;
	b = BIO_new(BIO_s_mem());
	ok = b != NULL && (private_key ? PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)
	                               : PEM_write_bio_PUBKEY(b, k)) == 1;
	if (ok && (n = BIO_get_mem_data(b, &data)) > 0 && (out = malloc((size_t)n + 1)) != NULL) {
		memcpy(out, data, (size_t)n);
		out[n] = '\0';
	}
	BIO_free(b);
	return out;
}

int testkeys_pair_fill(testkeys_pair *k, EVP_PKEY *pkey)
{
	k->pkey = pkey;
	k->priv_pem = testkeys_pem(pkey, 1);
	k->pub_pem = testkeys_pem(pkey, 0);
	return k->priv_pem != NULL && k->pub_pem != NULL ? 0 : -1;
}

void testkeys_pair_free(testkeys_pair *k)
{
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey);
	free(k->priv_pem);
	free(k->pub_pem);
	memset(k, 0, sizeof *k);
}
