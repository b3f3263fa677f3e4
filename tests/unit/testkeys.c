/*
 * testkeys: the tests' key pairs and their PEM texts. The tests that sign
 * real tokens (authz, jwt, jwks, trust, oom, the token fuzz target) each
 * had their own copy of this; the PEM text comes from jwt_key_pem(), the
 * project's one writer of it.
 */
#include <stdlib.h>
#include <string.h>

#include "jwt.h"
#include "testkeys.h"

char *testkeys_pem(EVP_PKEY *k, int private_key)
{
	if (k == NULL)
		return NULL;
	return jwt_key_pem(k, private_key ? JWT_PEM_PRIVATE : JWT_PEM_PUBLIC, NULL);
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
