/*
 * request: valctl provision's request, from --file and the flags.
 */
#ifndef VALCTL_REQUEST_H
#define VALCTL_REQUEST_H

#include <stddef.h>

#include "codec.h"

/* A --service or --content flag, split; the pieces point into one malloc'd
 * copy of the argument (buf). */
typedef struct {
	char *buf;
	const char *id;
	codec_key_format_type format; /* --service */
	const char *version;          /* --service; NULL when absent */
	const char *key, *value;      /* --content */
} request_spec;

/* --service "ID:FORMAT[:VERSION]" and --content "ID:KEY=VALUE" into *out;
 * 0, or -1 with why filled. out->buf is the caller's either way (see
 * request_specs_free()). */
int request_spec_service(const char *arg, request_spec *out, char *why, size_t why_size)
    __attribute__((warn_unused_result));
int request_spec_content(const char *arg, request_spec *out, char *why, size_t why_size)
    __attribute__((warn_unused_result));
/* Free the bufs of n specs and the array s itself. */
void request_specs_free(request_spec *s, size_t n);

/* Fill r from the JSON file at path; 0, or -1 with errstr filled. */
int request_load_file(codec_request *r, const char *path, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/* The token of --token-file: the file without its trailing white space. A
 * malloc'd string the caller wipes and frees, or NULL with errstr filled. */
char *request_read_token(const char *path, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/* The request's fields given as flags (NULL, 0: not given). Borrowed. */
typedef struct {
	const char *requester, *endpoint, *token, *request_id, *supp_feat;
	const request_spec *services; /* replace the file's list when given */
	size_t service_count;
	const request_spec *contents;
	size_t content_count;
} request_flags;

/* Put the flags over r (as read from --file, or empty), then fill what is
 * left to chance: a random requestId, sentAt = now. Returns 0, or the exit
 * code with the message printed: VALCTL_EXIT_USAGE when the flags do not
 * fit together or the request lacks a required field,
 * VALCTL_EXIT_RUNTIME when out of memory. */
int request_apply(codec_request *r, const request_flags *f, const char *sub)
    __attribute__((warn_unused_result));

/* Free every member of r (all malloc'd here) and empty it. */
void request_clear(codec_request *r);

#endif
