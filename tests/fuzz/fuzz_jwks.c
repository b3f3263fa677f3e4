/*
 * fuzz_jwks: libFuzzer target for jwks_parse, which reads documents a JWKS
 * server (or a file) hands the KM-S. Besides the sanitizers, it checks what
 * the trust relies on: a refusal leaves the set empty and says why; an
 * accepted set's kids tell its keys apart, and every key it holds is taken
 * by a verifier (the trust builds its verifier from such sets and must never
 * fail there).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iservices/common \
 *     tests/fuzz/fuzz_jwks.c services/common/jwks.c services/common/jwt_*.c \
 *     services/common/jsonfile.c services/common/file.c services/common/errstr.c \
 *     services/common/utf8.c \
 *     $(pkg-config --cflags --libs openssl jansson)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jwks.h"
#include "jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	jwks_set s;
	char err[256] = "";
	jwt_verifier *v;

	if (jwks_parse((const char *)data, size, &s, NULL, NULL, err, sizeof err) != 0) {
		if (s.n != 0 || s.keys != NULL || err[0] == '\0')
			abort();
		return 0;
	}
	v = jwt_verifier_new((1u << JWT_ALG__COUNT) - 1, 0, NULL, 0);
	if (v == NULL)
		abort();
	for (size_t i = 0; i < s.n; i++) {
		if (s.keys[i].pem == NULL || (s.n > 1 && s.keys[i].kid == NULL))
			abort();
		if (jwt_verifier_add_key_algs(v, "https://as.example", s.keys[i].kid, s.keys[i].pem,
		                              s.keys[i].algs, err, sizeof err) != 0)
			abort();
	}
	jwt_verifier_destroy(v);
	jwks_set_free(&s);
	return 0;
}
