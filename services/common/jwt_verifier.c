/*
 * jwt_verifier: the public keys the KM-S trusts, each for one issuer and
 * under a kid (or as its issuer's only key), from PEM text or from the
 * trusted keys file. A key is classified when it is added and refused unless
 * it is one the algorithms can use, so that nothing about a key is decided
 * while a token waits. The rules that make a token's key unambiguous (an
 * issuer with several keys has a kid on each, no kid twice) are enforced
 * here, when keys are added, rather than guessed at when a token comes. A
 * file whose entry fails adds none of its keys.
 */
#include "jwt_int.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "errstr.h"
#include "file.h"
#include "jsonfile.h"

#define JWT_DEFAULT_MAX_TOKEN_BYTES 8192
/* A sane upper bound for a configured limit: a token rides in one Kafka
 * message, and the bound keeps the size arithmetic far from overflow. */
#define JWT_MAX_TOKEN_LIMIT     (1024 * 1024)
#define JWT_MAX_KEYS_FILE_BYTES (1024 * 1024)
#define JWT_MAX_PEM_FILE_BYTES  (64 * 1024)

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
	jwt_key_class cls;
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
		jwt_set_ossl_err(errstr, errstr_size, "cannot allocate a BIO");
		goto fail;
	}
	pkey = PEM_read_bio_PUBKEY(bio, NULL, jwt_no_passphrase, NULL);
	if (pkey == NULL) {
		jwt_set_ossl_err(errstr, errstr_size, "cannot read the public key");
		goto fail;
	}
	cls = jwt_classify_key(pkey);
	if (cls == JWT_KEY_OTHER) {
		errstr_set(errstr, errstr_size,
		           "the public key is not EC P-256, EC P-384, RSA of at least %d bits or "
		           "Ed25519",
		           JWT_MIN_RSA_BITS);
		goto fail;
	}
	if (algs != 0) {
		unsigned fit = 0;
		for (unsigned a = 0; a < JWT_ALG__COUNT; a++)
			if ((algs & (1u << a)) != 0 && jwt_key_fits_alg(cls, (jwt_alg)a))
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

/* One entry of the trusted keys file path. */
static int load_entry(jwt_verifier *v, json_t *e, const char *path, char *errstr,
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
	full = jsonfile_resolve(path, file);
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
	size_t before, i;
	json_t *root = NULL, *e;
	char why[256];
	int rc = -1;

	if (v == NULL || path == NULL) {
		errstr_set(errstr, errstr_size, "jwt_verifier_load_file: missing argument");
		return -1;
	}
	before = v->n_keys;
	root = jsonfile_read_array(path, JWT_MAX_KEYS_FILE_BYTES, errstr, errstr_size);
	if (root == NULL)
		goto fail;
	json_array_foreach(root, i, e)
	{
		if (load_entry(v, e, path, why, sizeof why) != 0) {
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
	return rc;
}

const jwt_key *jwt_verifier_find(const jwt_verifier *v, const char *iss, const char *kid,
                                 size_t *n_iss)
{
	const jwt_key *key = NULL;

	*n_iss = 0;
	for (size_t i = 0; i < v->n_keys; i++) {
		if (strcmp(v->keys[i].iss, iss) != 0)
			continue;
		(*n_iss)++;
		if (kid == NULL)
			key = &v->keys[i];
		else if (v->keys[i].kid != NULL && strcmp(v->keys[i].kid, kid) == 0)
			key = &v->keys[i];
	}
	return key;
}

int jwt_verifier_has_key(const jwt_verifier *v, const char *iss, const char *kid)
{
	size_t n_iss;
	const jwt_key *key;

	if (v == NULL || iss == NULL)
		return 0;
	key = jwt_verifier_find(v, iss, kid, &n_iss);
	return kid != NULL ? key != NULL : n_iss == 1;
}
