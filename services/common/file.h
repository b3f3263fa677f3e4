/*
 * file: a whole file read into memory, bounded, for the few files the
 * programs read (keys, issuers, JWK Sets, schemas, recordings).
 */
#ifndef KMS_FILE_H
#define KMS_FILE_H

#include <stddef.h>

/* Read path whole, at most max_bytes, NUL-terminated (the file may hold NUL
 * bytes: *len says how many were read; len may be NULL). Returns a malloc'd
 * buffer the caller frees, or NULL with errstr filled ("cannot open PATH:
 * why", "PATH is larger than N bytes", ...). Memory grows with the file, not
 * with the bound. */
char *file_read(const char *path, size_t max_bytes, size_t *len, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

#endif
