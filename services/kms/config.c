/*
 * config: every KM-S setting is one row of the table below (name, type,
 * default, offset into kms_config, help). Loading walks the sources in
 * order of precedence: defaults, the file, the environment, the flags.
 * Validation checks what the table cannot and derives, once, what the
 * strings mean (config_derived: the compiled reply-topic pattern, the
 * algorithm mask, the log level), so that nothing parses them again.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <libpq-fe.h>
#include <errno.h>
#include <limits.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "dsn.h"
#include "jwt.h"
#include "log.h"
#include "num.h"

typedef enum { OPT_STR, OPT_INT, OPT_BOOL } opt_type;

typedef struct {
	const char *name;
	opt_type type;
	const char *def;
	size_t offset;
	int64_t min, max;
	const char *help;
} opt;

#define STR(field, def, help)                                                                      \
	{                                                                                          \
#field, OPT_STR, def, offsetof(kms_config, field), 0, 0, help                      \
	}
#define INT(field, def, lo, hi, help)                                                              \
	{                                                                                          \
#field, OPT_INT, def, offsetof(kms_config, field), lo, hi, help                    \
	}
#define BOOL(field, def, help)                                                                     \
	{                                                                                          \
#field, OPT_BOOL, def, offsetof(kms_config, field), 0, 1, help                     \
	}

static const opt opts[] = {
    STR(bootstrap, "127.0.0.1:19092", "Kafka bootstrap servers"),
    STR(dsn, "postgresql://postgres@127.0.0.1:15432/kms", "PostgreSQL connection string"),
    STR(group_id, "seal-kms", "consumer group of the KM-S instances"),
    STR(kms_id, "", "this KM-S's identity in Results (default kms-HOSTNAME)"),
    STR(requests_topic, "seal.km.provisioning.requests", "topic of requests"),
    STR(results_topic, "seal.km.provisioning.results", "default topic of Results"),
    STR(dlq_topic, "seal.km.provisioning.dlq", "dead-letter topic"),
    STR(reply_topic_pattern, "",
        "regex a kafka_replyTopic must match (default: any but requests, DLQ and __ topics)"),
    STR(issuers_file, "", "JSON file of trusted token issuers and their public keys"),
    STR(jwt_algs, "ES256,ES384,RS256,PS256,EdDSA", "allowed token signature algorithms"),
    STR(scope, "ss-kpp", "scope the access token must carry"),
    STR(log_level, "info", "debug, info, warn or error"),
    STR(registry_url, "",
        "schema registry for Confluent-framed values, its Confluent-compatible API "
        "(e.g. http://127.0.0.1:8080/apis/ccompat/v7)"),
    STR(schemas_dir, "", "folder of further request schema versions (.avsc) known by fingerprint"),
    INT(registry_timeout_ms, "5000", 100, 600000, "bound on one exchange with the registry"),
    INT(leeway_s, "30", 0, 30, "clock skew leeway for exp, nbf, iat (seconds, at most 30)"),
    INT(max_value_bytes, "1048576", 64, 64 * 1048576, "largest request value accepted"),
    INT(max_services, "1000", 1, 100000, "most VAL services in one request"),
    INT(max_token_bytes, "8192", 256, 1048576, "largest access token accepted"),
    INT(token_cache_entries, "10000", 0, 1000000,
        "verified tokens kept until their exp, least recently used out (0: no cache)"),
    INT(batch_max, "500", 1, 100000, "most requests decided in one transaction"),
    INT(batch_wait_ms, "0", 0, 10000,
        "how long a batch waits to fill (0: take what is waiting, decide it at once)"),
    INT(health_port, "0", 0, 65535, "HTTP port of /livez, /readyz and /metrics (0: off)"),
    STR(health_address, "127.0.0.1",
        "IP address the health port listens on (0.0.0.0 or :: for containers)"),
    INT(stall_timeout_ms, "60000", 0, 86400000,
        "not ready when a partition has lag and no progress this long (0: never)"),
    INT(shutdown_timeout_ms, "30000", 100, 3600000, "bound on a graceful shutdown"),
    INT(max_poll_interval_ms, "300000", 10000, 86400000, "librdkafka max.poll.interval.ms"),
    INT(retry_backoff_max_ms, "5000", 10, 600000, "longest wait between retries"),
    BOOL(exactly_once, "true",
         "each batch's Results, DLQ records and offsets in one Kafka transaction (false: "
         "idempotent producer and offset commits, for brokers without transactions)"),
    STR(transactional_id, "",
        "Kafka transactional.id of this instance, stable across restarts and unique in the "
        "cluster (default GROUP_ID.KMS_ID)"),
    INT(transaction_timeout_ms, "60000", 1000, 900000,
        "librdkafka transaction.timeout.ms: the longest broker outage a transaction outlives, "
        "and how long one left open by a crashed instance that is not restarted holds back "
        "read_committed readers"),
};

#define NOPTS (sizeof opts / sizeof opts[0])

static char **str_field(kms_config *cfg, const opt *o)
{
	return (char **)(void *)((char *)cfg + o->offset);
}

static int64_t *int_field(kms_config *cfg, const opt *o)
{
	return (int64_t *)(void *)((char *)cfg + o->offset);
}

static const opt *find_opt(const char *name, size_t len)
{
	for (size_t i = 0; i < NOPTS; i++) {
		const char *n = opts[i].name;
		if (strlen(n) != len)
			continue;
		size_t j = 0;
		/* flags spell '_' as '-'; both are accepted */
		for (; j < len; j++) {
			char c = name[j] == '-' ? '_' : name[j];
			if (c != n[j])
				break;
		}
		if (j == len)
			return &opts[i];
	}
	return NULL;
}

static int parse_bool(const char *s, int64_t *out)
{
	static const char *const yes[] = {"true", "1", "yes", "on"};
	static const char *const no[] = {"false", "0", "no", "off"};
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

static int set_opt(kms_config *cfg, const opt *o, const char *value, const char *source,
                   char *errstr, size_t errstr_size)
{
	if (o->type == OPT_STR) {
		char *copy = strdup(value);
		if (copy == NULL) {
			snprintf(errstr, errstr_size, "out of memory");
			return -1;
		}
		free(*str_field(cfg, o));
		*str_field(cfg, o) = copy;
		return 0;
	}
	int64_t v;
	if (o->type == OPT_BOOL) {
		if (parse_bool(value, &v) != 0) {
			snprintf(errstr, errstr_size, "%s: %s must be true or false", source,
			         o->name);
			return -1;
		}
		*int_field(cfg, o) = v;
		return 0;
	}
	if (num_parse_i64(value, o->min, o->max, &v) != 0) {
		snprintf(errstr, errstr_size, "%s: %s must be a whole number from %lld to %lld",
		         source, o->name, (long long)o->min, (long long)o->max);
		return -1;
	}
	*int_field(cfg, o) = v;
	return 0;
}

static int add_rdkafka(kms_config *cfg, const char *kv, const char *source, char *errstr,
                       size_t errstr_size)
{
	const char *eq = strchr(kv, '=');
	if (eq == NULL || eq == kv) {
		snprintf(errstr, errstr_size, "%s: -X takes key=value", source);
		return -1;
	}
	if (cfg->rdkafka_count == CONFIG_MAX_RDKAFKA) {
		snprintf(errstr, errstr_size, "%s: too many -X properties", source);
		return -1;
	}
	char *k = strndup(kv, (size_t)(eq - kv));
	char *v = strdup(eq + 1);
	if (k == NULL || v == NULL) {
		free(k);
		free(v);
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	cfg->rdkafka_keys[cfg->rdkafka_count] = k;
	cfg->rdkafka_values[cfg->rdkafka_count] = v;
	cfg->rdkafka_count++;
	return 0;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

static int load_file(kms_config *cfg, const char *path, char *errstr, size_t errstr_size)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		snprintf(errstr, errstr_size, "cannot open config file %s: %s", path,
		         strerror(errno));
		return -1;
	}
	char line[4096];
	int lineno = 0, rc = 0;
	while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
		lineno++;
		char source[64];
		snprintf(source, sizeof source, "config line %d", lineno);
		char *s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		char *eq = strchr(s, '=');
		if (eq == NULL) {
			snprintf(errstr, errstr_size, "%s: expected name = value", source);
			rc = -1;
			break;
		}
		*eq = '\0';
		char *name = trim(s), *value = trim(eq + 1);
		if (strncmp(name, "rdkafka.", 8) == 0) {
			char kv[4096];
			int n = snprintf(kv, sizeof kv, "%s=%s", name + 8, value);
			if (n < 0 || (size_t)n >= sizeof kv) {
				snprintf(errstr, errstr_size, "%s: too long", source);
				rc = -1;
				break;
			}
			rc = add_rdkafka(cfg, kv, source, errstr, errstr_size);
			continue;
		}
		const opt *o = find_opt(name, strlen(name));
		if (o == NULL) {
			snprintf(errstr, errstr_size, "%s: unknown setting '%s'", source, name);
			rc = -1;
			break;
		}
		rc = set_opt(cfg, o, value, source, errstr, errstr_size);
	}
	fclose(f);
	return rc;
}

void config_usage(void *file)
{
	FILE *f = file;
	fprintf(f, "settings (flag --name VALUE, environment KMS_NAME, file 'name = value'):\n");
	for (size_t i = 0; i < NOPTS; i++) {
		char flag[64];
		snprintf(flag, sizeof flag, "%s", opts[i].name);
		for (char *p = flag; *p; p++)
			if (*p == '_')
				*p = '-';
		fprintf(f, "  --%-22s %s (default: %s)\n", flag, opts[i].help,
		        *opts[i].def ? opts[i].def : "none");
	}
	fprintf(f, "  --config FILE            read settings from FILE (or KMS_CONFIG)\n"
	           "  -X key=value             librdkafka property (file: rdkafka.key = value)\n"
	           "  -h, --help               this text\n");
}

int config_load(kms_config *cfg, int argc, char **argv, char *errstr, size_t errstr_size)
{
	memset(cfg, 0, sizeof *cfg);
	for (size_t i = 0; i < NOPTS; i++)
		if (set_opt(cfg, &opts[i], opts[i].def, "default", errstr, errstr_size) != 0)
			return -1;

	/* The file first: it comes lowest after the defaults. */
	const char *file = getenv("KMS_CONFIG");
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			file = argv[i + 1];
		else if (strncmp(argv[i], "--config=", 9) == 0)
			file = argv[i] + 9;
	}
	if (file != NULL && *file != '\0' && load_file(cfg, file, errstr, errstr_size) != 0)
		return -1;

	for (size_t i = 0; i < NOPTS; i++) {
		char env[80] = "KMS_";
		size_t k = 4;
		for (const char *p = opts[i].name; *p && k + 1 < sizeof env; p++)
			env[k++] = (char)toupper((unsigned char)*p);
		env[k] = '\0';
		const char *v = getenv(env);
		if (v != NULL && set_opt(cfg, &opts[i], v, env, errstr, errstr_size) != 0)
			return -1;
	}

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			config_usage(stdout);
			return 1;
		}
		if (strcmp(a, "-X") == 0) {
			if (i + 1 >= argc) {
				snprintf(errstr, errstr_size, "-X needs key=value");
				return -1;
			}
			if (add_rdkafka(cfg, argv[++i], "-X", errstr, errstr_size) != 0)
				return -1;
			continue;
		}
		if (strncmp(a, "--", 2) != 0) {
			snprintf(errstr, errstr_size, "unexpected argument '%s'", a);
			return -1;
		}
		const char *name = a + 2, *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
		const char *value;
		if (eq != NULL) {
			value = eq + 1;
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			snprintf(errstr, errstr_size, "--%s needs a value", name);
			return -1;
		}
		if (len == 6 && strncmp(name, "config", 6) == 0)
			continue;
		const opt *o = find_opt(name, len);
		if (o == NULL) {
			snprintf(errstr, errstr_size, "unknown flag '%.*s'", (int)len, a);
			return -1;
		}
		if (set_opt(cfg, o, value, "flag", errstr, errstr_size) != 0)
			return -1;
	}

	if (cfg->kms_id[0] == '\0') {
		char host[256] = "localhost";
		gethostname(host, sizeof host - 1);
		host[sizeof host - 1] = '\0';
		char id[300];
		snprintf(id, sizeof id, "kms-%s", host);
		free(cfg->kms_id);
		cfg->kms_id = strdup(id);
		if (cfg->kms_id == NULL) {
			snprintf(errstr, errstr_size, "out of memory");
			return -1;
		}
	}
	if (cfg->transactional_id[0] == '\0') {
		/* Stable across restarts, so that a restarted instance fences the
		 * process it replaces; the group keeps two deployments that share
		 * a cluster and host names apart. */
		size_t n = strlen(cfg->group_id) + 1 + strlen(cfg->kms_id) + 1;
		char *id = malloc(n);
		if (id == NULL) {
			snprintf(errstr, errstr_size, "out of memory");
			return -1;
		}
		snprintf(id, n, "%s.%s", cfg->group_id, cfg->kms_id);
		free(cfg->transactional_id);
		cfg->transactional_id = id;
	}
	return 0;
}

/* The allow-list of token algorithms as a bit set of (1u << jwt_alg). */
static int alg_mask(const kms_config *cfg, unsigned *mask, char *errstr, size_t errstr_size)
{
	*mask = 0;
	const char *p = cfg->jwt_algs;
	while (*p != '\0') {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char name[32];
		jwt_alg a;
		if (len == 0 || len >= sizeof name) {
			snprintf(errstr, errstr_size, "jwt_algs: empty or overlong algorithm name");
			return -1;
		}
		memcpy(name, p, len);
		name[len] = '\0';
		if (jwt_alg_parse(name, &a) != 0) {
			snprintf(errstr, errstr_size, "jwt_algs: '%s' is not an allowed algorithm",
			         name);
			return -1;
		}
		*mask |= 1u << a;
		p += len;
		if (*p == ',')
			p++;
	}
	if (*mask == 0) {
		snprintf(errstr, errstr_size, "jwt_algs names no algorithm");
		return -1;
	}
	return 0;
}

static int validate(const kms_config *cfg, config_derived *d, char *errstr, size_t errstr_size)
{
	if (cfg->bootstrap[0] == '\0' || cfg->dsn[0] == '\0' || cfg->group_id[0] == '\0') {
		snprintf(errstr, errstr_size, "bootstrap, dsn and group_id must not be empty");
		return -1;
	}
	/* A connection string libpq cannot parse is a mistake to report now,
	 * not an outage to wait out. */
	char *perr = NULL;
	PQconninfoOption *parsed = PQconninfoParse(cfg->dsn, &perr);
	if (parsed == NULL) {
		snprintf(errstr, errstr_size, "dsn is not a valid connection string: %s",
		         perr != NULL ? perr : "out of memory");
		dsn_scrub(cfg->dsn, errstr, errstr_size);
		for (char *p = errstr; *p; p++)
			if (*p == '\n')
				*p = ' ';
		PQfreemem(perr);
		return -1;
	}
	PQconninfoFree(parsed);
	if (strlen(cfg->kms_id) > 120) {
		snprintf(errstr, errstr_size, "kms_id is longer than 120 bytes");
		return -1;
	}
	if (strlen(cfg->transactional_id) > 255) {
		snprintf(errstr, errstr_size, "transactional_id is longer than 255 bytes");
		return -1;
	}
	if (cfg->reply_topic_pattern[0] != '\0') {
		if (regcomp(&d->reply_re, cfg->reply_topic_pattern, REG_EXTENDED | REG_NOSUB) !=
		    0) {
			snprintf(errstr, errstr_size, "reply_topic_pattern is not a valid regex");
			return -1;
		}
		d->has_reply_re = 1;
	}
	unsigned char addr[sizeof(struct in6_addr)];
	if (inet_pton(AF_INET, cfg->health_address, addr) != 1 &&
	    inet_pton(AF_INET6, cfg->health_address, addr) != 1) {
		snprintf(errstr, errstr_size, "health_address must be an IPv4 or IPv6 address");
		return -1;
	}
	if (cfg->registry_url[0] != '\0' && strncmp(cfg->registry_url, "http://", 7) != 0 &&
	    strncmp(cfg->registry_url, "https://", 8) != 0) {
		snprintf(errstr, errstr_size, "registry_url must begin with http:// or https://");
		return -1;
	}
	if (alg_mask(cfg, &d->alg_mask, errstr, errstr_size) != 0)
		return -1;
	if (log_level_parse(cfg->log_level, &d->log_level) != 0) {
		snprintf(errstr, errstr_size, "log_level must be debug, info, warn or error");
		return -1;
	}
	return 0;
}

int config_validate(const kms_config *cfg, config_derived *out, char *errstr, size_t errstr_size)
{
	/* compiled in place: POSIX does not say a regex_t may be copied */
	config_derived local, *d = out != NULL ? out : &local;
	memset(d, 0, sizeof *d);
	d->log_level = LOG_INFO;
	if (validate(cfg, d, errstr, errstr_size) != 0) {
		config_derived_free(d);
		return -1;
	}
	if (d == &local)
		config_derived_free(&local);
	return 0;
}

void config_derived_free(config_derived *d)
{
	if (d == NULL)
		return;
	if (d->has_reply_re)
		regfree(&d->reply_re);
	memset(d, 0, sizeof *d);
}

/* A URL with its user information (user:password@) masked. */
static void url_mask(const char *url, char *out, size_t size)
{
	const char *scheme = strstr(url, "://");
	const char *host = scheme ? scheme + 3 : url;
	const char *slash = strchr(host, '/');
	const char *at = strchr(host, '@');
	if (scheme == NULL || at == NULL || (slash != NULL && at > slash)) {
		snprintf(out, size, "%s", url);
		return;
	}
	snprintf(out, size, "%.*s****%s", (int)(host - url), url, at);
}

void config_print(const kms_config *cfg, void *file)
{
	FILE *f = file;
	kms_config *c = (kms_config *)(void *)cfg;
	for (size_t i = 0; i < NOPTS; i++) {
		if (opts[i].type == OPT_BOOL) {
			fprintf(f, "%s = %s\n", opts[i].name,
			        *int_field(c, &opts[i]) ? "true" : "false");
		} else if (opts[i].type == OPT_INT) {
			fprintf(f, "%s = %lld\n", opts[i].name, (long long)*int_field(c, &opts[i]));
		} else if (strcmp(opts[i].name, "registry_url") == 0) {
			char masked[1024];
			url_mask(cfg->registry_url, masked, sizeof masked);
			fprintf(f, "%s = %s\n", opts[i].name, masked);
		} else if (strcmp(opts[i].name, "dsn") == 0) {
			char masked[1024];
			dsn_mask(cfg->dsn, masked, sizeof masked);
			fprintf(f, "%s = %s\n", opts[i].name, masked);
		} else {
			fprintf(f, "%s = %s\n", opts[i].name, *str_field(c, &opts[i]));
		}
	}
	for (size_t i = 0; i < cfg->rdkafka_count; i++) {
		const char *k = cfg->rdkafka_keys[i];
		int secret = strstr(k, "password") != NULL || strstr(k, "secret") != NULL;
		fprintf(f, "rdkafka.%s = %s\n", k, secret ? "****" : cfg->rdkafka_values[i]);
	}
}

void config_free(kms_config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < NOPTS; i++)
		if (opts[i].type == OPT_STR)
			free(*str_field(cfg, &opts[i]));
	for (size_t i = 0; i < cfg->rdkafka_count; i++) {
		free(cfg->rdkafka_keys[i]);
		free(cfg->rdkafka_values[i]);
	}
	memset(cfg, 0, sizeof *cfg);
}
