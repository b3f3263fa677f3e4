/*
 * cmd_valserver: kmsctl valserver list and show. Each takes the open
 * connection and the checked command line, prints its output or its
 * failure, and returns the exit code.
 */
#ifndef KMSCTL_CMD_VALSERVER_H
#define KMSCTL_CMD_VALSERVER_H

#include <libpq-fe.h>

#include "cli.h"

int cmd_valserver_list(PGconn *c, const cli *o) __attribute__((warn_unused_result));
int cmd_valserver_show(PGconn *c, const cli *o) __attribute__((warn_unused_result));

#endif
