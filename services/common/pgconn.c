/*
 * pgconn: see pgconn.h.
 */
#include "pgconn.h"

#include "dsn.h"
#include "errstr.h"

/* NOTICEs ("already exists, skipping") are not worth a line. */
static void ignore_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

PGconn *pgconn_open(const char *dsn, char *errstr, size_t errstr_size)
{
	PGconn *c = PQconnectdb(dsn);

	if (c == NULL) {
		errstr_line(errstr, errstr_size, "out of memory", NULL);
		return NULL;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		/* libpq quotes malformed parts of the DSN back */
		errstr_line(errstr, errstr_size, PQerrorMessage(c), NULL);
		dsn_scrub(dsn, errstr, errstr_size);
		goto fail;
	}
	PQsetNoticeProcessor(c, ignore_notice, NULL);
	/* every string the programs send or read is UTF-8 */
	if (PQsetClientEncoding(c, "UTF8") != 0) {
		errstr_line(errstr, errstr_size, "client encoding UTF8", PQerrorMessage(c));
		goto fail;
	}
	return c;
fail:
	PQfinish(c);
	return NULL;
}
