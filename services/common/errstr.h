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

#endif
