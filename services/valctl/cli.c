/*
 * cli: what every valctl subcommand's command line shares. The options of
 * the Kafka subcommands (-b, -X, --requests-topic, --reply-topic, -v,
 * --framing, --registry) are read here, so that they read the same
 * everywhere, as kcat's do; valctl_parse() is the getopt_long loop of every
 * subcommand, so that help, misuse and leftover arguments are answered in
 * the same words by all.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "codec.h"
#include "num.h"

volatile sig_atomic_t valctl_run = 1;

/* Short options of the shared options, after each subcommand's ":h". */
#define COMMON_SHORTOPTS "b:X:v"

static const char common_help[] =
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

/* "valctl SUB: MESSAGE" on stderr, without the line end. */
static void say(const char *sub, const char *fmt, va_list ap)
{
	fprintf(stderr, "valctl %s: ", sub);
	vfprintf(stderr, fmt, ap);
}

void valctl_err(const char *sub, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(sub, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int valctl_usage(const char *sub, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(sub, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (try 'valctl %s --help')\n", sub);
	return VALCTL_EXIT_USAGE;
}

/* The hint for getopt_long's '?' (unknown option) or ':' (missing value);
 * returns VALCTL_EXIT_USAGE. */
static int getopt_error(const char *sub, int opt, char *const argv[])
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

/* Apply one option from getopt_long: 1 if it was a shared option, 0 if not
 * ours, -1 on misuse (the hint was printed). */
static int common_option(valctl_common *c, const char *sub, int opt, const char *arg)
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

int valctl_parse(valctl_common *common, const char *sub, const char *help,
                 const struct option *opts, valctl_option_fn *own, void *ctx, int positional,
                 int argc, char **argv)
{
	int opt, r;

	while ((opt = getopt_long(argc, argv, common != NULL ? ":h" COMMON_SHORTOPTS : ":h", opts,
	                          NULL)) != -1) {
		if (opt == 'h') {
			fputs(help, stdout);
			if (common != NULL)
				fputs(common_help, stdout);
			return VALCTL_EXIT_SUCCESS;
		}
		r = common != NULL ? common_option(common, sub, opt, optarg) : 0;
		if (r == 1)
			continue;
		if (r < 0)
			return VALCTL_EXIT_USAGE;
		/* getopt's '?' and ':' are no subcommand's option codes */
		r = opt == '?' || opt == ':' ? VALCTL_NOT_MINE : own(ctx, sub, opt, optarg);
		if (r == VALCTL_NOT_MINE)
			return getopt_error(sub, opt, argv);
		if (r != VALCTL_GO_ON)
			return r;
	}
	if (!positional && optind < argc)
		return valctl_usage(sub, "unexpected argument '%s'", argv[optind]);
	return VALCTL_GO_ON;
}

int valctl_parse_seconds(const char *sub, const char *name, const char *arg, double *out)
{
	if (num_parse_double(arg, 0.001, 1e6, out) != 0)
		return valctl_usage(sub, "%s needs seconds > 0, got '%s'", name, arg);
	return VALCTL_GO_ON;
}
