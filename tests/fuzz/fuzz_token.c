/*
 * fuzz_token: libFuzzer target for jwt_verify, the first code in the KM-S to
 * read attacker-chosen bytes. A verifier trusting one P-256 key (made once,
 * at the first input) checks each input as a token, copied to a
 * NUL-terminated string as the KM-S holds it. Signatures cannot be forged by
 * mutation, so the claims code behind the signature check would never run;
 * an input starting with '{' is therefore also signed as a payload with the
 * trusted key and verified, which reaches it. That signing is done here with
 * the key already loaded, because jwt_sign() parses its PEM on every call,
 * which costs about 0.6 ms and would slow the fuzzer several times over.
 *
 * Besides the sanitizers, the target checks the contract: a refusal leaves
 * the claims zeroed and says why in a non-empty sentence, and the split
 * verification (jwt_verify_signature, then jwt_check_times) accepts exactly
 * what jwt_verify accepts.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iservices/common \
 *     -Iservices/kms -Itests/unit tests/fuzz/fuzz_token.c tests/unit/testkeys.c \
 *     services/common/jwt_*.c services/common/jsonfile.c services/common/file.c \
 *     services/common/errstr.c services/common/utf8.c \
 *     $(pkg-config --cflags --libs openssl jansson)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "jwt.h"
#include "testkeys.h"

#define FUZZ_ISS "https://as.example"
#define FUZZ_NOW INT64_C(1700000000)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static jwt_verifier *verifier;
static EVP_PKEY *signing_key;
static char *header64; /* {"alg":"ES256","typ":"JWT"} */

static void setup(void)
{
	static const char header[] = "{\"alg\":\"ES256\",\"typ\":\"JWT\"}";
	char err[256];
	char *pub = NULL;

	signing_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (signing_key == NULL)
		abort();
	pub = testkeys_pem(signing_key, 0);
	header64 = jwt_base64url_encode(header, strlen(header));
	/* Every algorithm allowed, so inputs get past the allow-list to the
	 * key-type check. */
	verifier = jwt_verifier_new((1u << JWT_ALG__COUNT) - 1, 0, err, sizeof err);
	if (pub == NULL || header64 == NULL || verifier == NULL ||
	    jwt_verifier_add_key(verifier, FUZZ_ISS, NULL, pub, err, sizeof err) != 0)
		abort();
	free(pub);
}

/* An ES256 token over payload with the trusted key; malloc'd. */
static char *sign_payload(const char *payload)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	char *p64 = jwt_base64url_encode(payload, strlen(payload));
	unsigned char der[80], raw[64];
	const unsigned char *dp = der;
	size_t der_len = sizeof der, n;
	const BIGNUM *r, *s;
	ECDSA_SIG *es;
	char *input, *s64, *token;

	if (ctx == NULL || p64 == NULL)
		abort();
	n = strlen(header64) + 1 + strlen(p64);
	input = malloc(n + 1);
	if (input == NULL)
		abort();
	memcpy(input, header64, strlen(header64));
	input[strlen(header64)] = '.';
	memcpy(input + strlen(header64) + 1, p64, strlen(p64) + 1);
	if (EVP_DigestSignInit_ex(ctx, NULL, "SHA256", NULL, NULL, signing_key, NULL) != 1 ||
	    EVP_DigestSign(ctx, der, &der_len, (const unsigned char *)input, n) != 1)
		abort();
	es = d2i_ECDSA_SIG(NULL, &dp, (long)der_len);
	if (es == NULL)
		abort();
	ECDSA_SIG_get0(es, &r, &s);
	if (BN_bn2binpad(r, raw, 32) != 32 || BN_bn2binpad(s, raw + 32, 32) != 32)
		abort();
	s64 = jwt_base64url_encode(raw, sizeof raw);
	token = malloc(n + 1 + 86 + 1);
	if (s64 == NULL || token == NULL || strlen(s64) != 86)
		abort();
	memcpy(token, input, n);
	token[n] = '.';
	memcpy(token + n + 1, s64, 87);
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(ctx);
	free(p64);
	free(input);
	free(s64);
	return token;
}

static void verify_one(const char *token)
{
	jwt_claims c;
	char err[256];
	int rc = jwt_verify(verifier, token, FUZZ_NOW, 30, &c, err, sizeof err);

	jwt_claims sc;
	char serr[256];
	int src = jwt_verify_signature(verifier, token, &sc, serr, sizeof serr);
	int times = src == 0 ? jwt_check_times(&sc, FUZZ_NOW, 30, serr, sizeof serr) : -1;

	/* The split verification accepts exactly what jwt_verify accepts. */
	if ((rc == 0) != (src == 0 && times == 0))
		abort();
	jwt_claims_free(&sc);
	if (rc == 0) {
		/* Accepted: exp is required, so it must be there. */
		if (!c.has_exp || c.iss == NULL || strcmp(c.iss, FUZZ_ISS) != 0)
			abort();
		jwt_claims_free(&c);
		return;
	}
	if ((rc != -1 && rc != JWT_ERR_NOMEM) || err[0] == '\0' || c.iss != NULL ||
	    c.client_id != NULL || c.scope != NULL || c.vsp_id != NULL || c.has_exp ||
	    c.has_skeyprov)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf;

	if (verifier == NULL)
		setup();
	buf = malloc(size + 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	verify_one(buf);
	if (size > 0 && buf[0] == '{') {
		char *t = sign_payload(buf);
		verify_one(t);
		free(t);
	}
	free(buf);
	return 0;
}
