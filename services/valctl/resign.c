/*
 * Re-signing the access token of a recorded request, for valctl replay
 * --resign: a recording from production carries tokens that expire and that
 * production's issuer signed; a staging KM-S trusts a development key. The
 * token is re-minted with the same header members (but alg and kid), the
 * same claims (but iss, and the time claims moved by the time since the
 * recording) and signed with the development key. The request keeps every
 * other byte: the new token is put where the old one lies in the Avro datum
 * (the fourth string of the request schema), whatever the framing, so a
 * value that is not in canonical Avro stays so.
 *
 * What is not re-minted, and why, matters as much: a value that does not
 * decode as a request is not a request (its token cannot be told apart from
 * its other bytes); a token refused by its form (alg none, an HMAC
 * algorithm, not three parts, no JSON) would become a valid one; a token
 * whose signature does not verify against the issuers the caller names
 * would become a good one. These are replayed as they were, so that the
 * KM-S judges them as it judged them the first time.
 *
 * Nothing here does I/O but reading the key and issuers files once.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "codec.h"
#include "file.h"
#include "jwt.h"
#include "resign.h"

#define KEY_FILE_MAX (1024 * 1024)

struct valctl_resigner {
	jwt_signer *signer;
	char *iss;
	char *kid;
	jwt_alg default_alg; /* the key's algorithm when the token's does not fit */
	jwt_verifier *verifier;
	codec *codec;
};

valctl_resigner *valctl_resigner_new(const char *key_file, const char *iss, const char *kid,
                                     const char *verify_file, char *errstr, size_t errstr_size)
{
	/* The algorithm a key signs with when the token's own does not fit
	 * it; PS256 only when the token had it. */
	static const jwt_alg key_algs[] = {JWT_ALG_ES256, JWT_ALG_ES384, JWT_ALG_RS256,
	                                   JWT_ALG_EDDSA};
	valctl_resigner *r = calloc(1, sizeof *r);
	codec_limits limits;
	char *key_pem;
	size_t i;

	if (r == NULL) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	r->iss = strdup(iss);
	r->kid = kid != NULL ? strdup(kid) : NULL;
	if (r->iss == NULL || (kid != NULL && r->kid == NULL)) {
		snprintf(errstr, errstr_size, "out of memory");
		goto fail;
	}
	key_pem = file_read(key_file, KEY_FILE_MAX, NULL, errstr, errstr_size);
	if (key_pem == NULL)
		goto fail;
	r->signer = jwt_signer_new(key_pem, errstr, errstr_size);
	OPENSSL_cleanse(key_pem, strlen(key_pem));
	free(key_pem);
	if (r->signer == NULL)
		goto fail;
	for (i = 0; i < sizeof key_algs / sizeof key_algs[0]; i++) {
		if (jwt_signer_fits(r->signer, key_algs[i]))
			break;
	}
	if (i == sizeof key_algs / sizeof key_algs[0]) {
		snprintf(errstr, errstr_size,
		         "the key is neither EC P-256 or P-384, RSA of 2048 bits or more, nor "
		         "Ed25519");
		goto fail;
	}
	r->default_alg = key_algs[i];
	if (verify_file != NULL) {
		r->verifier = jwt_verifier_new((1u << JWT_ALG__COUNT) - 1, 0, errstr, errstr_size);
		if (r->verifier == NULL ||
		    jwt_verifier_load_file(r->verifier, verify_file, errstr, errstr_size) < 0)
			goto fail;
	}
	/* Whatever a KM-S may be configured to take: the limits are the
	 * KM-S's business, replay only needs to find the token. */
	memset(&limits, 0, sizeof limits);
	limits.max_value_bytes = (size_t)256 * 1024 * 1024;
	limits.max_services = 10 * 1000 * 1000;
	limits.max_string_bytes = (size_t)64 * 1024 * 1024;
	limits.max_map_entries = 10 * 1000 * 1000;
	r->codec = codec_new(&limits, errstr, errstr_size);
	if (r->codec == NULL)
		goto fail;
	return r;
fail:
	valctl_resigner_destroy(r);
	return NULL;
}

void valctl_resigner_destroy(valctl_resigner *r)
{
	if (r == NULL)
		return;
	jwt_signer_destroy(r->signer);
	free(r->iss);
	free(r->kid);
	jwt_verifier_destroy(r->verifier);
	codec_destroy(r->codec);
	free(r);
}

/* An Avro long (zig-zag varint) at *pos; 0 and *pos moved, or -1. */
static int read_long(const unsigned char *p, size_t len, size_t *pos, int64_t *out)
{
	uint64_t z = 0;
	int shift;

	for (shift = 0; shift < 64 && *pos < len; shift += 7) {
		unsigned char b = p[(*pos)++];

		z |= (uint64_t)(b & 0x7f) << shift;
		if ((b & 0x80) == 0) {
			*out = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
			return 0;
		}
	}
	return -1;
}

static size_t write_long(unsigned char *out, int64_t v)
{
	uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
	size_t n = 0;

	while (z > 0x7f) {
		out[n++] = (unsigned char)((z & 0x7f) | 0x80);
		z >>= 7;
	}
	out[n++] = (unsigned char)z;
	return n;
}

/* The n-th string of a datum that begins with strings (n from 0): *start
 * at its length prefix, *bytes at its first byte, *end past it. */
static int nth_string(const unsigned char *d, size_t len, int n, size_t *start, size_t *bytes,
                      size_t *end)
{
	size_t pos = 0;
	int64_t l;
	int i;

	for (i = 0; i <= n; i++) {
		*start = pos;
		if (read_long(d, len, &pos, &l) != 0 || l < 0 || (uint64_t)l > len - pos)
			return -1;
		*bytes = pos;
		pos += (size_t)l;
		*end = pos;
	}
	return 0;
}

/* The decoded part of a token: 0 and a JSON object, -1 when it is not. */
static json_t *token_part(const char *part, size_t len)
{
	unsigned char *raw = NULL;
	size_t raw_len;
	json_t *j;

	if (jwt_base64url_decode(part, len, &raw, &raw_len) != 0)
		return NULL;
	j = json_loadb((const char *)raw, raw_len, JSON_REJECT_DUPLICATES, NULL);
	free(raw);
	if (j != NULL && !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static int shift_claim(json_t *payload, const char *name, int64_t shift_s)
{
	json_t *v = json_object_get(payload, name);

	if (json_is_integer(v))
		return json_integer_set(v, json_integer_value(v) + (json_int_t)shift_s);
	if (json_is_real(v))
		return json_real_set(v, json_real_value(v) + (double)shift_s);
	return 0;
}

/* A new token for old, or NULL with *why (kept) or errstr (error, *err). */
static char *remint(const valctl_resigner *r, const char *old, size_t old_len, int64_t shift_s,
                    const char **why, int *err, char *errstr, size_t errstr_size)
{
	const char *dot1, *dot2, *alg_name;
	json_t *header = NULL, *payload = NULL;
	char *header_text = NULL, *payload_text = NULL, *token = NULL, *copy = NULL;
	jwt_claims claims;
	jwt_alg alg;

	*err = 0;
	dot1 = memchr(old, '.', old_len);
	dot2 = dot1 != NULL ? memchr(dot1 + 1, '.', old_len - (size_t)(dot1 + 1 - old)) : NULL;
	if (dot2 == NULL || memchr(dot2 + 1, '.', old_len - (size_t)(dot2 + 1 - old)) != NULL) {
		*why = "the token is not a compact JWS";
		goto done;
	}
	header = token_part(old, (size_t)(dot1 - old));
	payload = token_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
	if (header == NULL || payload == NULL) {
		*why = "the token's header or payload is not a JSON object";
		goto done;
	}
	alg_name = json_string_value(json_object_get(header, "alg"));
	if (alg_name == NULL || jwt_alg_parse(alg_name, &alg) != 0) {
		/* none, HMAC or unknown: the KM-S refuses it by its form */
		*why = "the token's algorithm is not one a KM-S accepts";
		goto done;
	}
	if (r->verifier != NULL) {
		copy = strndup(old, old_len);
		if (copy == NULL)
			goto oom;
		memset(&claims, 0, sizeof claims);
		if (jwt_verify_signature(r->verifier, copy, &claims, errstr, errstr_size) != 0) {
			*why = "the token does not verify against the --verify-issuers keys";
			goto done;
		}
		jwt_claims_free(&claims);
	}
	if (!jwt_signer_fits(r->signer, alg))
		alg = r->default_alg;
	/* No --kid: a kid naming production's key would only mislead. */
	if (r->kid == NULL)
		json_object_del(header, "kid");
	else if (json_object_set_new(header, "kid", json_string(r->kid)) != 0)
		goto oom;
	if (json_object_set_new(header, "alg", json_string(jwt_alg_name(alg))) != 0 ||
	    json_object_set_new(payload, "iss", json_string(r->iss)) != 0 ||
	    shift_claim(payload, "iat", shift_s) != 0 ||
	    shift_claim(payload, "nbf", shift_s) != 0 || shift_claim(payload, "exp", shift_s) != 0)
		goto oom;
	header_text = json_dumps(header, JSON_COMPACT);
	payload_text = json_dumps(payload, JSON_COMPACT);
	if (header_text == NULL || payload_text == NULL)
		goto oom;
	token = jwt_signer_sign_raw(r->signer, alg, header_text, payload_text, errstr, errstr_size);
	if (token == NULL)
		*err = 1;
	goto done;
oom:
	snprintf(errstr, errstr_size, "out of memory");
	*err = 1;
done:
	free(copy);
	free(header_text);
	free(payload_text);
	json_decref(header);
	json_decref(payload);
	return token;
}

valctl_resign_result valctl_resign_value(const valctl_resigner *r, const unsigned char *value,
                                         size_t len, int64_t shift_s, unsigned char **out,
                                         size_t *out_len, const char **why, char *errstr,
                                         size_t errstr_size)
{
	unsigned char *probe = NULL, *buf = NULL;
	codec_request *req = NULL;
	size_t head, start, bytes, end, new_len, n;
	valctl_resign_result rc = VALCTL_RESIGN_NOT_REQUEST;
	codec_status st;
	uint64_t fp;
	char *token = NULL;
	int err, i;

	*out = NULL;
	*out_len = 0;
	*why = "the value is not a request that decodes";
	/* Single-object framing (C3 01 and the fingerprint) or the Confluent
	 * one (00 and a schema id): either way the datum follows. A Confluent
	 * datum is checked as a datum of the current request schema. */
	if (len >= 10 && value[0] == 0xc3 && value[1] == 0x01) {
		head = 10;
		st = codec_decode_request(r->codec, value, len, &req, NULL, errstr, errstr_size);
	} else if (len >= 5 && value[0] == 0x00) {
		head = 5;
		probe = malloc(len - 5 + 10);
		if (probe == NULL)
			goto oom;
		probe[0] = 0xc3;
		probe[1] = 0x01;
		fp = codec_request_fingerprint(r->codec);
		for (i = 0; i < 8; i++)
			probe[2 + i] = (unsigned char)(fp >> (8 * i));
		memcpy(probe + 10, value + 5, len - 5);
		st = codec_decode_request(r->codec, probe, len - 5 + 10, &req, NULL, errstr,
		                          errstr_size);
	} else {
		goto done;
	}
	if (st == CODEC_ERR_NOMEM)
		goto oom;
	if (st != CODEC_OK)
		goto done;
	/* requestId, requesterIdentity, endpoint, then credentials.accessToken:
	 * the fourth string, unless the writer's schema orders them otherwise. */
	if (nth_string(value + head, len - head, 3, &start, &bytes, &end) != 0 ||
	    end - bytes != strlen(req->access_token) ||
	    memcmp(value + head + bytes, req->access_token, end - bytes) != 0) {
		*why = "the token is not where the request schema puts it";
		rc = VALCTL_RESIGN_TOKEN_KEPT;
		goto done;
	}
	token = remint(r, req->access_token, strlen(req->access_token), shift_s, why, &err, errstr,
	               errstr_size);
	if (token == NULL) {
		rc = err ? VALCTL_RESIGN_ERROR : VALCTL_RESIGN_TOKEN_KEPT;
		goto done;
	}
	n = strlen(token);
	new_len = head + start + 10 + n + (len - head - end);
	buf = malloc(new_len);
	if (buf == NULL)
		goto oom;
	memcpy(buf, value, head + start);
	new_len = head + start;
	new_len += write_long(buf + new_len, (int64_t)n);
	memcpy(buf + new_len, token, n);
	new_len += n;
	memcpy(buf + new_len, value + head + end, len - head - end);
	new_len += len - head - end;
	*out = buf;
	*out_len = new_len;
	*why = NULL;
	rc = VALCTL_RESIGN_DONE;
	goto done;
oom:
	snprintf(errstr, errstr_size, "out of memory");
	rc = VALCTL_RESIGN_ERROR;
done:
	free(token);
	free(probe);
	codec_request_free(req);
	return rc;
}
