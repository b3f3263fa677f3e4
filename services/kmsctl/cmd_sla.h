/*
 * cmd_sla: kmsctl sla add, list and revoke. Each takes the open connection
 * and the checked command line, prints its output or its failure, and
 * returns the exit code. The checks run before connecting: 0, or
 * CLI_EXIT_USAGE with the hint printed.
 */
#ifndef KMSCTL_CMD_SLA_H
#define KMSCTL_CMD_SLA_H

#include <libpq-fe.h>

#include "cli.h"

int cmd_sla_add(PGconn *c, const cli *o) __attribute__((warn_unused_result));
int cmd_sla_list(PGconn *c, const cli *o) __attribute__((warn_unused_result));
int cmd_sla_revoke(PGconn *c, const cli *o) __attribute__((warn_unused_result));
int cmd_sla_check_add(const cli *o) __attribute__((warn_unused_result));
int cmd_sla_check_revoke(const cli *o) __attribute__((warn_unused_result));

#endif
