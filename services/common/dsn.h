/*
 * dsn: keeping the password of a libpq connection string out of every line
 * the programs print. Both forms are understood: the URI
 * (postgresql://user:password@host/db?password=...) and key=value
 * (password=... or password='...').
 */
#ifndef KMS_DSN_H
#define KMS_DSN_H

#include <stddef.h>

/* Copy dsn to out with every password value replaced by "****". */
void dsn_mask(const char *dsn, char *out, size_t out_size);

/* Replace, in place, every occurrence in msg of a password of dsn (as
 * written in the DSN, and unquoted) by "****": libpq quotes malformed parts
 * of a connection string back in its error messages. */
void dsn_scrub(const char *dsn, char *msg, size_t msg_size);

#endif
