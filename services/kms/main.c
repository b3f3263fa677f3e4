/*
 * kms: the SEAL Key Management Server's provisioning service.
 *
 *   kms [run] [settings]   consume, decide, reply (until SIGTERM)
 *   kms migrate [settings] create or upgrade the database schema
 *   kms config [settings]  print the effective settings, secrets masked
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "service.h"
#include "store.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: kms [run|migrate|config] [settings]\n"
	           "  run      consume provisioning requests and answer them (default)\n"
	           "  migrate  create or upgrade the database schema, then exit\n"
	           "  config   print the effective settings (passwords masked), then exit\n\n");
	config_usage(f);
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
	return SERVICE_EXIT_OK;
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
	char errstr[512];
	int rc = config_load(&cfg, argc - first, argv + first, errstr, sizeof errstr);
	if (rc == 0 && config_validate(&cfg, errstr, sizeof errstr) != 0)
		rc = -1;
	if (rc != 0) {
		fprintf(stderr, "kms: %s (try kms --help)\n", errstr);
		config_free(&cfg);
		return SERVICE_EXIT_MISUSE;
	}
	log_level level = LOG_INFO;
	if (log_level_parse(cfg.log_level, &level) != 0) {
		fprintf(stderr, "kms: log_level must be debug, info, warn or error\n");
		config_free(&cfg);
		return SERVICE_EXIT_MISUSE;
	}
	log_set_level(level);
	log_set_service("kms");

	if (strcmp(cmd, "config") == 0) {
		config_print(&cfg, stdout);
		rc = SERVICE_EXIT_OK;
	} else if (strcmp(cmd, "migrate") == 0) {
		rc = migrate(&cfg);
	} else {
		rc = service_run(&cfg);
	}
	config_free(&cfg);
	return rc;
}
