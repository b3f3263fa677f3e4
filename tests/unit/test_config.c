/*
 * Tests of config: precedence of file, environment and flags, librdkafka
 * pass-through, range checks, and masking of passwords.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "dsn.h"

static char file_path[64];

static void write_file(const char *text)
{
	snprintf(file_path, sizeof file_path, "/tmp/kms-config-test-%d.conf", (int)getpid());
	FILE *f = fopen(file_path, "w");
	if (f != NULL) {
		fputs(text, f);
		fclose(f);
	}
}

static int test_defaults(void)
{
	unsetenv("KMS_CONFIG");
	unsetenv("KMS_BATCH_MAX");
	kms_config c;
	char err[256];
	CHECK_INT(config_load(&c, 0, NULL, err, sizeof err), 0);
	CHECK_STR(c.requests_topic, "seal.km.provisioning.requests");
	CHECK_STR(c.scope, "ss-kpp");
	CHECK_INT(c.leeway_s, 30);
	CHECK_INT(c.max_value_bytes, 1048576);
	CHECK(strncmp(c.kms_id, "kms-", 4) == 0);
	CHECK_INT(config_validate(&c, NULL, err, sizeof err), 0);
	config_free(&c);
	return 0;
}

static int test_flag_over_env_over_file(void)
{
	write_file("# a comment\nbatch_max = 7\nscope = from-file\ngroup_id = g-file\n"
	           "rdkafka.socket.timeout.ms = 1234\n");
	setenv("KMS_CONFIG", file_path, 1);
	setenv("KMS_SCOPE", "from-env", 1);
	setenv("KMS_GROUP_ID", "g-env", 1);
	char *argv[] = {"--group-id", "g-flag", "-X", "debug=broker", NULL};
	kms_config c;
	char err[256];
	int rc = config_load(&c, 4, argv, err, sizeof err);
	unsetenv("KMS_CONFIG");
	unsetenv("KMS_SCOPE");
	unsetenv("KMS_GROUP_ID");
	unlink(file_path);
	CHECK_INT(rc, 0);
	CHECK_INT(c.batch_max, 7);       /* file only */
	CHECK_STR(c.scope, "from-env");  /* env over file */
	CHECK_STR(c.group_id, "g-flag"); /* flag over env */
	CHECK_INT(c.rdkafka_count, 2);
	CHECK_STR(c.rdkafka_keys[0], "socket.timeout.ms");
	CHECK_STR(c.rdkafka_values[0], "1234");
	CHECK_STR(c.rdkafka_keys[1], "debug");
	CHECK_STR(c.rdkafka_values[1], "broker");
	config_free(&c);
	return 0;
}

static int test_flag_with_equals(void)
{
	char *argv[] = {"--batch-wait-ms=3", "--kms-id", "kms-a", NULL};
	kms_config c;
	char err[256];
	CHECK_INT(config_load(&c, 3, argv, err, sizeof err), 0);
	CHECK_INT(c.batch_wait_ms, 3);
	CHECK_STR(c.kms_id, "kms-a");
	config_free(&c);
	return 0;
}

static int test_unknown_flag(void)
{
	char *argv[] = {"--no-such-thing", "1", NULL};
	kms_config c;
	char err[256] = "";
	CHECK_INT(config_load(&c, 2, argv, err, sizeof err), -1);
	CHECK(strstr(err, "unknown flag") != NULL);
	config_free(&c);
	return 0;
}

static int test_out_of_range(void)
{
	char *argv[] = {"--leeway-s", "31", NULL};
	kms_config c;
	char err[256] = "";
	CHECK_INT(config_load(&c, 2, argv, err, sizeof err), -1);
	CHECK(strstr(err, "leeway_s") != NULL);
	config_free(&c);
	char *argv2[] = {"--batch-max", "12abc", NULL};
	CHECK_INT(config_load(&c, 2, argv2, err, sizeof err), -1);
	config_free(&c);
	return 0;
}

static int test_token_cache_entries(void)
{
	kms_config c;
	char err[256] = "";
	CHECK_INT(config_load(&c, 0, NULL, err, sizeof err), 0);
	CHECK_INT(c.token_cache_entries, 10000);
	config_free(&c);
	/* 0 turns the cache off and is a legal value */
	char *off[] = {"--token-cache-entries", "0", NULL};
	CHECK_INT(config_load(&c, 2, off, err, sizeof err), 0);
	CHECK_INT(c.token_cache_entries, 0);
	config_free(&c);
	char *neg[] = {"--token-cache-entries", "-1", NULL};
	CHECK_INT(config_load(&c, 2, neg, err, sizeof err), -1);
	CHECK(strstr(err, "token_cache_entries") != NULL);
	config_free(&c);
	return 0;
}

static int test_bad_file_line(void)
{
	write_file("batch_max 7\n");
	setenv("KMS_CONFIG", file_path, 1);
	kms_config c;
	char err[256] = "";
	int rc = config_load(&c, 0, NULL, err, sizeof err);
	unsetenv("KMS_CONFIG");
	unlink(file_path);
	CHECK_INT(rc, -1);
	CHECK(strstr(err, "line 1") != NULL);
	config_free(&c);
	return 0;
}

static int test_bad_alg_list(void)
{
	char *argv[] = {"--jwt-algs", "ES256,HS256", NULL};
	kms_config c;
	char err[256] = "";
	CHECK_INT(config_load(&c, 2, argv, err, sizeof err), 0);
	CHECK_INT(config_validate(&c, NULL, err, sizeof err), -1);
	CHECK(strstr(err, "HS256") != NULL);
	config_free(&c);
	return 0;
}

static int test_malformed_dsn_is_misuse(void)
{
	char *argv[] = {"--dsn", "postgresql://u:s3cret%zz@h/db", NULL};
	kms_config c;
	char err[256] = "";
	CHECK_INT(config_load(&c, 2, argv, err, sizeof err), 0);
	CHECK_INT(config_validate(&c, NULL, err, sizeof err), -1);
	CHECK(strstr(err, "dsn is not a valid connection string") != NULL);
	CHECK(strstr(err, "s3cret") == NULL);
	config_free(&c);
	return 0;
}

static int test_mask_dsn(void)
{
	char out[256];
	dsn_mask("postgresql://kms:s3cret@db:5432/kms?sslmode=verify-full", out, sizeof out);
	CHECK_STR(out, "postgresql://kms:****@db:5432/kms?sslmode=verify-full");
	dsn_mask("postgresql://kms@db/kms", out, sizeof out);
	CHECK_STR(out, "postgresql://kms@db/kms");
	dsn_mask("host=db user=kms password=s3cret dbname=kms", out, sizeof out);
	CHECK_STR(out, "host=db user=kms password=**** dbname=kms");
	dsn_mask("host=db password = 'a b\\' c' dbname=kms", out, sizeof out);
	CHECK_STR(out, "host=db password = **** dbname=kms");
	CHECK(strstr(out, "s3cret") == NULL);
	dsn_mask("postgresql://u@h/db?sslmode=disable&password=s3cret", out, sizeof out);
	CHECK_STR(out, "postgresql://u@h/db?sslmode=disable&password=****");
	dsn_mask("postgresql://u@h/db?password=s3cret&sslmode=disable", out, sizeof out);
	CHECK_STR(out, "postgresql://u@h/db?password=****&sslmode=disable");
	dsn_mask("postgres://u:p%40ss@h/db", out, sizeof out);
	CHECK_STR(out, "postgres://u:****@h/db");
	return 0;
}

static int test_scrub_message(void)
{
	char msg[256];
	snprintf(msg, sizeof msg, "invalid percent-encoded token: \"s3cret%%zz\"");
	dsn_scrub("postgresql://u:s3cret%zz@h/db", msg, sizeof msg);
	CHECK(strstr(msg, "s3cret") == NULL);
	CHECK(strstr(msg, "****") != NULL);
	snprintf(msg, sizeof msg, "bad value a b c here");
	dsn_scrub("host=h password='a b c'", msg, sizeof msg);
	CHECK_STR(msg, "bad value **** here");
	snprintf(msg, sizeof msg, "nothing secret");
	dsn_scrub("host=h user=u", msg, sizeof msg);
	CHECK_STR(msg, "nothing secret");
	return 0;
}

static int test_print_masks_password(void)
{
	char *argv[] = {"--dsn", "postgresql://kms:hunter2@db/kms", "-X", "sasl.password=pw1",
	                NULL};
	kms_config c;
	char err[256];
	CHECK_INT(config_load(&c, 4, argv, err, sizeof err), 0);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	config_print(&c, f);
	fclose(f);
	int ok = strstr(buf, "hunter2") == NULL && strstr(buf, "pw1") == NULL &&
	         strstr(buf, "dsn = postgresql://kms:****@db/kms") != NULL;
	free(buf);
	config_free(&c);
	CHECK(ok);
	return 0;
}

static int test_exactly_once(void)
{
	kms_config c;
	char err[256];
	char *none[] = {"--group-id", "g1", "--kms-id", "kms-a", NULL};
	CHECK_INT(config_load(&c, 4, none, err, sizeof err), 0);
	CHECK_INT(c.exactly_once, 1); /* transactions by default */
	CHECK_STR(c.transactional_id, "g1.kms-a");
	CHECK_INT(c.transaction_timeout_ms, 60000);
	config_free(&c);

	char *off[] = {"--exactly-once", "false", "--transactional-id", "tx-7", NULL};
	CHECK_INT(config_load(&c, 4, off, err, sizeof err), 0);
	CHECK_INT(c.exactly_once, 0);
	CHECK_STR(c.transactional_id, "tx-7");
	config_free(&c);

	const char *spellings[][2] = {{"on", "1"}, {"No", "0"}, {"1", "1"}, {"OFF", "0"}};
	for (size_t i = 0; i < sizeof spellings / sizeof spellings[0]; i++) {
		char *argv[] = {"--exactly-once", (char *)spellings[i][0], NULL};
		CHECK_INT(config_load(&c, 2, argv, err, sizeof err), 0);
		CHECK_INT(c.exactly_once, spellings[i][1][0] - '0');
		config_free(&c);
	}

	char *bad[] = {"--exactly-once", "maybe", NULL};
	CHECK_INT(config_load(&c, 2, bad, err, sizeof err), -1);
	CHECK(strstr(err, "exactly_once must be true or false") != NULL);
	config_free(&c);

	char long_id[300];
	memset(long_id, 'x', sizeof long_id - 1);
	long_id[sizeof long_id - 1] = '\0';
	char *too_long[] = {"--transactional-id", long_id, NULL};
	CHECK_INT(config_load(&c, 2, too_long, err, sizeof err), 0);
	CHECK_INT(config_validate(&c, NULL, err, sizeof err), -1);
	config_free(&c);
	return 0;
}

static int test_health_address_and_stall_timeout(void)
{
	kms_config c;
	char err[256] = "";
	CHECK_INT(config_load(&c, 0, NULL, err, sizeof err), 0);
	CHECK_STR(c.health_address, "127.0.0.1");
	CHECK_INT(c.stall_timeout_ms, 60000);
	config_free(&c);

	static const char *const good[] = {"0.0.0.0", "::", "::1", "10.1.2.3"};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		char *argv[] = {"--health-address", (char *)good[i], "--stall-timeout-ms", "0",
		                NULL};
		CHECK_INT(config_load(&c, 4, argv, err, sizeof err), 0);
		CHECK_INT(config_validate(&c, NULL, err, sizeof err), 0);
		CHECK_STR(c.health_address, good[i]);
		CHECK_INT(c.stall_timeout_ms, 0);
		config_free(&c);
	}
	static const char *const bad[] = {"localhost", "", "1.2.3.4:80", "256.1.1.1"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char *argv[] = {"--health-address", (char *)bad[i], NULL};
		CHECK_INT(config_load(&c, 2, argv, err, sizeof err), 0);
		CHECK_INT(config_validate(&c, NULL, err, sizeof err), -1);
		CHECK(strstr(err, "health_address") != NULL);
		config_free(&c);
	}
	char *neg[] = {"--stall-timeout-ms", "-1", NULL};
	CHECK_INT(config_load(&c, 2, neg, err, sizeof err), -1);
	CHECK(strstr(err, "stall_timeout_ms") != NULL);
	config_free(&c);
	return 0;
}

static const check_case cases[] = {
    {"defaults", test_defaults},
    {"flag_over_env_over_file", test_flag_over_env_over_file},
    {"flag_with_equals", test_flag_with_equals},
    {"unknown_flag", test_unknown_flag},
    {"out_of_range", test_out_of_range},
    {"token_cache_entries", test_token_cache_entries},
    {"bad_file_line", test_bad_file_line},
    {"bad_alg_list", test_bad_alg_list},
    {"malformed_dsn_is_misuse", test_malformed_dsn_is_misuse},
    {"mask_dsn", test_mask_dsn},
    {"scrub_message", test_scrub_message},
    {"print_masks_password", test_print_masks_password},
    {"exactly_once", test_exactly_once},
    {"health_address_and_stall_timeout", test_health_address_and_stall_timeout},
};

CHECK_MAIN("config", cases)
