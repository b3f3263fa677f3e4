/*
 * num: the one checked number parser of the project (the house style has no
 * atoi): a setting, a command's option, a count read back from PostgreSQL.
 */
#ifndef KMS_NUM_H
#define KMS_NUM_H

#include <stdint.h>

/* A decimal integer in [min, max] and nothing else: an optional '-', then
 * digits; no sign '+', no spaces, no trailing bytes, no overflow. Returns 0
 * with the value in *out, or -1 with *out untouched. s may be NULL (-1). */
int num_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
    __attribute__((warn_unused_result));

/* A decimal number (strtod's forms) in [min, max]; NaN and the infinities
 * are refused. Returns 0 or -1 as num_parse_i64(). */
int num_parse_double(const char *s, double min, double max, double *out)
    __attribute__((warn_unused_result));

#endif
