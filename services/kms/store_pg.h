/*
 * store_pg: what the store's files share and nothing else includes: the
 * connection handle and the helpers around libpq's errors. Not a public
 * interface.
 */
#ifndef KMS_STORE_PG_H
#define KMS_STORE_PG_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct store {
	PGconn *conn;
	char *dsn;
	int prepared;  /* the batch statements are prepared on conn */
	int broken;    /* conn is in an unknown state: reconnect before use */
	int exchanges; /* exchanges that went through in the current batch */
};

/* Is this SQLSTATE caused by one message's data (a data exception, an
 * integrity constraint, a program limit such as a too-long index entry)
 * rather than by the database's state? */
int store_is_item_sqlstate(const char *state);

/* Make sure the connection is usable before a new unit of work (reconnects
 * when it is not). Returns 0, or -1 with errstr filled. */
int store_ensure_conn(store *s, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/* 0 when r is a success, else -1 with errstr filled (takes no ownership). */
int store_exec_ok(PGconn *conn, PGresult *r, const char *what, char *errstr, size_t errstr_size);

#endif
