/*
 * errstr: the one way a call that can fail says why. Every module's
 * functions take (char *errstr, size_t errstr_size) and fill it through
 * errstr_set(), once, at the boundary where a library's error becomes text.
 */
#ifndef KMS_ERRSTR_H
#define KMS_ERRSTR_H

#include <stddef.h>

/* Format one sentence into errstr (errstr_size bytes). A sentence cut short
 * is still the right sentence, only shorter. errstr may be NULL or
 * errstr_size 0: nothing is written. */
void errstr_set(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* errstr = "what: why" (or "what" when why is NULL) on one line: the line
 * breaks of a library's message (libpq ends its messages with one) become
 * spaces, trailing spaces go, and a cut falls on a UTF-8 character boundary.
 * errstr_size 0 writes nothing. */
void errstr_line(char *errstr, size_t errstr_size, const char *what, const char *why);

#endif
