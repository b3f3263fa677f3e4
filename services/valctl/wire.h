/*
 * wire: the framing of what valctl writes and reads, single-object or
 * Confluent (with the registry of --registry).
 */
#ifndef VALCTL_WIRE_H
#define VALCTL_WIRE_H

#include <stddef.h>

#include "cli.h"
#include "codec.h"
#include "registry.h"

/* How one thread writes requests and reads Results: in the framing of
 * --framing (single-object by default), through the schema registry of
 * --registry when Confluent-framed. A Result is read in whichever framing it
 * comes. */
typedef struct {
	codec_frame frame;
	registry *reg; /* NULL without a registry */
	const codec *cod;
} valctl_wire;

/* Open a wire for codec cod (borrowed). With Confluent framing, the request
 * schema's id is looked up under <requests topic>-value, and registered
 * there when missing, as a registry-aware serializer does. Returns 0, or an
 * exit code with the error printed. */
int valctl_wire_open(valctl_wire *w, const valctl_common *c, const codec *cod, const char *sub)
    __attribute__((warn_unused_result));
void valctl_wire_close(valctl_wire *w);
int valctl_wire_encode(valctl_wire *w, const codec_request *r, unsigned char **out, size_t *out_len,
                       char *errstr, size_t errstr_size) __attribute__((warn_unused_result));
codec_status valctl_wire_decode_response(valctl_wire *w, const void *value, size_t len,
                                         codec_response_owned **out, char *errstr,
                                         size_t errstr_size) __attribute__((warn_unused_result));
/* A request value in the wire's framing: decoded (either framing) and
 * encoded again; a value that is not a request is returned as it is.
 * Returns 0 and a malloc'd *out, or -1 with errstr filled. */
int valctl_wire_reframe(valctl_wire *w, const void *value, size_t len, unsigned char **out,
                        size_t *out_len, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

#endif
