/*
 * kms: the SEAL Key Management Server's provisioning service.
 *
 *   kms [run] [settings]   consume, decide, reply (until SIGTERM)
 *   kms migrate [settings] create or upgrade the database schema; with a
 *                          registry, register the request and Result schemas
 *   kms config [settings]  print the effective settings, secrets masked
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "config.h"
#include "log.h"
#include "registry.h"
#include "service.h"
#include "store.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: kms [run|migrate|config] [settings]\n"
	           "  run      consume provisioning requests and answer them (default)\n"
	           "  migrate  create or upgrade the database schema and, with registry_url,\n"
	           "           register the request and Result schemas (BACKWARD), then exit\n"
	           "  config   print the effective settings (passwords masked), then exit\n\n");
	config_usage(f);
}

/* Register the current request and Result schemas under the topics'
 * TopicNameStrategy subjects (<topic>-value) and make each subject BACKWARD
 * compatible. Run twice, it changes nothing: a schema already registered is
 * found, not added again, and the level is set to what it is. */
/* Tries of one registration while the registry answers as if away (the
 * last waits 2 s; about 4 s in all). */
#define MIGRATE_REGISTRY_ATTEMPTS 5

static int register_schemas(const kms_config *cfg)
{
	char errstr[512];
	int rc = SERVICE_EXIT_FAILED;
	codec *c = codec_new(NULL, errstr, sizeof errstr);
	registry *r = NULL;

	if (c == NULL)
		goto fail;
	r = registry_new(cfg->registry_url, c, (long)cfg->registry_timeout_ms, errstr,
	                 sizeof errstr);
	if (r == NULL)
		goto fail;
	const struct {
		const char *topic;
		const char *json;
	} subjects[] = {
	    {cfg->requests_topic, codec_request_schema_json(c)},
	    {cfg->results_topic, codec_response_schema_json(c)},
	};
	for (size_t i = 0; i < sizeof subjects / sizeof subjects[0]; i++) {
		char subject[300];
		uint32_t id;
		int added = 0;
		registry_status st = REGISTRY_UNAVAILABLE;
		snprintf(subject, sizeof subject, "%s-value", subjects[i].topic);
		/* A passing outage (a 5xx, say from a registry whose pooled
		 * database connections died with a database restart) is tried
		 * again a few times, as the KM-S waits out a registry outage. */
		for (int attempt = 0; attempt < MIGRATE_REGISTRY_ATTEMPTS; attempt++) {
			if (attempt > 0)
				usleep((useconds_t)(250000u << (attempt - 1)));
			st = registry_schema_id(r, subject, subjects[i].json, 1, &id, &added,
			                        errstr, sizeof errstr);
			if (st == REGISTRY_OK)
				st = registry_set_compatibility(r, subject, "BACKWARD", errstr,
				                                sizeof errstr);
			if (st != REGISTRY_UNAVAILABLE)
				break;
		}
		if (st != REGISTRY_OK)
			goto fail;
		printf("schema %s: %s id %lu, compatibility BACKWARD\n", subject,
		       added ? "registered as" : "already registered as", (unsigned long)id);
	}
	rc = SERVICE_EXIT_OK;
fail:
	if (rc != SERVICE_EXIT_OK)
		fprintf(stderr, "kms migrate: %s\n", errstr);
	registry_destroy(r);
	codec_destroy(c);
	return rc;
}

static int migrate(const kms_config *cfg)
{
	char errstr[512];
	store *s = store_new(cfg->dsn, errstr, sizeof errstr);
	if (s == NULL) {
		fprintf(stderr, "kms migrate: %s\n", errstr);
		return SERVICE_EXIT_FAILED;
	}
	int n = store_migrate(s, errstr, sizeof errstr);
	store_destroy(s);
	if (n < 0) {
		fprintf(stderr, "kms migrate: %s\n", errstr);
		return SERVICE_EXIT_FAILED;
	}
	printf("applied %d migration%s\n", n, n == 1 ? "" : "s");
	return cfg->registry_url[0] != '\0' ? register_schemas(cfg) : SERVICE_EXIT_OK;
}

int main(int argc, char **argv)
{
	const char *cmd = "run";
	int first = 1;
	if (argc > 1 && argv[1][0] != '-') {
		cmd = argv[1];
		first = 2;
	}
	if (strcmp(cmd, "help") == 0) {
		usage(stdout);
		return SERVICE_EXIT_OK;
	}
	if (strcmp(cmd, "run") != 0 && strcmp(cmd, "migrate") != 0 && strcmp(cmd, "config") != 0) {
		fprintf(stderr, "kms: unknown command '%s' (try kms --help)\n", cmd);
		return SERVICE_EXIT_MISUSE;
	}
	for (int i = first; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return SERVICE_EXIT_OK;
		}
	}

	kms_config cfg;
	config_derived derived;
	char errstr[512];
	int rc = config_load(&cfg, argc - first, argv + first, errstr, sizeof errstr);
	if (rc == 0 && config_validate(&cfg, &derived, errstr, sizeof errstr) != 0)
		rc = -1;
	if (rc != 0) {
		fprintf(stderr, "kms: %s (try kms --help)\n", errstr);
		config_free(&cfg);
		return SERVICE_EXIT_MISUSE;
	}
	log_set_level(derived.log_level);
	log_set_service("kms");

	if (strcmp(cmd, "config") == 0) {
		config_print(&cfg, stdout);
		rc = SERVICE_EXIT_OK;
	} else if (strcmp(cmd, "migrate") == 0) {
		rc = migrate(&cfg);
	} else {
		rc = service_run(&cfg, &derived);
	}
	config_derived_free(&derived);
	config_free(&cfg);
	return rc;
}
