/*
 * cli: valctl's command line, shared by its subcommands: the exit codes,
 * the run flag the loops poll, the words on stderr (a hint on misuse, a
 * line on failure), the options every Kafka subcommand takes (-b, -X,
 * --requests-topic, --reply-topic, -v, --framing, --registry), and
 * valctl_parse(), the one getopt_long loop every subcommand reads its
 * command line with.
 */
#ifndef VALCTL_CLI_H
#define VALCTL_CLI_H

#include <getopt.h>
#include <signal.h>
#include <stddef.h>

#include "codec.h"

/* Exit codes of every subcommand. */
typedef enum {
	VALCTL_EXIT_SUCCESS = 0, /* done; for provision: the Result is SUCCESS */
	VALCTL_EXIT_FAILURE = 1, /* the Result is FAILURE; fleet: a Result is missing */
	VALCTL_EXIT_USAGE = 2,   /* misuse of the command line */
	VALCTL_EXIT_TIMEOUT = 3, /* no answer in time */
	VALCTL_EXIT_RUNTIME = 4  /* broker, file or library error */
} valctl_exit;

#define VALCTL_DEFAULT_BOOTSTRAP      "127.0.0.1:19092"
#define VALCTL_DEFAULT_REQUESTS_TOPIC "seal.km.provisioning.requests"
#define VALCTL_DEFAULT_REPLY_TOPIC    "seal.km.provisioning.results"

/* Cleared by SIGINT and SIGTERM (main.c's handler); loops poll it. The
 * program's only global. */
extern volatile sig_atomic_t valctl_run;

/* Print "valctl SUB: MESSAGE (try 'valctl SUB --help')" on stderr; returns
 * VALCTL_EXIT_USAGE. */
int valctl_usage(const char *sub, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "valctl SUB: MESSAGE" on stderr. */
void valctl_err(const char *sub, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- options shared by the Kafka subcommands ---- */

/* Strings are borrowed from argv or the environment. */
typedef struct {
	const char *bootstrap;
	const char **xprops; /* "key=value" items of -X, in order */
	size_t xprop_count;
	const char *requests_topic;
	const char *reply_topic;
	int verbose;              /* -v: librdkafka's logs on stderr */
	codec_framing framing;    /* --framing: how requests are written */
	int framing_set;          /* --framing was given */
	const char *registry_url; /* --registry, else KMS_REGISTRY_URL; may be NULL */
} valctl_common;

/* Long-option values of the shared options (short ones use their letter). */
enum {
	VALCTL_OPT_REQUESTS_TOPIC = 1000,
	VALCTL_OPT_REPLY_TOPIC,
	VALCTL_OPT_FRAMING,
	VALCTL_OPT_REGISTRY,
	VALCTL_OPT_FIRST_FREE
};

/* The long-option entries of the shared options, to put in the table of
 * each Kafka subcommand. */
#define VALCTL_COMMON_LONGOPTS                                                                     \
	{"bootstrap", required_argument, NULL, 'b'},                                               \
	    {"requests-topic", required_argument, NULL, VALCTL_OPT_REQUESTS_TOPIC},                \
	    {"reply-topic", required_argument, NULL, VALCTL_OPT_REPLY_TOPIC},                      \
	    {"framing", required_argument, NULL, VALCTL_OPT_FRAMING},                              \
	    {"registry", required_argument, NULL, VALCTL_OPT_REGISTRY},                            \
	{                                                                                          \
		"verbose", no_argument, NULL, 'v'                                                  \
	}

/* Defaults: bootstrap from KMS_BOOTSTRAP, else VALCTL_DEFAULT_BOOTSTRAP. */
void valctl_common_init(valctl_common *c);
void valctl_common_free(valctl_common *c); /* frees xprops only */

/* ---- reading a subcommand's command line ---- */

/* What an option handler returns besides an exit code. */
#define VALCTL_GO_ON    (-1) /* the option was taken: parsing goes on */
#define VALCTL_NOT_MINE (-2) /* not an option of the subcommand */

/* A subcommand's own options, one at a time: ctx is the subcommand's, arg
 * is getopt's optarg. Returns VALCTL_GO_ON, VALCTL_NOT_MINE, or the exit
 * code to return with the hint printed. */
typedef int valctl_option_fn(void *ctx, const char *sub, int opt, const char *arg);

/* Read argv (argv[0] is the subcommand) with getopt_long over opts.
 * -h/--help prints help, followed by the shared options' help when common
 * is not NULL; with common, the shared options fill *common; every other
 * option goes to own. Unless positional, an argument left over is misuse.
 * Returns VALCTL_GO_ON when the whole command line was read (positional
 * arguments from argv[optind]), else the exit code to return, with the
 * help or the hint printed. */
int valctl_parse(valctl_common *common, const char *sub, const char *help,
                 const struct option *opts, valctl_option_fn *own, void *ctx, int positional,
                 int argc, char **argv) __attribute__((warn_unused_result));

/* A number of seconds > 0 (at most 1e6) for option name (--timeout,
 * --idle-exit) into *out. Returns VALCTL_GO_ON, or VALCTL_EXIT_USAGE with
 * the hint printed. */
int valctl_parse_seconds(const char *sub, const char *name, const char *arg, double *out)
    __attribute__((warn_unused_result));

#endif
