/*
 * resolve_int: what the resolve module's files share and nothing else
 * includes. Not a public interface; resolve.h is.
 *
 * Resolution is a rewrite of the writer's binary datum into the reader's,
 * in three stages. A schema (ours, or a registry's answer) is parsed from
 * JSON into a graph of nodes, named types shared by reference, with every
 * limit and naming rule checked (resolve_schema.c; the syntax check of
 * resolve_json.c tells jansson's out-of-memory from bad JSON). A plan is
 * compiled once per (writer, reader) pair: for every pair of nodes that can
 * meet, what to do with the writer's bytes (copy, promote, map an enum
 * index or a union branch, reorder record fields, skip a field, insert a
 * default encoded ahead of time; resolve_plan.c). Running a plan reads the
 * datum with the same defences as the codec's walker, through datum.h, and
 * writes the reader's encoding into a bounded buffer (resolve_run.c, with
 * the buffer and the defaults' encoding in resolve_encode.c).
 *
 * Why a rewrite rather than values: the rewritten datum goes through the
 * decoder the current schema already has (walker, avro-c, copy), so there
 * is one decoder of requests, and the resolution can be checked on its own
 * against another Avro implementation, byte for byte on the decoded values.
 */
#ifndef KMS_RESOLVE_INT_H
#define KMS_RESOLVE_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resolve.h"

#define RESOLVE_MAX_FIXED_SIZE (1024 * 1024)
#define RESOLVE_MAX_PLANS      65536

/* ---- A parsed schema (resolve_schema.c) ---- */

typedef enum {
	T_NULL = 0,
	T_BOOLEAN,
	T_INT,
	T_LONG,
	T_FLOAT,
	T_DOUBLE,
	T_BYTES,
	T_STRING,
	T_RECORD,
	T_ENUM,
	T_ARRAY,
	T_MAP,
	T_UNION,
	T_FIXED
} rtype;

/* The names of the rtype values, in their order. */
extern const char *const resolve_type_names[];

typedef struct rnode rnode;

typedef struct {
	char *name;
	rnode *type;
	json_t *def; /* borrowed from the schema's JSON; NULL: no default */
	char **aliases;
	size_t nalias;
} rfield;

struct rnode {
	rtype t;
	char *full;         /* named types: the full name */
	const char *simple; /* its last part, inside full */
	char **aliases;     /* full names */
	size_t nalias;
	rfield *fields;
	size_t nfields;
	char **symbols;
	size_t nsym;
	long enum_default; /* index, or -1 */
	rnode *items;      /* array items, map values */
	rnode **branches;
	size_t nbranch;
	size_t size;     /* fixed */
	size_t min_size; /* fewest bytes a value takes */
	int min_state;   /* 0 not computed, 1 computing, 2 done */
};

struct resolve_schema {
	json_t *root;
	rnode **nodes; /* every node, owned */
	size_t n, cap;
	rnode *top;
};

/* ---- The reader's encoding (resolve_encode.c) ---- */

/* A growing output buffer that never holds more than max bytes. Once a
 * call fails (nomem, or over: max reached) every later call fails too. */
typedef struct {
	unsigned char *buf; /* malloc'd; the owner frees it */
	size_t len, cap, max;
	bool nomem, over;
} resolve_buf;

/* Append n bytes, a zigzag varint, a float or a double (little endian).
 * 0, or -1 with nomem or over set. */
int resolve_buf_add(resolve_buf *b, const void *p, size_t n) __attribute__((warn_unused_result));
int resolve_buf_long(resolve_buf *b, int64_t v) __attribute__((warn_unused_result));
int resolve_buf_float(resolve_buf *b, float f) __attribute__((warn_unused_result));
int resolve_buf_double(resolve_buf *b, double d) __attribute__((warn_unused_result));

/* Append the reader's encoding of the JSON default v of type n. -1 when v
 * does not fit n (nothing is said), or when b fails (nomem or over set). */
int resolve_default_encode(resolve_buf *b, const rnode *n, json_t *v, int depth)
    __attribute__((warn_unused_result));

/* resolve_json.c: whether the JSON text's syntax is sound, allocating
 * nothing. */
bool resolve_json_syntax_ok(const char *json, size_t len);

/* ---- Plans (resolve_plan.c), run by resolve_run.c ---- */

typedef enum {
	OP_NULL = 0,
	OP_BOOLEAN,
	OP_INT,
	OP_LONG,
	OP_FLOAT,
	OP_DOUBLE,
	OP_BYTES,
	OP_STRING,
	OP_FIXED,
	OP_INT_TO_LONG,
	OP_INT_TO_FLOAT,
	OP_INT_TO_DOUBLE,
	OP_LONG_TO_FLOAT,
	OP_LONG_TO_DOUBLE,
	OP_FLOAT_TO_DOUBLE,
	OP_STRING_TO_BYTES,
	OP_BYTES_TO_STRING,
	OP_ENUM,
	OP_ARRAY,
	OP_MAP,
	OP_RECORD,
	OP_WRITER_UNION,
	OP_READER_UNION
} opcode;

typedef struct plan plan;

typedef struct {
	long to;             /* reader field index, or -1: skipped */
	plan *p;             /* when to >= 0 */
	const rnode *w_type; /* the writer field's type, for skipping */
	const char *name;    /* the writer field's name, for messages */
} wfield_plan;

struct plan {
	opcode op;
	const rnode *w, *r;
	/* OP_ENUM: the reader's index for each writer symbol, -1 if none */
	long *symmap;
	/* OP_ARRAY, OP_MAP: the items; OP_READER_UNION: the branch's */
	plan *sub;
	long branch; /* OP_READER_UNION: the reader's branch index */
	/* OP_WRITER_UNION: one per writer branch, NULL when unresolvable */
	plan **branches;
	/* OP_RECORD */
	wfield_plan *wf;
	size_t nwf;
	unsigned char **defaults; /* per reader field: its encoded default, when
	                             the writer lacks it */
	size_t *default_len;
	size_t nrf;
	bool in_order; /* the writer gives the reader's fields in order, all */
};

struct resolve_plan {
	plan **plans; /* every plan, owned */
	size_t n, cap;
	plan *top;
};

#endif
