/*
 * resolve_run: a plan run over a datum. The writer's bytes are read with
 * the same defences as the codec's walker (every read goes through
 * datum.h: lengths within the value, varints bounded, UTF-8, block counts
 * against the bytes left, nesting bounded) and the reader's encoding is
 * written into a buffer bounded by the limits, fields put in the reader's
 * order, defaults where the writer had nothing, promotions done.
 */
#include "resolve.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "datum.h"
#include "errstr.h"
#include "resolve_int.h"

typedef struct {
	datum_cursor in;
	const resolve_limits *lim;
	resolve_buf out;
} run_ctx;

/* Output trouble, said once. */
static int out_fail(run_ctx *x, const char *field)
{
	if (x->out.nomem)
		return datum_fail(&x->in, CODEC_ERR_NOMEM, field, "out of memory");
	return datum_fail(&x->in, CODEC_ERR_LIMIT, field, "the resolved value is over %zu bytes",
	                  x->out.max);
}

static int put(run_ctx *x, const char *field, const void *p, size_t n)
{
	return resolve_buf_add(&x->out, p, n) == 0 ? 0 : out_fail(x, field);
}

static int put_long(run_ctx *x, const char *field, int64_t v)
{
	return resolve_buf_long(&x->out, v) == 0 ? 0 : out_fail(x, field);
}

/* A length-prefixed string or bytes; a string's bytes are UTF-8. NUL is
 * valid UTF-8 and valid Avro: refusing it is the reader's decoder's
 * business, not the resolution's. */
static int get_bytes(run_ctx *x, const char *field, bool is_string, const unsigned char **s,
                     size_t *n)
{
	return datum_read_bytes(&x->in, field, is_string ? DATUM_UTF8 : DATUM_BYTES,
	                        x->lim->max_string_bytes, s, n);
}

static int run_node(run_ctx *x, const plan *p, const char *field, int depth);
static int skip_node(run_ctx *x, const rnode *w, const char *field, int depth);

/* Arrays and maps: blocks of a count (negative: then a byte size) and
 * items, a zero count last. The reader's encoding gets one positive-count
 * block per writer block. p is NULL when skipping (w is then the writer's
 * array or map). */
static int run_blocks(run_ctx *x, const plan *p, const rnode *w, const char *field, int depth)
{
	bool is_map = w->t == T_MAP;
	size_t item_min = (is_map ? 1 : 0) + w->items->min_size, total = 0;

	for (;;) {
		datum_block b;
		if (datum_block_begin(&x->in, field, &b) != 0)
			return -1;
		if (b.count == 0)
			break;
		/* A count the bytes left cannot hold is refused before any
		 * loop; items that take no bytes are bounded by max_items. */
		uint64_t left = x->in.len - x->in.pos;
		uint64_t room = item_min > 0 ? left / item_min : x->lim->max_items;
		if ((uint64_t)b.count > room || (uint64_t)b.count > x->lim->max_items - total)
			return datum_fail(&x->in, CODEC_ERR_DATUM, field,
			                  "a block of %lld items cannot fit in the %zu bytes left",
			                  (long long)b.count, x->in.len - x->in.pos);
		if (p != NULL && put_long(x, field, b.count) != 0)
			return -1;
		for (int64_t i = 0; i < b.count; i++) {
			if (is_map) {
				const unsigned char *k;
				size_t kn;
				if (get_bytes(x, field, true, &k, &kn) != 0)
					return -1;
				if (p != NULL && (put_long(x, field, (int64_t)kn) != 0 ||
				                  put(x, field, k, kn) != 0))
					return -1;
			}
			int rc = p != NULL ? run_node(x, p->sub, field, depth + 1)
			                   : skip_node(x, w->items, field, depth + 1);
			if (rc != 0)
				return -1;
		}
		if (datum_block_end(&x->in, field, &b) != 0)
			return -1;
		total += (size_t)b.count;
	}
	return p != NULL ? put_long(x, field, 0) : 0;
}

/* Read a value of the writer's type w, checked, and write nothing. */
static int skip_node(run_ctx *x, const rnode *w, const char *field, int depth)
{
	int64_t v;
	const unsigned char *s = NULL;
	size_t n;

	if (datum_enter(&x->in, field, depth, RESOLVE_MAX_DEPTH) != 0)
		return -1;
	switch (w->t) {
	case T_NULL:
		return 0;
	case T_BOOLEAN:
		if (datum_read_fixed(&x->in, field, 1, &s) != 0)
			return -1;
		if (*s > 1)
			return datum_fail(&x->in, CODEC_ERR_DATUM, field,
			                  "a boolean is not 0 or 1");
		return 0;
	case T_INT:
		return datum_read_int(&x->in, field, &v);
	case T_LONG:
		return datum_read_long(&x->in, field, &v);
	case T_FLOAT:
		return datum_read_fixed(&x->in, field, 4, &s);
	case T_DOUBLE:
		return datum_read_fixed(&x->in, field, 8, &s);
	case T_FIXED:
		return datum_read_fixed(&x->in, field, w->size, &s);
	case T_BYTES:
		return get_bytes(x, field, false, &s, &n);
	case T_STRING:
		return get_bytes(x, field, true, &s, &n);
	case T_ENUM:
		return datum_read_enum(&x->in, field, w->nsym, &v);
	case T_UNION:
		if (datum_read_branch(&x->in, field, w->nbranch, &v) != 0)
			return -1;
		return skip_node(x, w->branches[v], field, depth + 1);
	case T_RECORD:
		for (size_t i = 0; i < w->nfields; i++) {
			if (skip_node(x, w->fields[i].type, w->fields[i].name, depth + 1) != 0)
				return -1;
		}
		return 0;
	case T_ARRAY:
	case T_MAP:
		return run_blocks(x, NULL, w, field, depth);
	}
	return datum_fail(&x->in, CODEC_ERR_DATUM, field, "unsupported type");
}

typedef struct {
	size_t off, len;
	bool set;
} segment;

static int run_record(run_ctx *x, const plan *p, int depth)
{
	size_t start = x->out.len;
	segment local[16], *seg = local;
	unsigned char *tmp = NULL;
	int rc = -1;

	if (p->in_order) {
		for (size_t i = 0; i < p->nwf; i++) {
			if (run_node(x, p->wf[i].p, p->wf[i].name, depth + 1) != 0)
				return -1;
		}
		return 0;
	}
	if (p->nrf > sizeof local / sizeof local[0]) {
		seg = calloc(p->nrf, sizeof *seg);
		if (seg == NULL)
			return datum_fail(&x->in, CODEC_ERR_NOMEM, p->r->full, "out of memory");
	} else {
		memset(local, 0, sizeof local);
	}
	for (size_t i = 0; i < p->nwf; i++) {
		const wfield_plan *f = &p->wf[i];
		if (f->to < 0) {
			if (skip_node(x, f->w_type, f->name, depth + 1) != 0)
				goto done;
			continue;
		}
		size_t at = x->out.len;
		if (run_node(x, f->p, f->name, depth + 1) != 0)
			goto done;
		seg[f->to] = (segment){at, x->out.len - at, true};
	}
	/* Put the fields in the reader's order, defaults where the writer had
	 * nothing: copy what was written aside, then write it back. */
	size_t written = x->out.len - start;
	if (written > 0) {
		tmp = malloc(written);
		if (tmp == NULL) {
			datum_fail(&x->in, CODEC_ERR_NOMEM, p->r->full, "out of memory");
			goto done;
		}
		memcpy(tmp, x->out.buf + start, written);
	}
	x->out.len = start;
	for (size_t i = 0; i < p->nrf; i++) {
		if (seg[i].set) {
			if (put(x, p->r->fields[i].name, tmp + (seg[i].off - start), seg[i].len) !=
			    0)
				goto done;
		} else if (put(x, p->r->fields[i].name, p->defaults[i], p->default_len[i]) != 0) {
			goto done;
		}
	}
	rc = 0;
done:
	free(tmp);
	if (seg != local)
		free(seg);
	return rc;
}

static int run_node(run_ctx *x, const plan *p, const char *field, int depth)
{
	int64_t v;
	const unsigned char *s = NULL;
	size_t n;

	if (datum_enter(&x->in, field, depth, RESOLVE_MAX_DEPTH) != 0)
		return -1;
	switch (p->op) {
	case OP_NULL:
		return 0;
	case OP_BOOLEAN:
		if (skip_node(x, p->w, field, depth) != 0)
			return -1;
		return put(x, field, x->in.p + x->in.pos - 1, 1);
	case OP_INT:
	case OP_LONG:
	case OP_FLOAT:
	case OP_DOUBLE:
	case OP_FIXED:
	case OP_BYTES:
	case OP_STRING: {
		/* Same type: the writer's bytes are the reader's, once checked. */
		size_t from = x->in.pos;
		if (skip_node(x, p->w, field, depth) != 0)
			return -1;
		return put(x, field, x->in.p + from, x->in.pos - from);
	}
	case OP_INT_TO_LONG:
		if (datum_read_int(&x->in, field, &v) != 0)
			return -1;
		return put_long(x, field, v);
	case OP_INT_TO_FLOAT:
	case OP_LONG_TO_FLOAT:
		if ((p->op == OP_INT_TO_FLOAT ? datum_read_int(&x->in, field, &v)
		                              : datum_read_long(&x->in, field, &v)) != 0)
			return -1;
		return resolve_buf_float(&x->out, (float)v) == 0 ? 0 : out_fail(x, field);
	case OP_INT_TO_DOUBLE:
	case OP_LONG_TO_DOUBLE:
		if ((p->op == OP_INT_TO_DOUBLE ? datum_read_int(&x->in, field, &v)
		                               : datum_read_long(&x->in, field, &v)) != 0)
			return -1;
		return resolve_buf_double(&x->out, (double)v) == 0 ? 0 : out_fail(x, field);
	case OP_FLOAT_TO_DOUBLE: {
		float f;
		uint32_t u = 0;
		if (datum_read_fixed(&x->in, field, 4, &s) != 0)
			return -1;
		for (int i = 0; i < 4; i++)
			u |= (uint32_t)s[i] << (8 * i);
		memcpy(&f, &u, 4);
		return resolve_buf_double(&x->out, (double)f) == 0 ? 0 : out_fail(x, field);
	}
	case OP_STRING_TO_BYTES:
	case OP_BYTES_TO_STRING: {
		/* The same encoding; a string made of bytes must be UTF-8. */
		size_t from = x->in.pos;
		if (get_bytes(x, field, p->op == OP_BYTES_TO_STRING, &s, &n) != 0)
			return -1;
		return put(x, field, x->in.p + from, x->in.pos - from);
	}
	case OP_ENUM:
		if (datum_read_enum(&x->in, field, p->w->nsym, &v) != 0)
			return -1;
		if (p->symmap[v] < 0)
			return datum_fail(&x->in, CODEC_ERR_RESOLVE, field,
			                  "symbol %.64s of the writer is not in the reader's enum",
			                  p->w->symbols[v]);
		return put_long(x, field, p->symmap[v]);
	case OP_ARRAY:
	case OP_MAP:
		return run_blocks(x, p, p->w, field, depth);
	case OP_RECORD:
		return run_record(x, p, depth);
	case OP_READER_UNION:
		if (put_long(x, field, p->branch) != 0)
			return -1;
		return run_node(x, p->sub, field, depth + 1);
	case OP_WRITER_UNION:
		if (datum_read_branch(&x->in, field, p->w->nbranch, &v) != 0)
			return -1;
		if (p->branches[v] == NULL)
			return datum_fail(
			    &x->in, CODEC_ERR_RESOLVE, field,
			    "the writer's union branch %lld (%.64s) cannot be read as "
			    "the reader's type",
			    (long long)v,
			    p->w->branches[v]->full ? p->w->branches[v]->full
			                            : resolve_type_names[p->w->branches[v]->t]);
		return run_node(x, p->branches[v], field, depth + 1);
	}
	return datum_fail(&x->in, CODEC_ERR_DATUM, field, "unsupported plan");
}

codec_status resolve_datum(const resolve_plan *rp, const resolve_limits *lim, const void *datum,
                           size_t len, size_t base_offset, unsigned char **out, size_t *out_len,
                           char *errstr, size_t errstr_size)
{
	run_ctx x = {.in = {.p = datum,
	                    .len = len,
	                    .base = base_offset,
	                    .errstr = errstr,
	                    .errstr_size = errstr_size},
	             .lim = lim,
	             .out = {.max = lim->max_out_bytes}};

	*out = NULL;
	*out_len = 0;
	if (run_node(&x, rp->top, NULL, 0) != 0) {
		free(x.out.buf);
		return x.in.status;
	}
	if (x.in.pos != x.in.len) {
		free(x.out.buf);
		errstr_set(errstr, errstr_size, "%zu trailing bytes after the datum",
		           x.in.len - x.in.pos);
		return CODEC_ERR_DATUM;
	}
	if (x.out.buf == NULL) {
		/* an empty datum (a null, an empty record) is still a buffer */
		x.out.buf = malloc(1);
		if (x.out.buf == NULL) {
			errstr_set(errstr, errstr_size, "out of memory");
			return CODEC_ERR_NOMEM;
		}
	}
	*out = x.out.buf;
	*out_len = x.out.len;
	return CODEC_OK;
}
