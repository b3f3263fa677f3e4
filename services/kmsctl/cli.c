/*
 * cli: kmsctl's command line. Every option is read here once into a cli,
 * and what can be checked without the database is checked here, before
 * connecting: the number of arguments, the options a command takes, UTF-8
 * (the database holds nothing else) and the actor of a change.
 */
#include <getopt.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "errstr.h"
#include "utf8.h"
/* The help, on f. */
static void usage(FILE *f)
{
	fputs("usage: kmsctl [--dsn DSN] [--json] COMMAND [ARGS]\n"
	      "\n"
	      "The KM-S's admin command: VAL service providers, their SLAs, and what the\n"
	      "KM-S stored. DSN is a libpq connection string; default: $KMS_DSN.\n"
	      "\n"
	      "commands:\n"
	      "  migrate                          create or upgrade the schema\n"
	      "  provider add VSP_ID [--name NAME]\n"
	      "  provider list\n"
	      "  provider disable VSP_ID          its SLAs stop applying\n"
	      "  provider enable VSP_ID\n"
	      "  sla add --provider VSP_ID --services A,B --key-formats JWK,RAW\n"
	      "          --max-val-servers N [--valid-from TIME] [--valid-until TIME]\n"
	      "                                   prints the new SLA's id; TIME is ISO 8601\n"
	      "                                   (2030-01-31 or 2030-01-31T12:00:00Z; UTC\n"
	      "                                   unless an offset is given); default valid\n"
	      "                                   from now until a year later\n"
	      "  sla list [--provider VSP_ID]\n"
	      "  sla revoke SLA_ID\n"
	      "  valserver list [--provider VSP_ID]\n"
	      "  valserver show IDENTITY          current key formats and their history\n"
	      "  audit IDENTITY                   the audit trail of a VAL server\n"
	      "  decision REQUEST_ID              the decision recorded for a requestId\n"
	      "  stats                            counts\n"
	      "  admin-audit                      who changed providers and SLAs, when, and\n"
	      "                                   the rows before and after\n"
	      "\n"
	      "options:\n"
	      "  --dsn DSN     PostgreSQL connection string (default: $KMS_DSN)\n"
	      "  --json        print JSON instead of tables\n"
	      "  --actor NAME  who makes a change, for the admin audit (default: the\n"
	      "                login name)\n"
	      "  -h, --help    print this help\n"
	      "\n"
	      "key formats: RAW OPAQUE PKCS1 PKCS8 X509 EC_PRIVATE_KEY\n"
	      "             TRANSPARENT_SYMMETRIC_KEY JWK MIKEY_SAKKE\n"
	      "exit codes: 0 done, 1 failure, 2 misuse, 3 already exists, 4 not found\n",
	      f);
}

int cli_misuse(const char *what)
{
	fprintf(stderr, "kmsctl: %s (see kmsctl --help)\n", what);
	return CLI_EXIT_USAGE;
}

int cli_fail(int code, const char *what, const char *message)
{
	char line[512];
	errstr_line(line, sizeof line, what, message);
	fprintf(stderr, "kmsctl: %s\n", line);
	return code;
}

/* The login name, else the effective user's name, for a change made
 * without --actor. */
static void default_actor(char *out, size_t size)
{
	struct passwd pw, *found = NULL;
	char buf[1024];

	if (getlogin_r(out, size) == 0 && out[0] != '\0')
		return;
	if (getpwuid_r(geteuid(), &pw, buf, sizeof buf, &found) == 0 && found != NULL &&
	    found->pw_name[0] != '\0') {
		snprintf(out, size, "%s", found->pw_name);
		return;
	}
	snprintf(out, size, "uid %u", (unsigned)geteuid());
}

/* An actor is a name on one line: printable, UTF-8, at most CLI_ACTOR_MAX
 * bytes. */
static int actor_valid(const char *a)
{
	if (a[0] == '\0' || strlen(a) > CLI_ACTOR_MAX || !utf8_valid(a))
		return 0;
	for (const unsigned char *p = (const unsigned char *)a; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			return 0;
	return 1;
}

int cli_parse(int argc, char **argv, cli *o)
{
	static const struct option longopts[] = {
	    {"dsn", required_argument, NULL, 'd'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {"name", required_argument, NULL, 'n'},
	    {"provider", required_argument, NULL, 'p'},
	    {"services", required_argument, NULL, 's'},
	    {"key-formats", required_argument, NULL, 'k'},
	    {"max-val-servers", required_argument, NULL, 'm'},
	    {"valid-from", required_argument, NULL, 'f'},
	    {"valid-until", required_argument, NULL, 'u'},
	    {"actor", required_argument, NULL, 'a'},
	    {NULL, 0, NULL, 0},
	};
	memset(o, 0, sizeof *o);
	opterr = 0;
	int ch;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			o->dsn = optarg;
			break;
		case 'j':
			o->json = 1;
			break;
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		case 'n':
			o->name = optarg, o->given |= CLI_OPT_NAME;
			break;
		case 'p':
			o->provider = optarg, o->given |= CLI_OPT_PROVIDER;
			break;
		case 's':
			o->services = optarg, o->given |= CLI_OPT_SERVICES;
			break;
		case 'k':
			o->key_formats = optarg, o->given |= CLI_OPT_KEY_FORMATS;
			break;
		case 'm':
			o->max = optarg, o->given |= CLI_OPT_MAX;
			break;
		case 'f':
			o->valid_from = optarg, o->given |= CLI_OPT_FROM;
			break;
		case 'u':
			o->valid_until = optarg, o->given |= CLI_OPT_UNTIL;
			break;
		case 'a':
			o->actor = optarg, o->given |= CLI_OPT_ACTOR;
			break;
		default:
			return cli_misuse("an unknown option, or an option without its value");
		}
	}
	return -1;
}

int cli_check(cli *o, int nargs, unsigned accepted, char *login, size_t login_size)
{
	if (o->nargs != nargs)
		return cli_misuse(nargs == 0 ? "this command takes no arguments"
		                             : "this command takes one argument");
	if ((o->given & ~accepted) != 0)
		return cli_misuse("an option this command does not take");
	/* the database holds UTF-8 only: say so here rather than fail there */
	const char *inputs[] = {o->name, o->provider, o->services, o->key_formats};
	for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
		if (inputs[i] != NULL && !utf8_valid(inputs[i]))
			return cli_misuse("an option's value is not valid UTF-8");
	for (int i = 0; i < o->nargs; i++)
		if (!utf8_valid(o->args[i]))
			return cli_misuse("an argument is not valid UTF-8");
	if (o->actor != NULL && !actor_valid(o->actor))
		return cli_misuse("--actor must be a printable name of 1 to 128 bytes");
	if (o->actor == NULL && (accepted & CLI_OPT_ACTOR) != 0) {
		default_actor(login, login_size);
		if (!actor_valid(login))
			return cli_misuse("the login name cannot be an actor: give --actor");
		o->actor = login;
	}
	return 0;
}
