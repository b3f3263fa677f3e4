/*
 * commands: the entry point of each valctl subcommand, for main.c.
 * argv[0] is the subcommand's name; each returns a valctl_exit code.
 */
#ifndef VALCTL_COMMANDS_H
#define VALCTL_COMMANDS_H

int valctl_cmd_token(int argc, char **argv) __attribute__((warn_unused_result));
int valctl_cmd_keygen(int argc, char **argv) __attribute__((warn_unused_result));
int valctl_cmd_provision(int argc, char **argv) __attribute__((warn_unused_result));
int valctl_cmd_fleet(int argc, char **argv) __attribute__((warn_unused_result));
int valctl_cmd_record(int argc, char **argv) __attribute__((warn_unused_result));
int valctl_cmd_replay(int argc, char **argv) __attribute__((warn_unused_result));
int valctl_cmd_diff(int argc, char **argv) __attribute__((warn_unused_result));

#endif
