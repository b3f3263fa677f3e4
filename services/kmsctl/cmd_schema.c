/*
 * cmd_schema: kmsctl migrate, the schema created or brought up to date. It
 * goes through the store, the service's own migration code, so that the
 * two can never disagree on what a migration is.
 */
#include <jansson.h>
#include <stdio.h>

#include "cmd_schema.h"
#include "out.h"
#include "store.h"

int cmd_schema_migrate(const cli *o)
{
	char err[512];
	store *s = store_new(o->dsn, err, sizeof err);
	if (s == NULL)
		return cli_fail(CLI_EXIT_RUNTIME, err, NULL);
	int n = store_migrate(s, err, sizeof err);
	store_destroy(s);
	if (n < 0)
		return cli_fail(CLI_EXIT_RUNTIME, err, NULL);
	if (o->json)
		return out_print_json(json_pack("{s:i}", "applied", n));
	printf("%d migration%s applied\n", n, n == 1 ? "" : "s");
	return CLI_EXIT_OK;
}
