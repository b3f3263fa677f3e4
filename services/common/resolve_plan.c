/*
 * resolve_plan: how data of a writer schema read as a reader schema. First
 * the check, by the specification's rules, that the two can be resolved at
 * all (names, promotions, a reader union's branch, every reader field the
 * writer lacks given a default that fits); then the plan, compiled once per
 * pair of schemas, that says for every pair of nodes that can meet what to
 * do with the writer's bytes. Records are shared between plans, so a
 * recursive type has one plan per pair and a plan's size is bounded.
 */
#include "resolve.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errstr.h"
#include "resolve_int.h"

/* ---- Can the writer's type be read as the reader's? ---- */

static bool promotable(rtype w, rtype r)
{
	if (w == r)
		return true;
	switch (w) {
	case T_INT:
		return r == T_LONG || r == T_FLOAT || r == T_DOUBLE;
	case T_LONG:
		return r == T_FLOAT || r == T_DOUBLE;
	case T_FLOAT:
		return r == T_DOUBLE;
	case T_STRING:
		return r == T_BYTES;
	case T_BYTES:
		return r == T_STRING;
	default:
		return false;
	}
}

static const char *simple_of(const char *full)
{
	const char *dot = strrchr(full, '.');
	return dot ? dot + 1 : full;
}

/* Named types match by unqualified name, or when a reader alias names the
 * writer's type. */
static bool names_match(const rnode *w, const rnode *r)
{
	if (strcmp(w->simple, r->simple) == 0)
		return true;
	for (size_t i = 0; i < r->nalias; i++) {
		if (strcmp(r->aliases[i], w->full) == 0 ||
		    strcmp(simple_of(r->aliases[i]), w->simple) == 0)
			return true;
	}
	return false;
}

/* The specification's "match", one level deep, used to pick a reader
 * union's branch. */
static bool shallow_match(const rnode *w, const rnode *r, int depth)
{
	if (depth > RESOLVE_MAX_DEPTH)
		return false;
	if (w->t == T_UNION || r->t == T_UNION)
		return true;
	if (w->t <= T_STRING && r->t <= T_STRING)
		return promotable(w->t, r->t);
	if (w->t != r->t)
		return false;
	switch (w->t) {
	case T_ARRAY:
	case T_MAP:
		return shallow_match(w->items, r->items, depth + 1);
	case T_FIXED:
		return w->size == r->size && names_match(w, r);
	default:
		return names_match(w, r);
	}
}

static long reader_branch(const rnode *w, const rnode *r)
{
	for (size_t i = 0; i < r->nbranch; i++) {
		if (shallow_match(w, r->branches[i], 0))
			return (long)i;
	}
	return -1;
}

/* The reader field a writer field goes to, or -1. */
static long reader_field_of(const rnode *r, const char *wname)
{
	for (size_t i = 0; i < r->nfields; i++) {
		if (strcmp(r->fields[i].name, wname) == 0)
			return (long)i;
	}
	for (size_t i = 0; i < r->nfields; i++) {
		for (size_t k = 0; k < r->fields[i].nalias; k++) {
			if (strcmp(r->fields[i].aliases[k], wname) == 0)
				return (long)i;
		}
	}
	return -1;
}

/* The writer field that fills reader field ri, or -1. */
static long writer_field_for(const rnode *w, const rnode *r, size_t ri)
{
	for (size_t i = 0; i < w->nfields; i++) {
		if (reader_field_of(r, w->fields[i].name) == (long)ri)
			return (long)i;
	}
	return -1;
}

typedef struct {
	const rnode *w, *r;
	bool done; /* false: being checked, assumed to resolve */
} pair;

typedef struct {
	pair *pairs;
	size_t n, cap;
	bool nomem, too_many;
	char *errstr;
	size_t errstr_size;
} check_ctx;

static bool can_resolve(check_ctx *cx, const rnode *w, const rnode *r, int depth);

static bool fail_check(check_ctx *cx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool fail_check(check_ctx *cx, const char *fmt, ...)
{
	va_list ap;
	if (cx->errstr != NULL && cx->errstr_size > 0) {
		va_start(ap, fmt);
		(void)vsnprintf(cx->errstr, cx->errstr_size, fmt, ap);
		va_end(ap);
	}
	return false;
}

static bool check_record(check_ctx *cx, const rnode *w, const rnode *r, int depth)
{
	for (size_t i = 0; i < r->nfields; i++) {
		const rfield *rf = &r->fields[i];
		long wi = writer_field_for(w, r, i);
		if (wi >= 0) {
			if (!can_resolve(cx, w->fields[wi].type, rf->type, depth + 1))
				return false;
			continue;
		}
		if (rf->def == NULL)
			return fail_check(cx,
			                  "field %.64s of %.64s has no default and the writer "
			                  "lacks it",
			                  rf->name, r->full);
		resolve_buf probe = {.max = RESOLVE_MAX_SCHEMA_BYTES};
		int rc = resolve_default_encode(&probe, rf->type, rf->def, 0);
		free(probe.buf);
		if (probe.nomem) {
			cx->nomem = true;
			return false;
		}
		if (rc != 0)
			return fail_check(cx,
			                  "the default of field %.64s of %.64s does not fit "
			                  "its type",
			                  rf->name, r->full);
	}
	return true;
}

static bool can_resolve(check_ctx *cx, const rnode *w, const rnode *r, int depth)
{
	if (depth > RESOLVE_MAX_DEPTH)
		return fail_check(cx, "schemas nested deeper than %d", RESOLVE_MAX_DEPTH);
	if (w->t == T_UNION)
		return true; /* each branch is checked when it is read */
	if (r->t == T_UNION) {
		long b = reader_branch(w, r);
		if (b < 0)
			return fail_check(cx, "the writer's %.64s matches no branch of a union",
			                  w->full ? w->full : resolve_type_names[w->t]);
		return can_resolve(cx, w, r->branches[b], depth + 1);
	}
	if (w->t <= T_STRING || r->t <= T_STRING) {
		if (w->t <= T_STRING && r->t <= T_STRING && promotable(w->t, r->t))
			return true;
		return fail_check(cx, "the writer's %s cannot be read as %s",
		                  resolve_type_names[w->t], resolve_type_names[r->t]);
	}
	if (w->t != r->t)
		return fail_check(cx, "the writer's %s cannot be read as %s",
		                  resolve_type_names[w->t], resolve_type_names[r->t]);
	if (w->t == T_ARRAY || w->t == T_MAP)
		return can_resolve(cx, w->items, r->items, depth + 1);
	if (!names_match(w, r))
		return fail_check(cx, "the writer's %.64s is not the reader's %.64s", w->full,
		                  r->full);
	if (w->t == T_FIXED) {
		if (w->size != r->size)
			return fail_check(cx, "fixed %.64s has %zu bytes, the reader's %zu",
			                  w->full, w->size, r->size);
		return true;
	}
	if (w->t == T_ENUM)
		return true; /* a symbol the reader lacks fails when it is read */

	/* A record pair met before (or being checked: a recursive type) is
	 * taken as resolvable; a failure anywhere fails the whole check. */
	for (size_t i = 0; i < cx->n; i++) {
		if (cx->pairs[i].w == w && cx->pairs[i].r == r)
			return true;
	}
	if (cx->n >= RESOLVE_MAX_PLANS) {
		cx->too_many = true;
		return fail_check(cx, "the schemas are too complex to resolve");
	}
	if (cx->n == cx->cap) {
		size_t cap = cx->cap ? cx->cap * 2 : 32;
		pair *np = realloc(cx->pairs, cap * sizeof *np);
		if (np == NULL) {
			cx->nomem = true;
			return fail_check(cx, "out of memory");
		}
		cx->pairs = np;
		cx->cap = cap;
	}
	cx->pairs[cx->n++] = (pair){w, r, false};
	return check_record(cx, w, r, depth);
}

/* Check one writer union branch against the reader, on its own: a failure
 * there is no failure of the whole, and what it assumed is forgotten. */
static bool can_resolve_branch(check_ctx *cx, const rnode *w, const rnode *r)
{
	size_t mark = cx->n;
	bool ok = can_resolve(cx, w, r, 0);
	if (!ok)
		cx->n = mark;
	return ok;
}

/* ---- Plans ---- */

typedef struct {
	resolve_plan *rp;
	check_ctx *cx;
	bool nomem;
} build_ctx;

static plan *build(build_ctx *bx, const rnode *w, const rnode *r);

static plan *new_plan(build_ctx *bx, opcode op, const rnode *w, const rnode *r)
{
	resolve_plan *rp = bx->rp;
	if (rp->n == rp->cap) {
		size_t cap = rp->cap ? rp->cap * 2 : 32;
		plan **np = realloc(rp->plans, cap * sizeof *np);
		if (np == NULL) {
			bx->nomem = true;
			return NULL;
		}
		rp->plans = np;
		rp->cap = cap;
	}
	plan *p = calloc(1, sizeof *p);
	if (p == NULL) {
		bx->nomem = true;
		return NULL;
	}
	p->op = op;
	p->w = w;
	p->r = r;
	rp->plans[rp->n++] = p;
	return p;
}

static opcode primitive_op(rtype w, rtype r)
{
	if (w == r) {
		static const opcode same[] = {OP_NULL,  OP_BOOLEAN, OP_INT,   OP_LONG,
		                              OP_FLOAT, OP_DOUBLE,  OP_BYTES, OP_STRING};
		return same[w];
	}
	if (w == T_INT)
		return r == T_LONG    ? OP_INT_TO_LONG
		       : r == T_FLOAT ? OP_INT_TO_FLOAT
		                      : OP_INT_TO_DOUBLE;
	if (w == T_LONG)
		return r == T_FLOAT ? OP_LONG_TO_FLOAT : OP_LONG_TO_DOUBLE;
	if (w == T_FLOAT)
		return OP_FLOAT_TO_DOUBLE;
	return w == T_STRING ? OP_STRING_TO_BYTES : OP_BYTES_TO_STRING;
}

static int build_record(build_ctx *bx, plan *p)
{
	const rnode *w = p->w, *r = p->r;
	long last = -1;

	p->nwf = w->nfields;
	p->nrf = r->nfields;
	p->in_order = true;
	if (w->nfields > 0 && (p->wf = calloc(w->nfields, sizeof *p->wf)) == NULL)
		goto oom;
	if (r->nfields > 0 && ((p->defaults = calloc(r->nfields, sizeof *p->defaults)) == NULL ||
	                       (p->default_len = calloc(r->nfields, sizeof(size_t))) == NULL))
		goto oom;
	for (size_t i = 0; i < w->nfields; i++) {
		wfield_plan *f = &p->wf[i];
		f->name = w->fields[i].name;
		f->w_type = w->fields[i].type;
		f->to = reader_field_of(r, w->fields[i].name);
		if (f->to < 0) {
			p->in_order = false;
			continue;
		}
		if (f->to != last + 1)
			p->in_order = false;
		last = f->to;
		f->p = build(bx, w->fields[i].type, r->fields[f->to].type);
		if (f->p == NULL)
			return -1;
	}
	for (size_t i = 0; i < r->nfields; i++) {
		if (writer_field_for(w, r, i) >= 0)
			continue;
		p->in_order = false;
		resolve_buf b = {.max = RESOLVE_MAX_SCHEMA_BYTES};
		if (resolve_default_encode(&b, r->fields[i].type, r->fields[i].def, 0) != 0) {
			free(b.buf);
			/* checked by can_resolve: only memory can fail here */
			goto oom;
		}
		p->defaults[i] = b.buf ? b.buf : malloc(1);
		p->default_len[i] = b.len;
		if (p->defaults[i] == NULL)
			goto oom;
	}
	return 0;
oom:
	bx->nomem = true;
	return -1;
}

/* The plan of a pair can_resolve() accepted; only memory can fail. */
static plan *build(build_ctx *bx, const rnode *w, const rnode *r)
{
	plan *p;

	/* Records are shared: a recursive type has one plan per pair. */
	if (w->t == T_RECORD && r->t == T_RECORD) {
		for (size_t i = 0; i < bx->rp->n; i++) {
			p = bx->rp->plans[i];
			if (p->op == OP_RECORD && p->w == w && p->r == r)
				return p;
		}
	}
	if (bx->rp->n >= RESOLVE_MAX_PLANS) {
		bx->cx->too_many = true;
		return NULL;
	}
	if (w->t == T_UNION) {
		p = new_plan(bx, OP_WRITER_UNION, w, r);
		if (p == NULL || (p->branches = calloc(w->nbranch, sizeof *p->branches)) == NULL) {
			bx->nomem = true;
			return NULL;
		}
		for (size_t i = 0; i < w->nbranch; i++) {
			if (!can_resolve_branch(bx->cx, w->branches[i], r)) {
				if (bx->cx->nomem || bx->cx->too_many)
					return NULL;
				continue;
			}
			p->branches[i] = build(bx, w->branches[i], r);
			if (p->branches[i] == NULL)
				return NULL;
		}
		return p;
	}
	if (r->t == T_UNION) {
		p = new_plan(bx, OP_READER_UNION, w, r);
		if (p == NULL)
			return NULL;
		p->branch = reader_branch(w, r);
		p->sub = build(bx, w, r->branches[p->branch]);
		return p->sub ? p : NULL;
	}
	if (w->t <= T_STRING)
		return new_plan(bx, primitive_op(w->t, r->t), w, r);
	switch (w->t) {
	case T_FIXED:
		return new_plan(bx, OP_FIXED, w, r);
	case T_ENUM:
		p = new_plan(bx, OP_ENUM, w, r);
		if (p == NULL || (p->symmap = calloc(w->nsym, sizeof *p->symmap)) == NULL) {
			bx->nomem = true;
			return NULL;
		}
		for (size_t i = 0; i < w->nsym; i++) {
			p->symmap[i] = r->enum_default;
			for (size_t k = 0; k < r->nsym; k++) {
				if (strcmp(w->symbols[i], r->symbols[k]) == 0) {
					p->symmap[i] = (long)k;
					break;
				}
			}
		}
		return p;
	case T_ARRAY:
	case T_MAP:
		p = new_plan(bx, w->t == T_ARRAY ? OP_ARRAY : OP_MAP, w, r);
		if (p == NULL)
			return NULL;
		p->sub = build(bx, w->items, r->items);
		return p->sub ? p : NULL;
	default:
		p = new_plan(bx, OP_RECORD, w, r);
		if (p == NULL || build_record(bx, p) != 0)
			return NULL;
		return p;
	}
}

resolve_plan *resolve_plan_new(const resolve_schema *writer, const resolve_schema *reader,
                               int *nomem_out, char *errstr, size_t errstr_size)
{
	check_ctx cx = {.errstr = errstr, .errstr_size = errstr_size};
	resolve_plan *rp = NULL;
	build_ctx bx = {.cx = &cx};

	if (nomem_out != NULL)
		*nomem_out = 0;
	if (!can_resolve(&cx, writer->top, reader->top, 0))
		goto fail;
	rp = calloc(1, sizeof *rp);
	if (rp == NULL) {
		cx.nomem = true;
		goto fail;
	}
	bx.rp = rp;
	rp->top = build(&bx, writer->top, reader->top);
	if (rp->top == NULL) {
		if (cx.too_many)
			errstr_set(errstr, errstr_size, "the schemas are too complex to resolve");
		else
			cx.nomem = true;
		goto fail;
	}
	free(cx.pairs);
	return rp;
fail:
	if (cx.nomem) {
		errstr_set(errstr, errstr_size, "out of memory");
		if (nomem_out != NULL)
			*nomem_out = 1;
	}
	free(cx.pairs);
	resolve_plan_destroy(rp);
	return NULL;
}

void resolve_plan_destroy(resolve_plan *rp)
{
	if (rp == NULL)
		return;
	for (size_t i = 0; i < rp->n; i++) {
		plan *p = rp->plans[i];
		free(p->symmap);
		free(p->branches);
		free(p->wf);
		for (size_t k = 0; p->defaults != NULL && k < p->nrf; k++)
			free(p->defaults[k]);
		free(p->defaults);
		free(p->default_len);
		free(p);
	}
	free(rp->plans);
	free(rp);
}
