/*
 * valctl's entry point: picks the subcommand and installs the signal
 * handlers that stop its loops. What the subcommands share is in cli.c
 * (command line), kafka.c, wire.c, recording.c and util.c; each subcommand
 * is its own file (commands.h).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

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
