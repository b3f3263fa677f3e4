/*
 * valctl's entry point: picks the subcommand, installs the signal handlers
 * that stop its loops, and holds the parsing of the options every Kafka
 * subcommand shares (-b, -X, --requests-topic, --reply-topic, -v), so that
 * they read the same everywhere, as kcat's do.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "valctl.h"

volatile sig_atomic_t valctl_run = 1;

const char valctl_common_help[] =
    "Kafka options:\n"
    "  -b, --bootstrap HOST:PORT  brokers (env KMS_BOOTSTRAP, default " VALCTL_DEFAULT_BOOTSTRAP
    ")\n"
    "  -X KEY=VALUE               librdkafka property for producer and consumer (repeatable);\n"
    "                             Results are read with isolation.level=read_committed\n"
    "      --requests-topic T     default " VALCTL_DEFAULT_REQUESTS_TOPIC "\n"
    "      --reply-topic T        default " VALCTL_DEFAULT_REPLY_TOPIC "\n"
    "  -v, --verbose              librdkafka's logs on stderr\n"
    "      --framing F            single-object (default) or confluent: the Confluent wire\n"
    "                             format, the schema id from the registry (Results are read\n"
    "                             in either framing)\n"
    "      --registry URL         the registry's Confluent-compatible API (env\n"
    "                             KMS_REGISTRY_URL), e.g. http://127.0.0.1:8080/apis/ccompat/v7\n";

static const char usage_text[] =
    "Usage: valctl COMMAND [OPTIONS]\n"
    "\n"
    "The command line of a VAL server for the SEAL KM-S provisioning service.\n"
    "\n"
    "Commands:\n"
    "  token      print a signed access token (JWT) for a VAL server\n"
    "  keygen     write a new issuer key pair (PEM) for development and tests\n"
    "  provision  send one provisioning request and print its Result\n"
    "  fleet      run many VAL servers at once and summarise their Results\n"
    "  record     write the messages of a topic to a file, one JSON line each\n"
    "  replay     produce the messages of such a file again\n"
    "  diff       compare two recordings of Results\n"
    "\n"
    "'valctl COMMAND --help' describes a command.\n"
    "Exit codes: 0 success, 1 FAILURE Result (fleet: a Result missing; diff:\n"
    "the recordings differ), 2 misuse (replay, diff: a bad recording line),\n"
    "3 timeout, 4 runtime error (broker, file).\n";

static void on_signal(int sig)
{
	(void)sig;
	valctl_run = 0;
}

void valctl_err(const char *sub, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "valctl %s: ", sub);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int valctl_usage(const char *sub, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "valctl %s: ", sub);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (try 'valctl %s --help')\n", sub);
	return VALCTL_EXIT_USAGE;
}

int valctl_getopt_error(const char *sub, int opt, char *const argv[])
{
	/* getopt_long leaves the offending word just before optind. */
	const char *word = optind > 0 ? argv[optind - 1] : "?";

	if (opt == ':')
		return valctl_usage(sub, "option %s needs a value", word);
	if (optopt != 0 && optopt < 256)
		return valctl_usage(sub, "unknown option -%c", optopt);
	return valctl_usage(sub, "unknown option %s", word);
}

void valctl_common_init(valctl_common *c)
{
	const char *env = getenv("KMS_BOOTSTRAP");

	memset(c, 0, sizeof *c);
	c->bootstrap = env != NULL && env[0] != '\0' ? env : VALCTL_DEFAULT_BOOTSTRAP;
	c->requests_topic = VALCTL_DEFAULT_REQUESTS_TOPIC;
	c->reply_topic = VALCTL_DEFAULT_REPLY_TOPIC;
	c->framing = CODEC_FRAMING_SINGLE_OBJECT;
	env = getenv("KMS_REGISTRY_URL");
	c->registry_url = env != NULL && env[0] != '\0' ? env : NULL;
}

void valctl_common_free(valctl_common *c)
{
	free(c->xprops);
	c->xprops = NULL;
	c->xprop_count = 0;
}

int valctl_other_option(valctl_common *c, const char *sub, const char *help, int opt,
                        const char *arg, char *const argv[])
{
	if (opt == 'h') {
		fputs(help, stdout);
		fputs(valctl_common_help, stdout);
		return VALCTL_EXIT_SUCCESS;
	}
	int r = valctl_common_option(c, sub, opt, arg);
	if (r == 1)
		return -1;
	return r == 0 ? valctl_getopt_error(sub, opt, argv) : VALCTL_EXIT_USAGE;
}

int valctl_common_option(valctl_common *c, const char *sub, int opt, const char *arg)
{
	const char **grown;
	const char *eq;

	switch (opt) {
	case 'b':
		if (arg[0] == '\0')
			return valctl_usage(sub, "--bootstrap needs HOST:PORT"), -1;
		c->bootstrap = arg;
		return 1;
	case 'X':
		eq = strchr(arg, '=');
		if (eq == NULL || eq == arg)
			return valctl_usage(sub, "-X needs KEY=VALUE, got '%s'", arg), -1;
		grown = realloc(c->xprops, (c->xprop_count + 1) * sizeof *grown);
		if (grown == NULL) {
			valctl_err(sub, "out of memory");
			return -1;
		}
		c->xprops = grown;
		c->xprops[c->xprop_count++] = arg;
		return 1;
	case VALCTL_OPT_REQUESTS_TOPIC:
		if (arg[0] == '\0')
			return valctl_usage(sub, "--requests-topic must not be empty"), -1;
		c->requests_topic = arg;
		return 1;
	case VALCTL_OPT_REPLY_TOPIC:
		if (arg[0] == '\0')
			return valctl_usage(sub, "--reply-topic must not be empty"), -1;
		c->reply_topic = arg;
		return 1;
	case 'v':
		c->verbose = 1;
		return 1;
	case VALCTL_OPT_FRAMING:
		if (strcmp(arg, "confluent") == 0)
			c->framing = CODEC_FRAMING_CONFLUENT;
		else if (strcmp(arg, "single-object") == 0)
			c->framing = CODEC_FRAMING_SINGLE_OBJECT;
		else
			return valctl_usage(
			           sub, "--framing is single-object or confluent, not '%s'", arg),
			       -1;
		c->framing_set = 1;
		return 1;
	case VALCTL_OPT_REGISTRY:
		if (strncmp(arg, "http://", 7) != 0 && strncmp(arg, "https://", 8) != 0)
			return valctl_usage(sub, "--registry needs an http:// or https:// URL"), -1;
		c->registry_url = arg;
		return 1;
	default:
		return 0;
	}
}

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
    {"token", valctl_cmd_token}, {"keygen", valctl_cmd_keygen}, {"provision", valctl_cmd_provision},
    {"fleet", valctl_cmd_fleet}, {"record", valctl_cmd_record}, {"replay", valctl_cmd_replay},
    {"diff", valctl_cmd_diff},
};

int main(int argc, char **argv)
{
	struct sigaction sa;
	size_t i;

	if (argc < 2) {
		fprintf(stderr, "valctl: a command is needed (try 'valctl --help')\n");
		return VALCTL_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(usage_text, stdout);
		return VALCTL_EXIT_SUCCESS;
	}

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* A closed stdout (valctl ... | head) must be an error on write, not a
	 * silent death. */
	signal(SIGPIPE, SIG_IGN);

	for (i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		if (strcmp(argv[1], commands[i].name) == 0) {
			/* Each subcommand parses its own options from optind 1. */
			optind = 1;
			opterr = 0;
			return commands[i].fn(argc - 1, argv + 1);
		}
	}
	fprintf(stderr, "valctl: unknown command '%s' (try 'valctl --help')\n", argv[1]);
	return VALCTL_EXIT_USAGE;
}
