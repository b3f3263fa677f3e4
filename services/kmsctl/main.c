/*
 * kmsctl: the KM-S's admin command. It manages VAL service providers and
 * their SLAs, and shows what the KM-S stored: VAL servers and their key
 * formats, decisions, the audit trail, counts. It talks to the KM-S's
 * PostgreSQL database directly (--dsn or KMS_DSN), never to the service.
 *
 * Human tables by default (cells escaped: see table.h); --json prints the
 * same data exactly, as JSON, in these shapes (times are ISO 8601 UTC strings
 * with milliseconds, "2030-01-31T12:00:00.000Z"; processed_at is the
 * Result's processedAt, milliseconds since the epoch; absent values are null):
 *
 *   migrate          {"applied": N}
 *   provider add     {"vsp_id", "name", "enabled"}
 *   provider list    [{"vsp_id", "name", "enabled"}]
 *   provider disable / enable   {"vsp_id", "name", "enabled"}
 *   sla add          {"sla_id"}
 *   sla list         [{"sla_id", "vsp_id", "services": [], "key_formats": [],
 *                      "max_val_servers", "valid_from", "valid_until",
 *                      "revoked"}]
 *   sla revoke       {"sla_id", "revoked": true}
 *   valserver list   [{"requester_identity", "vsp_id", "endpoint",
 *                      "first_provisioned_at", "last_provisioned_at",
 *                      "services": {"SVC": {"format_type", "format_version",
 *                                           "content": {}, "version"}}}]
 *   valserver show   the same object, plus "history": [{"val_service_id",
 *                      "version", "format_type", "format_version", "content",
 *                      "request_id", "provisioned_at"}] in service and version
 *                      order
 *   audit            [{"topic", "partition", "offset", "request_id",
 *                      "outcome", "result", "cause", "detail", "kms_id",
 *                      "processed_at", "reply_note"}] in the order recorded
 *   decision         {"request_id", "requester_identity", "result", "cause",
 *                     "detail", "kms_id", "processed_at"}
 *   stats            {"decisions": {"total", "by_result": {RESULT: N},
 *                                   "by_cause": {CAUSE: N}},
 *                     "audit": {"total", "by_outcome": {OUTCOME: N}},
 *                     "providers", "slas", "val_servers",
 *                     "key_format_versions"}
 *   admin-audit      [{"id", "changed_at", "actor", "db_role", "action",
 *                      "subject", "before", "after"}] in the order recorded;
 *                      before and after are the row as JSON objects (null
 *                      for what did not exist)
 *
 * Every change (provider add, disable, enable; sla add, revoke) runs in one
 * transaction with its admin audit row: who (--actor, by default the login
 * name; and the database role), when, what, the row before and after. A
 * change that fails leaves no row, and a row that cannot be written fails
 * the change.
 *
 * Exit codes: 0 done; 1 runtime failure (one line on stderr); 2 misuse (one
 * hint on stderr); 3 already exists (provider add); 4 not found.
 *
 * This file only picks the command; the rest: cli.c (options, checks, the
 * words on stderr), db.c (statements, transactions, admin audit rows),
 * out.c and table.c (what stdout shows), and one cmd_*.c per family of
 * commands: cmd_schema (migrate), cmd_provider, cmd_sla, cmd_valserver,
 * cmd_records (audit, decision, stats, admin-audit).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cli.h"
#include "cmd_provider.h"
#include "cmd_records.h"
#include "cmd_schema.h"
#include "cmd_sla.h"
#include "cmd_valserver.h"
#include "db.h"

typedef struct {
	const char *group, *verb;   /* verb NULL: a one-word command */
	int nargs;                  /* positional arguments after the words */
	unsigned options;           /* CLI_OPT_ bits it accepts */
	int (*check)(const cli *o); /* misuse found before connecting, or NULL */
	int (*run)(PGconn *c, const cli *o);
} command;

/* migrate alone has no run: it connects through the store, not db.c. */
static const command commands[] = {
    {"migrate", NULL, 0, 0, NULL, NULL},
    {"provider", "add", 1, CLI_OPT_NAME | CLI_OPT_ACTOR, NULL, cmd_provider_add},
    {"provider", "list", 0, 0, NULL, cmd_provider_list},
    {"provider", "disable", 1, CLI_OPT_ACTOR, NULL, cmd_provider_disable},
    {"provider", "enable", 1, CLI_OPT_ACTOR, NULL, cmd_provider_enable},
    {"sla", "add", 0,
     CLI_OPT_PROVIDER | CLI_OPT_SERVICES | CLI_OPT_KEY_FORMATS | CLI_OPT_MAX | CLI_OPT_FROM |
         CLI_OPT_UNTIL | CLI_OPT_ACTOR,
     cmd_sla_check_add, cmd_sla_add},
    {"sla", "list", 0, CLI_OPT_PROVIDER, NULL, cmd_sla_list},
    {"sla", "revoke", 1, CLI_OPT_ACTOR, cmd_sla_check_revoke, cmd_sla_revoke},
    {"valserver", "list", 0, CLI_OPT_PROVIDER, NULL, cmd_valserver_list},
    {"valserver", "show", 1, 0, NULL, cmd_valserver_show},
    {"audit", NULL, 1, 0, NULL, cmd_records_audit},
    {"decision", NULL, 1, 0, NULL, cmd_records_decision},
    {"stats", NULL, 0, 0, NULL, cmd_records_stats},
    {"admin-audit", NULL, 0, 0, NULL, cmd_records_admin_audit},
};

int main(int argc, char **argv)
{
	cli o;
	char login[256];
	int rc = cli_parse(argc, argv, &o);
	if (rc >= 0)
		return rc;
	char **words = argv + optind;
	int nwords = argc - optind;
	if (nwords == 0)
		return cli_misuse("no command given");

	const command *cmd = NULL;
	int used = 0;
	for (size_t i = 0; i < sizeof commands / sizeof commands[0] && cmd == NULL; i++) {
		if (strcmp(commands[i].group, words[0]) != 0)
			continue;
		if (commands[i].verb == NULL) {
			cmd = &commands[i], used = 1;
		} else if (nwords >= 2 && strcmp(commands[i].verb, words[1]) == 0) {
			cmd = &commands[i], used = 2;
		}
	}
	if (cmd == NULL)
		return cli_misuse("unknown command");
	o.args = words + used;
	o.nargs = nwords - used;
	rc = cli_check(&o, cmd->nargs, cmd->options, login, sizeof login);
	if (rc != 0)
		return rc;

	if (cmd->check != NULL && cmd->check(&o) != 0)
		return CLI_EXIT_USAGE;
	if (o.dsn == NULL)
		o.dsn = getenv("KMS_DSN");
	if (o.dsn == NULL || o.dsn[0] == '\0')
		return cli_misuse("no database: give --dsn or set KMS_DSN");

	if (cmd->run == NULL)
		return cmd_schema_migrate(&o);
	PGconn *c = db_connect(o.dsn);
	if (c == NULL)
		return CLI_EXIT_RUNTIME;
	rc = cmd->run(c, &o);
	PQfinish(c);
	if (fflush(stdout) != 0)
		return cli_fail(CLI_EXIT_RUNTIME, "cannot write the output", NULL);
	return rc;
}
