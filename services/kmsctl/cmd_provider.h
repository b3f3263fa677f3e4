/*
 * cmd_provider: kmsctl provider add, list, disable, enable. Each takes the
 * open connection and the checked command line, prints its output or its
 * failure, and returns the exit code.
 */
#ifndef KMSCTL_CMD_PROVIDER_H
#define KMSCTL_CMD_PROVIDER_H

#include <libpq-fe.h>

#include "cli.h"

int cmd_provider_add(PGconn *c, const cli *o) __attribute__((warn_unused_result));
int cmd_provider_list(PGconn *c, const cli *o) __attribute__((warn_unused_result));
int cmd_provider_disable(PGconn *c, const cli *o) __attribute__((warn_unused_result));
int cmd_provider_enable(PGconn *c, const cli *o) __attribute__((warn_unused_result));

#endif
