/*
 * cli: kmsctl's command line: its exit codes, the options a command may
 * take, how they are read and checked, and the two ways kmsctl speaks on
 * stderr (a hint on misuse, one line on failure).
 */
#ifndef KMSCTL_CLI_H
#define KMSCTL_CLI_H

#include <stddef.h>
#include <stdio.h>

enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_RUNTIME = 1,
	CLI_EXIT_USAGE = 2,
	CLI_EXIT_EXISTS = 3,
	CLI_EXIT_NOT_FOUND = 4,
};

/* Options a command may take, as bits. */
enum {
	CLI_OPT_NAME = 1 << 0,
	CLI_OPT_PROVIDER = 1 << 1,
	CLI_OPT_SERVICES = 1 << 2,
	CLI_OPT_KEY_FORMATS = 1 << 3,
	CLI_OPT_MAX = 1 << 4,
	CLI_OPT_FROM = 1 << 5,
	CLI_OPT_UNTIL = 1 << 6,
	CLI_OPT_ACTOR = 1 << 7,
};

/* The longest --actor (the admin_audit table's CHECK says the same). */
#define CLI_ACTOR_MAX 128

/* The command line, read. Strings are borrowed from argv, the environment
 * or the caller's buffer given to cli_check(). */
typedef struct {
	const char *dsn;
	int json;
	unsigned given; /* CLI_OPT_ bits seen */
	const char *name;
	const char *provider;
	const char *services;
	const char *key_formats;
	const char *max;
	const char *valid_from;
	const char *valid_until;
	const char *actor; /* who makes a change: --actor, or the login name */
	char **args;       /* the positional arguments after the command words */
	int nargs;
} cli;

/* "kmsctl: WHAT (see kmsctl --help)" on stderr; returns CLI_EXIT_USAGE. */
int cli_misuse(const char *what) __attribute__((warn_unused_result));

/* "kmsctl: WHAT[: MESSAGE]" on one line on stderr (message may come from
 * libpq, with newlines); returns code, for the callers that exit with it. */
int cli_fail(int code, const char *what, const char *message);

/* Read the options of argv into *o (zeroed first). Returns -1 with the
 * command words at argv[optind], or the exit code to return: CLI_EXIT_OK
 * after --help, CLI_EXIT_USAGE with the hint printed. */
int cli_parse(int argc, char **argv, cli *o) __attribute__((warn_unused_result));

/* Check *o for a command that takes nargs positional arguments and the
 * options of the bits accepted. A command that takes --actor and was given
 * none gets the login name, written into login. Returns 0, or
 * CLI_EXIT_USAGE with the hint printed. */
int cli_check(cli *o, int nargs, unsigned accepted, char *login, size_t login_size)
    __attribute__((warn_unused_result));

#endif
