/*
 * config: the KM-S's settings, from one table of name, type and default.
 * Sources, later ones winning: the defaults, a file (`--config FILE` or
 * KMS_CONFIG), the environment (KMS_<NAME>), then command-line flags
 * (--name value or --name=value). `-X key=value` and file lines
 * `rdkafka.key = value` go to librdkafka unchanged.
 */
#ifndef KMS_CONFIG_H
#define KMS_CONFIG_H

#include <regex.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define CONFIG_MAX_RDKAFKA 64

typedef struct {
	char *bootstrap;
	char *dsn;
	char *group_id;
	char *kms_id;
	char *requests_topic;
	char *results_topic;
	char *dlq_topic;
	char *reply_topic_pattern; /* POSIX extended regex; "" = the default rule */
	char *issuers_file;
	char *jwt_algs; /* comma-separated allow-list */
	char *scope;
	char *log_level;
	char *health_address; /* IPv4 or IPv6 literal the health port listens on */
	char *registry_url;   /* Confluent-compatible API base; "" = no registry */
	char *schemas_dir;    /* more request schema versions (.avsc); "" = none */
	int64_t registry_timeout_ms;
	int64_t leeway_s;
	int64_t max_value_bytes;
	int64_t max_services;
	int64_t max_token_bytes;
	int64_t token_cache_entries; /* 0: every token verified at every use */
	int64_t batch_max;
	int64_t batch_wait_ms;
	int64_t health_port;      /* 0: no health endpoint */
	int64_t stall_timeout_ms; /* lag without progress this long: not ready (0: off) */
	int64_t shutdown_timeout_ms;
	int64_t max_poll_interval_ms;
	int64_t retry_backoff_max_ms;
	int64_t exactly_once;   /* 1: Kafka transactions; 0: at least once */
	char *transactional_id; /* never empty after config_load() */
	int64_t transaction_timeout_ms;
	/* librdkafka properties, applied to consumer and producer */
	size_t rdkafka_count;
	char *rdkafka_keys[CONFIG_MAX_RDKAFKA];
	char *rdkafka_values[CONFIG_MAX_RDKAFKA];
} kms_config;

/* Build the configuration from all sources. argv holds only the flags (the
 * subcommand removed). Returns 0, 1 when --help was asked (usage printed to
 * stdout), or -1 with errstr filled (misuse). Caller frees with
 * config_free(). */
int config_load(kms_config *cfg, int argc, char **argv, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));
void config_free(kms_config *cfg);

/* What the settings' strings mean, worked out once by config_validate()
 * and passed down const: no other code parses those strings again. */
typedef struct {
	unsigned alg_mask;   /* jwt_algs as a bit set of (1u << jwt_alg) */
	log_level log_level; /* log_level */
	int has_reply_re;    /* reply_topic_pattern is set ... */
	regex_t reply_re;    /* ... and compiled (REG_EXTENDED | REG_NOSUB) */
} config_derived;

/* Check the values the table cannot (the connection string, the regex, the
 * algorithm list, the log level, ...) and derive what they mean into *out
 * (NULL: check only). Returns 0, or -1 with errstr filled and *out holding
 * nothing to free. On success the caller frees *out with
 * config_derived_free(). */
int config_validate(const kms_config *cfg, config_derived *out, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));
void config_derived_free(config_derived *d); /* NULL is a no-op */

/* Print every setting as "name = value" to f, passwords in connection strings
 * masked. */
void config_print(const kms_config *cfg, void *file);

/* Print the flags' help to f. */
void config_usage(void *file);

#endif
