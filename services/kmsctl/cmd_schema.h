/*
 * cmd_schema: kmsctl migrate. Needs only o->dsn and o->json; it makes its
 * own connection (the store's).
 */
#ifndef KMSCTL_CMD_SCHEMA_H
#define KMSCTL_CMD_SCHEMA_H

#include "cli.h"

/* Returns the exit code, the failure printed. */
int cmd_schema_migrate(const cli *o) __attribute__((warn_unused_result));

#endif
