/*
 * pgconn: opening a PostgreSQL connection the way every program of the
 * project wants it (the KM-S's store, kmsctl): notices silenced, the client
 * encoding UTF-8, and a failure told on one line with no password in it.
 */
#ifndef KMS_PGCONN_H
#define KMS_PGCONN_H

#include <libpq-fe.h>
#include <stddef.h>

/* Connect to dsn. Returns the connection (caller closes it with PQfinish()),
 * or NULL with errstr filled with why: libpq's reason on one line, with
 * every password of dsn masked. */
PGconn *pgconn_open(const char *dsn, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

#endif
