/*
 * cmd_records: kmsctl audit, decision, stats and admin-audit. Each takes
 * the open connection and the checked command line, prints its output or
 * its failure, and returns the exit code.
 */
#ifndef KMSCTL_CMD_RECORDS_H
#define KMSCTL_CMD_RECORDS_H

#include <libpq-fe.h>

#include "cli.h"

int cmd_records_audit(PGconn *c, const cli *o) __attribute__((warn_unused_result));
int cmd_records_decision(PGconn *c, const cli *o) __attribute__((warn_unused_result));
int cmd_records_stats(PGconn *c, const cli *o) __attribute__((warn_unused_result));
int cmd_records_admin_audit(PGconn *c, const cli *o) __attribute__((warn_unused_result));

#endif
