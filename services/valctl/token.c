/*
 * valctl token and valctl keygen: the issuer side of the access tokens, for
 * development and tests. keygen writes a key pair of the kind an algorithm
 * needs; token builds the claims a VAL server's token carries (TS 33.434
 * Annex A: exp, scope, client_id, SKeyProv, plus iss, vsp_id and the times)
 * and signs them. --claim lets a test put any raw JSON in any claim, so the
 * KM-S's refusals can be tested with tokens it must refuse.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "cli.h"
#include "commands.h"
#include "file.h"
#include "jwt.h"
#include "num.h"
#include "token.h"
#include "util.h"

#define KEY_FILE_MAX (1024 * 1024)

static const char token_help[] =
    "Usage: valctl token --key PEM_FILE --iss ISS --client-id ID --vsp-id VSP [OPTIONS]\n"
    "\n"
    "Print a signed access token (compact JWS) for a VAL server on stdout.\n"
    "Claims: iss, sub and client_id (= ID), vsp_id, scope, SKeyProv true,\n"
    "iat and nbf (now), exp (now + ttl), jti (random).\n"
    "\n"
    "  --key PEM_FILE     the issuer's private key\n"
    "  --iss ISS          issuer\n"
    "  --client-id ID     the VAL server (its requesterIdentity)\n"
    "  --vsp-id VSP       its VAL service provider\n"
    "  --kid KID          key id in the header\n"
    "  --alg ALG          ES256 (default), ES384, RS256, PS256 or EdDSA\n"
    "  --scope SCOPE      space-separated scopes (default \"ss-kpp\")\n"
    "  --ttl SECONDS      lifetime (default 3600; negative: already expired)\n"
    "  --no-skeyprov      leave out the SKeyProv claim\n"
    "  --claim NAME=JSON  set claim NAME to the JSON value (repeatable; overrides)\n"
    "  --unset-claim NAME leave claim NAME out (repeatable)\n"
    "  -h, --help         this help\n";

static const char keygen_help[] =
    "Usage: valctl keygen --out-private FILE --out-public FILE [--alg ALG]\n"
    "\n"
    "Write a new key pair for a token issuer (development and tests): the\n"
    "private key as PKCS#8 PEM (mode 0600), the public key as\n"
    "SubjectPublicKeyInfo PEM.\n"
    "\n"
    "  --out-private FILE  where the private key goes\n"
    "  --out-public FILE   where the public key goes\n"
    "  --alg ALG           ES256 (P-256, default), ES384 (P-384), RS256 or PS256\n"
    "                      (RSA 2048), EdDSA (Ed25519)\n"
    "  -h, --help          this help\n";

json_t *valctl_token_payload(const valctl_token_claims *tc, char *errstr, size_t errstr_size)
{
	int64_t now = valctl_now_ms() / 1000;
	char jti[37];
	json_t *p;
	int bad = 0;

	if (valctl_uuid_v4(jti, errstr, errstr_size) != 0)
		return NULL;
	p = json_object();
	if (p == NULL)
		goto oom;
	/* json_string returns NULL for invalid UTF-8; set_new then fails. */
	bad |= json_object_set_new(p, "iss", json_string(tc->iss));
	bad |= json_object_set_new(p, "sub", json_string(tc->client_id));
	bad |= json_object_set_new(p, "client_id", json_string(tc->client_id));
	bad |= json_object_set_new(p, "vsp_id", json_string(tc->vsp_id));
	bad |= json_object_set_new(p, "scope", json_string(tc->scope));
	if (tc->skeyprov)
		bad |= json_object_set_new(p, "SKeyProv", json_true());
	bad |= json_object_set_new(p, "iat", json_integer((json_int_t)now));
	bad |= json_object_set_new(p, "nbf", json_integer((json_int_t)now));
	bad |= json_object_set_new(p, "exp", json_integer((json_int_t)(now + tc->ttl_s)));
	bad |= json_object_set_new(p, "jti", json_string(jti));
	if (bad) {
		json_decref(p);
		snprintf(errstr, errstr_size, "a claim is not valid UTF-8");
		return NULL;
	}
	return p;
oom:
	snprintf(errstr, errstr_size, "out of memory");
	return NULL;
}

char *valctl_token_sign(const char *key_pem, jwt_alg alg, const char *kid, const json_t *payload,
                        char *errstr, size_t errstr_size)
{
	char *text, *token;

	text = json_dumps(payload, JSON_COMPACT);
	if (text == NULL) {
		snprintf(errstr, errstr_size, "cannot serialise the claims");
		return NULL;
	}
	token = jwt_sign(key_pem, alg, kid, text, errstr, errstr_size);
	free(text);
	return token;
}

enum {
	OPT_KEY = VALCTL_OPT_FIRST_FREE,
	OPT_ISS,
	OPT_CLIENT_ID,
	OPT_VSP_ID,
	OPT_KID,
	OPT_ALG,
	OPT_SCOPE,
	OPT_TTL,
	OPT_NO_SKEYPROV,
	OPT_CLAIM,
	OPT_UNSET_CLAIM,
	OPT_OUT_PRIVATE,
	OPT_OUT_PUBLIC
};

/* One --claim or --unset-claim, in command-line order. */
typedef struct {
	const char *arg;
	int unset;
} claim_edit;

typedef struct {
	const char *key_file, *kid;
	valctl_token_claims tc;
	jwt_alg alg;
	claim_edit *edits; /* every --claim and --unset-claim, in order */
	size_t edit_count;
} token_opts;

static int token_option(void *ctx, const char *sub, int opt, const char *arg)
{
	token_opts *o = ctx;

	switch (opt) {
	case OPT_KEY:
		o->key_file = arg;
		break;
	case OPT_ISS:
		o->tc.iss = arg;
		break;
	case OPT_CLIENT_ID:
		o->tc.client_id = arg;
		break;
	case OPT_VSP_ID:
		o->tc.vsp_id = arg;
		break;
	case OPT_KID:
		o->kid = arg;
		break;
	case OPT_ALG:
		if (jwt_alg_parse(arg, &o->alg) != 0)
			return valctl_usage(sub, "unknown --alg '%s'", arg);
		break;
	case OPT_SCOPE:
		o->tc.scope = arg;
		break;
	case OPT_TTL:
		if (num_parse_i64(arg, -(INT64_C(1) << 40), INT64_C(1) << 40, &o->tc.ttl_s) != 0)
			return valctl_usage(sub, "--ttl needs a number of seconds, got '%s'", arg);
		break;
	case OPT_NO_SKEYPROV:
		o->tc.skeyprov = 0;
		break;
	case OPT_CLAIM:
	case OPT_UNSET_CLAIM:
		o->edits[o->edit_count].arg = arg;
		o->edits[o->edit_count].unset = opt == OPT_UNSET_CLAIM;
		o->edit_count++;
		break;
	default:
		return VALCTL_NOT_MINE;
	}
	return VALCTL_GO_ON;
}

int valctl_cmd_token(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"key", required_argument, NULL, OPT_KEY},
	    {"iss", required_argument, NULL, OPT_ISS},
	    {"client-id", required_argument, NULL, OPT_CLIENT_ID},
	    {"vsp-id", required_argument, NULL, OPT_VSP_ID},
	    {"kid", required_argument, NULL, OPT_KID},
	    {"alg", required_argument, NULL, OPT_ALG},
	    {"scope", required_argument, NULL, OPT_SCOPE},
	    {"ttl", required_argument, NULL, OPT_TTL},
	    {"no-skeyprov", no_argument, NULL, OPT_NO_SKEYPROV},
	    {"claim", required_argument, NULL, OPT_CLAIM},
	    {"unset-claim", required_argument, NULL, OPT_UNSET_CLAIM},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	const char *sub = "token";
	token_opts o = {NULL, NULL, {NULL, NULL, NULL, "ss-kpp", 3600, 1}, JWT_ALG_ES256, NULL, 0};
	size_t i;
	json_t *payload = NULL;
	char *key_pem = NULL, *token = NULL;
	char errstr[512];
	int r, rc = VALCTL_EXIT_RUNTIME;

	/* Every --claim fits in argc slots. */
	o.edits = calloc((size_t)argc + 1, sizeof *o.edits);
	if (o.edits == NULL) {
		valctl_err(sub, "out of memory");
		return VALCTL_EXIT_RUNTIME;
	}
	r = valctl_parse(NULL, sub, token_help, opts, token_option, &o, 0, argc, argv);
	if (r != VALCTL_GO_ON) {
		rc = r;
		goto done;
	}
	if (o.key_file == NULL || o.tc.iss == NULL || o.tc.client_id == NULL ||
	    o.tc.vsp_id == NULL) {
		rc = valctl_usage(sub, "--key, --iss, --client-id and --vsp-id are required");
		goto done;
	}

	payload = valctl_token_payload(&o.tc, errstr, sizeof errstr);
	if (payload == NULL) {
		valctl_err(sub, "%s", errstr);
		goto done;
	}
	for (i = 0; i < o.edit_count; i++) {
		const char *arg = o.edits[i].arg;
		const char *eq = strchr(arg, '=');
		char name[256];
		json_error_t jerr;
		json_t *v;
		size_t n = eq != NULL ? (size_t)(eq - arg) : strlen(arg);

		if (n == 0 || n >= sizeof name || (o.edits[i].unset ? eq != NULL : eq == NULL)) {
			rc = valctl_usage(sub, o.edits[i].unset ? "--unset-claim needs NAME"
			                                        : "--claim needs NAME=JSON");
			goto done;
		}
		memcpy(name, arg, n);
		name[n] = '\0';
		if (o.edits[i].unset) {
			json_object_del(payload, name);
			continue;
		}
		v = json_loads(eq + 1, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
		if (v == NULL) {
			rc = valctl_usage(sub, "--claim %s: not JSON (%s); a string needs quotes",
			                  name, jerr.text);
			goto done;
		}
		if (json_object_set_new(payload, name, v) != 0) {
			rc = valctl_usage(sub, "--claim %s: cannot set it", name);
			goto done;
		}
	}

	key_pem = file_read(o.key_file, KEY_FILE_MAX, NULL, errstr, sizeof errstr);
	if (key_pem == NULL) {
		valctl_err(sub, "%s", errstr);
		goto done;
	}
	token = valctl_token_sign(key_pem, o.alg, o.kid, payload, errstr, sizeof errstr);
	if (token == NULL) {
		valctl_err(sub, "cannot sign: %s", errstr);
		goto done;
	}
	if (printf("%s\n", token) < 0 || fflush(stdout) != 0) {
		valctl_err(sub, "cannot write the token to stdout");
		goto done;
	}
	rc = VALCTL_EXIT_SUCCESS;
done:
	if (key_pem != NULL) {
		OPENSSL_cleanse(key_pem, strlen(key_pem));
		free(key_pem);
	}
	free(token);
	json_decref(payload);
	free(o.edits);
	return rc;
}

static EVP_PKEY *generate(jwt_alg alg)
{
	switch (alg) {
	case JWT_ALG_ES256:
		return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	case JWT_ALG_ES384:
		return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	case JWT_ALG_RS256:
	case JWT_ALG_PS256:
		return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	case JWT_ALG_EDDSA:
		return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	default:
		return NULL;
	}
}

typedef struct {
	const char *out_private, *out_public;
	jwt_alg alg;
} keygen_opts;

static int keygen_option(void *ctx, const char *sub, int opt, const char *arg)
{
	keygen_opts *o = ctx;

	switch (opt) {
	case OPT_OUT_PRIVATE:
		o->out_private = arg;
		break;
	case OPT_OUT_PUBLIC:
		o->out_public = arg;
		break;
	case OPT_ALG:
		if (jwt_alg_parse(arg, &o->alg) != 0)
			return valctl_usage(sub, "unknown --alg '%s'", arg);
		break;
	default:
		return VALCTL_NOT_MINE;
	}
	return VALCTL_GO_ON;
}

int valctl_cmd_keygen(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"out-private", required_argument, NULL, OPT_OUT_PRIVATE},
	    {"out-public", required_argument, NULL, OPT_OUT_PUBLIC},
	    {"alg", required_argument, NULL, OPT_ALG},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	const char *sub = "keygen";
	keygen_opts o = {NULL, NULL, JWT_ALG_ES256};
	EVP_PKEY *pkey = NULL;
	char *priv = NULL, *pub = NULL;
	size_t priv_len = 0, pub_len = 0;
	char errstr[512];
	unsigned long e;
	int r, rc = VALCTL_EXIT_RUNTIME;

	r = valctl_parse(NULL, sub, keygen_help, opts, keygen_option, &o, 0, argc, argv);
	if (r != VALCTL_GO_ON)
		return r;
	if (o.out_private == NULL || o.out_public == NULL)
		return valctl_usage(sub, "--out-private and --out-public are required");

	pkey = generate(o.alg);
	if (pkey == NULL) {
		e = ERR_get_error();
		valctl_err(sub, "cannot generate a %s key: %s", jwt_alg_name(o.alg),
		           e != 0 ? ERR_reason_error_string(e) : "unsupported");
		goto done;
	}
	priv = jwt_key_pem(pkey, JWT_PEM_PRIVATE, &priv_len);
	pub = jwt_key_pem(pkey, JWT_PEM_PUBLIC, &pub_len);
	if (priv == NULL || pub == NULL) {
		valctl_err(sub, "cannot write the key as PEM");
		goto done;
	}
	if (valctl_write_file(o.out_private, priv, priv_len, 0600, errstr, sizeof errstr) != 0 ||
	    valctl_write_file(o.out_public, pub, pub_len, 0644, errstr, sizeof errstr) != 0) {
		valctl_err(sub, "%s", errstr);
		goto done;
	}
	rc = VALCTL_EXIT_SUCCESS;
done:
	if (priv != NULL) {
		OPENSSL_cleanse(priv, priv_len);
		free(priv);
	}
	free(pub);
	EVP_PKEY_free(pkey);
	return rc;
}
