/*
 * sla: the SLA half of authorization (contract rules 4 and 5), as a pure
 * function of what the store read under the provider's row lock. No I/O, so
 * every rule is tested without PostgreSQL.
 */
#ifndef KMS_SLA_H
#define KMS_SLA_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

/* One SLA of a VAL service provider. Borrowed strings. */
typedef struct {
	int64_t sla_id;
	const char *const *services; /* VAL service IDs it covers */
	size_t service_count;
	unsigned key_formats; /* bit set of (1u << codec_key_format_type) */
	int64_t max_val_servers;
	int64_t valid_from_ms; /* active when valid_from <= now < valid_until */
	int64_t valid_until_ms;
	int revoked;
} sla_terms;

/* What is known of the provider and the VAL server. Borrowed. */
typedef struct {
	const char *vsp_id;    /* the token's vsp_id, named in details */
	int provider_known;    /* the provider exists */
	int provider_enabled;  /* and is not disabled */
	const sla_terms *slas; /* the provider's SLAs; inactive ones are ignored */
	size_t sla_count;
	int val_server_stored;         /* the VAL server is stored already ... */
	int val_server_other_provider; /* ... under another provider */
	int64_t val_server_count;      /* VAL servers the provider has */
	int64_t now_ms;
} sla_context;

/* Decide rules 4 and 5 for a request listing services[0..n). Returns
 * CODEC_CAUSE_NONE when allowed, else CODEC_CAUSE_NOT_ALLOWED_BY_SLA or
 * CODEC_CAUSE_KEY_FORMAT_NOT_ALLOWED with detail filled with one sentence.
 *
 * The rules, in the order they are checked (the first failure is reported):
 *  1. the provider exists and is enabled;
 *  2. every service is covered by an active SLA;
 *  3. a stored VAL server belongs to this provider;
 *  4. a VAL server not stored yet is admitted only if, for every service, an
 *     active SLA covering it has room: val_server_count < max_val_servers;
 *  5. every service's formatType is allowed by an active SLA covering it
 *     (for a new VAL server, one that has room).
 * Rules 1 to 4 fail with NOT_ALLOWED_BY_SLA, rule 5 with
 * KEY_FORMAT_NOT_ALLOWED. */
codec_cause sla_evaluate(const sla_context *ctx, const codec_val_service *services, size_t n,
                         char *detail, size_t detail_size) __attribute__((warn_unused_result));

#endif
