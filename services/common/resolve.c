/*
 * resolve: Avro schema resolution by the specification's rules, done as a
 * rewrite of the writer's binary datum into the reader's.
 *
 * Three stages. A schema (ours, or a registry's answer) is parsed from JSON
 * into a graph of nodes, named types shared by reference, with every limit
 * and naming rule checked. A plan is compiled once per (writer, reader)
 * pair: for every pair of nodes that can meet, what to do with the writer's
 * bytes (copy, promote, map an enum index or a union branch, reorder record
 * fields, skip a field, insert a default encoded ahead of time). Running a
 * plan reads the datum with the same defences as the walker of codec.c and
 * writes the reader's encoding into a bounded buffer.
 *
 * Why a rewrite rather than values: the rewritten datum goes through the
 * decoder the current schema already has (walker, avro-c, copy), so there is
 * one decoder of requests, and the resolution can be checked on its own
 * against another Avro implementation, byte for byte on the decoded values.
 */
#include "resolve.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errstr.h"
#include "utf8.h"

#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#define MAX_FIXED_SIZE    (1024 * 1024)
#define MAX_PLANS         65536

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

static const char *const type_names[] = {"null",   "boolean", "int",    "long",   "float",
                                         "double", "bytes",   "string", "record", "enum",
                                         "array",  "map",     "union",  "fixed"};

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

/* ---- Parsing ---- */

typedef struct {
	resolve_schema *s;
	bool nomem;
	char *errstr;
	size_t errstr_size;
} pctx;

static char *join(const char *ns, const char *name)
{
	size_t a = ns ? strlen(ns) : 0, b = strlen(name);
	char *s = malloc(a + b + 2);
	if (s == NULL)
		return NULL;
	if (a > 0) {
		memcpy(s, ns, a);
		s[a++] = '.';
	}
	memcpy(s + a, name, b + 1);
	return s;
}

/* name relative to ns: a dotted name is full already. */
static char *full_name(const char *name, const char *ns)
{
	if (strchr(name, '.') != NULL)
		return strdup(name);
	return join(ns, name);
}

/* A JSON string used as a name, symbol or type: NULL when not a string or
 * when it holds a NUL (the JSON text may, as a bytes default may). */
static const char *jname(json_t *j)
{
	const char *s = json_string_value(j);
	if (s == NULL || strlen(s) != json_string_length(j))
		return NULL;
	return s;
}

static int nomem(pctx *px)
{
	px->nomem = true;
	errstr_set(px->errstr, px->errstr_size, "out of memory");
	return -1;
}

static rnode *new_node(pctx *px, rtype t)
{
	resolve_schema *s = px->s;
	if (s->n >= RESOLVE_MAX_NODES) {
		errstr_set(px->errstr, px->errstr_size, "the schema has more than %d types",
		           RESOLVE_MAX_NODES);
		return NULL;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 32;
		rnode **nn = realloc(s->nodes, cap * sizeof *nn);
		if (nn == NULL) {
			nomem(px);
			return NULL;
		}
		s->nodes = nn;
		s->cap = cap;
	}
	rnode *n = calloc(1, sizeof *n);
	if (n == NULL) {
		nomem(px);
		return NULL;
	}
	n->t = t;
	n->enum_default = -1;
	s->nodes[s->n++] = n;
	return n;
}

static rnode *find_named(const resolve_schema *s, const char *full)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->nodes[i]->full != NULL && strcmp(s->nodes[i]->full, full) == 0)
			return s->nodes[i];
	}
	return NULL;
}

static int primitive_of(const char *name, rtype *t)
{
	for (int i = T_NULL; i <= T_STRING; i++) {
		if (strcmp(name, type_names[i]) == 0) {
			*t = (rtype)i;
			return 0;
		}
	}
	return -1;
}

static rnode *parse_node(pctx *px, json_t *j, const char *ns, int depth);

static rnode *reference(pctx *px, const char *name, const char *ns)
{
	rtype t;
	if (primitive_of(name, &t) == 0)
		return new_node(px, t);
	if (!codec_dotted_name_ok(name, false)) {
		errstr_set(px->errstr, px->errstr_size, "invalid type name \"%.64s\"", name);
		return NULL;
	}
	if (strchr(name, '.') == NULL && ns != NULL && *ns != '\0') {
		char *full = join(ns, name);
		if (full == NULL) {
			nomem(px);
			return NULL;
		}
		rnode *n = find_named(px->s, full);
		free(full);
		if (n != NULL)
			return n;
	}
	rnode *n = find_named(px->s, name);
	if (n == NULL)
		errstr_set(px->errstr, px->errstr_size, "unknown type name \"%.64s\"", name);
	return n;
}

/* aliases: an optional array of names, made full relative to ns when
 * full_names (named types), kept as given otherwise (fields). */
static int parse_aliases(pctx *px, json_t *obj, const char *ns, bool full_names, char ***out,
                         size_t *count)
{
	json_t *a = json_object_get(obj, "aliases");
	*out = NULL;
	*count = 0;
	if (a == NULL)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > 256) {
		errstr_set(px->errstr, px->errstr_size, "aliases must be an array of names");
		return -1;
	}
	if (json_array_size(a) == 0)
		return 0;
	*out = calloc(json_array_size(a), sizeof **out);
	if (*out == NULL)
		return nomem(px);
	for (size_t i = 0; i < json_array_size(a); i++) {
		const char *n = jname(json_array_get(a, i));
		if (n == NULL || !(full_names ? codec_dotted_name_ok(n, false)
		                              : codec_name_part_ok(n, strlen(n)))) {
			errstr_set(px->errstr, px->errstr_size, "invalid alias");
			return -1;
		}
		(*out)[i] = full_names ? full_name(n, ns) : strdup(n);
		if ((*out)[i] == NULL)
			return nomem(px);
		*count = i + 1;
	}
	return 0;
}

static int parse_record(pctx *px, rnode *n, json_t *j, const char *own_ns, int depth)
{
	json_t *fields = json_object_get(j, "fields");
	if (!json_is_array(fields)) {
		errstr_set(px->errstr, px->errstr_size, "record %s without fields", n->full);
		return -1;
	}
	size_t nf = json_array_size(fields);
	if (nf > 0) {
		n->fields = calloc(nf, sizeof *n->fields);
		if (n->fields == NULL)
			return nomem(px);
	}
	for (size_t i = 0; i < nf; i++) {
		json_t *f = json_array_get(fields, i);
		const char *fname = jname(json_object_get(f, "name"));
		json_t *ftype = json_object_get(f, "type");
		if (fname == NULL || !codec_name_part_ok(fname, strlen(fname)) || ftype == NULL) {
			errstr_set(px->errstr, px->errstr_size,
			           "record %s has a field without a valid name and type", n->full);
			return -1;
		}
		for (size_t k = 0; k < i; k++) {
			if (strcmp(n->fields[k].name, fname) == 0) {
				errstr_set(px->errstr, px->errstr_size,
				           "record %s has the field %s twice", n->full, fname);
				return -1;
			}
		}
		rfield *rf = &n->fields[i];
		n->nfields = i + 1;
		rf->name = strdup(fname);
		if (rf->name == NULL)
			return nomem(px);
		rf->def = json_object_get(f, "default");
		if (parse_aliases(px, f, NULL, false, &rf->aliases, &rf->nalias) != 0)
			return -1;
		rf->type = parse_node(px, ftype, own_ns, depth + 1);
		if (rf->type == NULL)
			return -1;
	}
	return 0;
}

static int parse_enum(pctx *px, rnode *n, json_t *j)
{
	json_t *symbols = json_object_get(j, "symbols");
	if (!json_is_array(symbols) || json_array_size(symbols) == 0 ||
	    json_array_size(symbols) > RESOLVE_MAX_NODES) {
		errstr_set(px->errstr, px->errstr_size, "enum %s without valid symbols", n->full);
		return -1;
	}
	n->symbols = calloc(json_array_size(symbols), sizeof *n->symbols);
	if (n->symbols == NULL)
		return nomem(px);
	for (size_t i = 0; i < json_array_size(symbols); i++) {
		const char *sym = jname(json_array_get(symbols, i));
		if (sym == NULL || !codec_name_part_ok(sym, strlen(sym))) {
			errstr_set(px->errstr, px->errstr_size, "enum %s has an invalid symbol",
			           n->full);
			return -1;
		}
		for (size_t k = 0; k < i; k++) {
			if (strcmp(n->symbols[k], sym) == 0) {
				errstr_set(px->errstr, px->errstr_size,
				           "enum %s has the symbol %s twice", n->full, sym);
				return -1;
			}
		}
		n->symbols[i] = strdup(sym);
		if (n->symbols[i] == NULL)
			return nomem(px);
		n->nsym = i + 1;
	}
	json_t *def = json_object_get(j, "default");
	if (def != NULL) {
		const char *d = jname(def);
		for (size_t i = 0; d != NULL && i < n->nsym; i++) {
			if (strcmp(n->symbols[i], d) == 0)
				n->enum_default = (long)i;
		}
		if (n->enum_default < 0) {
			errstr_set(px->errstr, px->errstr_size,
			           "enum %s has a default that is not one of its symbols", n->full);
			return -1;
		}
	}
	return 0;
}

static rnode *parse_named(pctx *px, json_t *j, rtype t, const char *ns, int depth)
{
	const char *name = jname(json_object_get(j, "name"));
	json_t *jns = json_object_get(j, "namespace");
	char *own_ns = NULL;
	rnode *n = NULL;

	if (name == NULL || !codec_dotted_name_ok(name, false)) {
		errstr_set(px->errstr, px->errstr_size, "%s without a valid name", type_names[t]);
		return NULL;
	}
	if (strchr(name, '.') == NULL && jns != NULL) {
		ns = jname(jns);
		if (ns == NULL || !codec_dotted_name_ok(ns, true)) {
			errstr_set(px->errstr, px->errstr_size, "%s %.64s has an invalid namespace",
			           type_names[t], name);
			return NULL;
		}
	}
	n = new_node(px, t);
	if (n == NULL)
		return NULL;
	n->full = full_name(name, ns);
	if (n->full == NULL) {
		nomem(px);
		return NULL;
	}
	/* A type is known by its name once defined, before its fields are
	 * read, so that a record may refer to itself. Defined twice is an
	 * error: the reference would be ambiguous. */
	for (size_t i = 0; i + 1 < px->s->n; i++) {
		if (px->s->nodes[i]->full != NULL && strcmp(px->s->nodes[i]->full, n->full) == 0) {
			errstr_set(px->errstr, px->errstr_size, "type %.64s is defined twice",
			           n->full);
			return NULL;
		}
	}
	const char *dot = strrchr(n->full, '.');
	n->simple = dot ? dot + 1 : n->full;
	own_ns = dot ? strndup(n->full, (size_t)(dot - n->full)) : strdup("");
	if (own_ns == NULL) {
		nomem(px);
		return NULL;
	}
	int rc = parse_aliases(px, j, own_ns, true, &n->aliases, &n->nalias);
	if (rc == 0) {
		if (t == T_RECORD) {
			rc = parse_record(px, n, j, own_ns, depth);
		} else if (t == T_ENUM) {
			rc = parse_enum(px, n, j);
		} else {
			json_t *size = json_object_get(j, "size");
			if (!json_is_integer(size) || json_integer_value(size) < 0 ||
			    json_integer_value(size) > MAX_FIXED_SIZE) {
				errstr_set(px->errstr, px->errstr_size,
				           "fixed %.64s without a valid size", n->full);
				rc = -1;
			} else {
				n->size = (size_t)json_integer_value(size);
			}
		}
	}
	free(own_ns);
	return rc == 0 ? n : NULL;
}

static bool same_branch_kind(const rnode *a, const rnode *b)
{
	if (a->t != b->t)
		return false;
	if (a->full != NULL)
		return strcmp(a->full, b->full) == 0;
	return true;
}

static rnode *parse_union(pctx *px, json_t *j, const char *ns, int depth)
{
	size_t nb = json_array_size(j);
	if (nb == 0) {
		errstr_set(px->errstr, px->errstr_size, "a union without branches");
		return NULL;
	}
	rnode *n = new_node(px, T_UNION);
	if (n == NULL)
		return NULL;
	n->branches = calloc(nb, sizeof *n->branches);
	if (n->branches == NULL) {
		nomem(px);
		return NULL;
	}
	for (size_t i = 0; i < nb; i++) {
		rnode *b = parse_node(px, json_array_get(j, i), ns, depth + 1);
		if (b == NULL)
			return NULL;
		if (b->t == T_UNION) {
			errstr_set(px->errstr, px->errstr_size, "a union holds a union");
			return NULL;
		}
		for (size_t k = 0; k < i; k++) {
			if (same_branch_kind(n->branches[k], b)) {
				errstr_set(px->errstr, px->errstr_size,
				           "a union holds the type %s twice",
				           b->full ? b->full : type_names[b->t]);
				return NULL;
			}
		}
		n->branches[i] = b;
		n->nbranch = i + 1;
	}
	return n;
}

static rnode *parse_node(pctx *px, json_t *j, const char *ns, int depth)
{
	if (depth > RESOLVE_MAX_DEPTH) {
		errstr_set(px->errstr, px->errstr_size, "schema nested deeper than %d",
		           RESOLVE_MAX_DEPTH);
		return NULL;
	}
	if (json_is_string(j))
		return reference(px, jname(j), ns);
	if (json_is_array(j))
		return parse_union(px, j, ns, depth);
	if (!json_is_object(j)) {
		errstr_set(px->errstr, px->errstr_size,
		           "a schema is a string, an array or an object");
		return NULL;
	}
	const char *type = jname(json_object_get(j, "type"));
	rtype t;
	if (type == NULL) {
		errstr_set(px->errstr, px->errstr_size, "schema object without a type name");
		return NULL;
	}
	if (primitive_of(type, &t) == 0)
		return new_node(px, t); /* logicalType and the like change nothing here */
	if (strcmp(type, "record") == 0 || strcmp(type, "error") == 0)
		return parse_named(px, j, T_RECORD, ns, depth);
	if (strcmp(type, "enum") == 0)
		return parse_named(px, j, T_ENUM, ns, depth);
	if (strcmp(type, "fixed") == 0)
		return parse_named(px, j, T_FIXED, ns, depth);
	if (strcmp(type, "array") == 0 || strcmp(type, "map") == 0) {
		bool array = type[0] == 'a';
		json_t *inner = json_object_get(j, array ? "items" : "values");
		if (inner == NULL) {
			errstr_set(px->errstr, px->errstr_size, "%s without %s", type,
			           array ? "items" : "values");
			return NULL;
		}
		rnode *n = new_node(px, array ? T_ARRAY : T_MAP);
		if (n == NULL)
			return NULL;
		n->items = parse_node(px, inner, ns, depth + 1);
		return n->items ? n : NULL;
	}
	return reference(px, type, ns);
}

/* The fewest bytes a value takes; a type being computed (a recursive one)
 * counts 0, which only loosens the bound it serves. */
static size_t min_size(rnode *n)
{
	if (n->min_state == 2)
		return n->min_size;
	if (n->min_state == 1)
		return 0;
	n->min_state = 1;
	size_t m;
	switch (n->t) {
	case T_NULL:
		m = 0;
		break;
	case T_FLOAT:
		m = 4;
		break;
	case T_DOUBLE:
		m = 8;
		break;
	case T_FIXED:
		m = n->size;
		break;
	case T_RECORD:
		m = 0;
		for (size_t i = 0; i < n->nfields; i++) {
			size_t f = min_size(n->fields[i].type);
			m = f > SIZE_MAX - m ? SIZE_MAX : m + f;
		}
		break;
	default:
		m = 1; /* a varint, a length, a count or an index */
	}
	n->min_size = m;
	n->min_state = 2;
	return m;
}

/* ---- JSON syntax, without allocating ----
 *
 * jansson reports an allocation that fails while it parses as a syntax
 * error, or says nothing. Whether the text's syntax is sound, asked of this
 * checker, which allocates nothing, tells the two apart: out of memory is
 * no verdict on a schema, and a registry's schema refused for it would be
 * refused for good. */

static const char *ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static const char *syn_value(const char *p, const char *end, int depth);

static const char *syn_string(const char *p, const char *end)
{
	if (p >= end || *p != '"')
		return NULL;
	for (p++; p < end; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"')
			return p + 1;
		if (c < 0x20)
			return NULL;
		if (c == '\\') {
			if (++p >= end)
				return NULL;
			if (*p == 'u') {
				for (int i = 0; i < 4; i++) {
					if (++p >= end ||
					    !((*p >= '0' && *p <= '9') ||
					      (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
						return NULL;
				}
			} else if (strchr("\"\\/bfnrt", *p) == NULL || *p == '\0') {
				return NULL;
			}
		}
	}
	return NULL;
}

static const char *syn_digits(const char *p, const char *end)
{
	const char *s = p;
	while (p < end && *p >= '0' && *p <= '9')
		p++;
	return p > s ? p : NULL;
}

static const char *syn_number(const char *p, const char *end)
{
	if (p < end && *p == '-')
		p++;
	if (p < end && *p == '0')
		p++;
	else if ((p = syn_digits(p, end)) == NULL)
		return NULL;
	if (p < end && *p == '.' && (p = syn_digits(p + 1, end)) == NULL)
		return NULL;
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		p = syn_digits(p, end);
	}
	return p;
}

static const char *syn_list(const char *p, const char *end, int depth, bool object)
{
	char close = object ? '}' : ']';
	p = ws(p + 1, end);
	if (p < end && *p == close)
		return p + 1;
	for (;;) {
		if (object) {
			if ((p = syn_string(p, end)) == NULL)
				return NULL;
			p = ws(p, end);
			if (p >= end || *p != ':')
				return NULL;
			p = ws(p + 1, end);
		}
		if ((p = syn_value(p, end, depth + 1)) == NULL)
			return NULL;
		p = ws(p, end);
		if (p < end && *p == close)
			return p + 1;
		if (p >= end || *p != ',')
			return NULL;
		p = ws(p + 1, end);
	}
}

static const char *syn_value(const char *p, const char *end, int depth)
{
	if (depth > 2048 || p >= end) /* jansson's own nesting limit */
		return NULL;
	switch (*p) {
	case '{':
	case '[':
		return syn_list(p, end, depth, *p == '{');
	case '"':
		return syn_string(p, end);
	case 't':
		return end - p >= 4 && memcmp(p, "true", 4) == 0 ? p + 4 : NULL;
	case 'f':
		return end - p >= 5 && memcmp(p, "false", 5) == 0 ? p + 5 : NULL;
	case 'n':
		return end - p >= 4 && memcmp(p, "null", 4) == 0 ? p + 4 : NULL;
	default:
		return syn_number(p, end);
	}
}

static bool json_syntax_ok(const char *json, size_t len)
{
	const char *end = json + len, *p = syn_value(ws(json, end), end, 0);
	return p != NULL && ws(p, end) == end;
}

resolve_schema *resolve_schema_parse(const char *json, size_t len, int *nomem_out, char *errstr,
                                     size_t errstr_size)
{
	json_error_t jerr;
	resolve_schema *s;
	pctx px = {.errstr = errstr, .errstr_size = errstr_size};

	if (nomem_out != NULL)
		*nomem_out = 0;
	if (json == NULL || len > RESOLVE_MAX_SCHEMA_BYTES) {
		errstr_set(errstr, errstr_size, "the schema is empty or over %d bytes",
		           RESOLVE_MAX_SCHEMA_BYTES);
		return NULL;
	}
	s = calloc(1, sizeof *s);
	if (s == NULL) {
		errstr_set(errstr, errstr_size, "out of memory");
		if (nomem_out != NULL)
			*nomem_out = 1;
		return NULL;
	}
	px.s = s;
	/* jansson leaves the error untouched when its first allocation fails */
	memset(&jerr, 0, sizeof jerr);
	/* jansson's own nesting limit (2048) is above ours, which
	 * parse_node enforces. */
	s->root =
	    json_loadb(json, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (s->root == NULL) {
		enum json_error_code code = json_error_code(&jerr);
		if (code == json_error_out_of_memory ||
		    ((code == json_error_invalid_syntax || jerr.text[0] == '\0') &&
		     json_syntax_ok(json, len)))
			nomem(&px);
		else
			errstr_set(errstr, errstr_size, "the schema is not JSON: %s", jerr.text);
		goto fail;
	}
	/* jansson 2.14 drops a byte of a string when its buffer cannot grow,
	 * and parses on (seen by test_oom): a second parse that differs from
	 * the first is memory running out, not the schema. */
	json_t *again =
	    json_loadb(json, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	bool same = again != NULL && json_equal(s->root, again);
	json_decref(again);
	if (!same) {
		nomem(&px);
		goto fail;
	}
	s->top = parse_node(&px, s->root, NULL, 0);
	if (s->top == NULL)
		goto fail;
	for (size_t i = 0; i < s->n; i++)
		(void)min_size(s->nodes[i]);
	return s;
fail:
	if (px.nomem && nomem_out != NULL)
		*nomem_out = 1;
	resolve_schema_destroy(s);
	return NULL;
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

void resolve_schema_destroy(resolve_schema *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++) {
		rnode *n = s->nodes[i];
		free(n->full);
		free_names(n->aliases, n->nalias);
		for (size_t k = 0; k < n->nfields; k++) {
			free(n->fields[k].name);
			free_names(n->fields[k].aliases, n->fields[k].nalias);
		}
		free(n->fields);
		free_names(n->symbols, n->nsym);
		free(n->branches);
		free(n);
	}
	free(s->nodes);
	json_decref(s->root);
	free(s);
}

const char *resolve_schema_record_name(const resolve_schema *s)
{
	return s->top->t == T_RECORD ? s->top->full : NULL;
}

int resolve_schema_leading_strings(const resolve_schema *s, const char *first, const char *second)
{
	const rnode *r = s->top;
	return r->t == T_RECORD && r->nfields >= 2 && strcmp(r->fields[0].name, first) == 0 &&
	       strcmp(r->fields[1].name, second) == 0 && r->fields[0].type->t == T_STRING &&
	       r->fields[1].type->t == T_STRING;
}

/* ---- Output buffer ---- */

typedef struct {
	unsigned char *buf;
	size_t len, cap, max;
	bool nomem, over;
} obuf;

static int ob_add(obuf *b, const void *p, size_t n)
{
	if (b->nomem || b->over)
		return -1;
	if (n > b->max - b->len) {
		b->over = true;
		return -1;
	}
	if (n > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 256;
		while (n > cap - b->len)
			cap = cap > b->max / 2 ? b->max : cap * 2;
		unsigned char *nb = realloc(b->buf, cap);
		if (nb == NULL) {
			b->nomem = true;
			return -1;
		}
		b->buf = nb;
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->buf + b->len, p, n);
	b->len += n;
	return 0;
}

static int ob_long(obuf *b, int64_t v)
{
	unsigned char tmp[10];
	size_t n = 0;
	uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
	do {
		unsigned char c = z & 0x7F;
		z >>= 7;
		tmp[n++] = (unsigned char)(c | (z ? 0x80 : 0));
	} while (z);
	return ob_add(b, tmp, n);
}

static int ob_float(obuf *b, float f)
{
	uint32_t u;
	unsigned char tmp[4];
	memcpy(&u, &f, 4);
	for (int i = 0; i < 4; i++)
		tmp[i] = (unsigned char)(u >> (8 * i));
	return ob_add(b, tmp, 4);
}

static int ob_double(obuf *b, double d)
{
	uint64_t u;
	unsigned char tmp[8];
	memcpy(&u, &d, 8);
	for (int i = 0; i < 8; i++)
		tmp[i] = (unsigned char)(u >> (8 * i));
	return ob_add(b, tmp, 8);
}

/* ---- Defaults: JSON to the reader's binary encoding ---- */

/* A bytes or fixed default is a JSON string whose code points 0-255 are the
 * bytes. */
static int default_bytes(obuf *b, const char *s, size_t n, bool prefix, size_t fixed)
{
	size_t count = 0, i = 0;
	unsigned char *raw = malloc(n + 1);
	int rc = -1;
	if (raw == NULL) {
		b->nomem = true;
		return -1;
	}
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x80) {
			raw[count++] = c;
			i++;
		} else if ((c == 0xC2 || c == 0xC3) && i + 1 < n) {
			raw[count++] = (unsigned char)(((c & 0x1F) << 6) | (s[i + 1] & 0x3F));
			i += 2;
		} else {
			goto done; /* a code point above 255 */
		}
	}
	if (!prefix && count != fixed)
		goto done;
	if ((prefix && ob_long(b, (int64_t)count) != 0) || ob_add(b, raw, count) != 0)
		goto done;
	rc = 0;
done:
	free(raw);
	return rc;
}

static int encode_default(obuf *b, const rnode *n, json_t *v, int depth)
{
	if (depth > RESOLVE_MAX_DEPTH)
		return -1;
	switch (n->t) {
	case T_NULL:
		return json_is_null(v) ? 0 : -1;
	case T_BOOLEAN:
		if (!json_is_boolean(v))
			return -1;
		return ob_add(b, json_is_true(v) ? "\1" : "\0", 1);
	case T_INT:
		if (!json_is_integer(v) || json_integer_value(v) < INT32_MIN ||
		    json_integer_value(v) > INT32_MAX)
			return -1;
		return ob_long(b, json_integer_value(v));
	case T_LONG:
		if (!json_is_integer(v))
			return -1;
		return ob_long(b, json_integer_value(v));
	case T_FLOAT:
		if (!json_is_number(v))
			return -1;
		return ob_float(b, (float)json_number_value(v));
	case T_DOUBLE:
		if (!json_is_number(v))
			return -1;
		return ob_double(b, json_number_value(v));
	case T_BYTES:
	case T_FIXED:
		if (!json_is_string(v))
			return -1;
		return default_bytes(b, json_string_value(v), json_string_length(v),
		                     n->t == T_BYTES, n->size);
	case T_STRING:
		if (!json_is_string(v) || ob_long(b, (int64_t)json_string_length(v)) != 0)
			return -1;
		return ob_add(b, json_string_value(v), json_string_length(v));
	case T_ENUM: {
		const char *sym = json_string_value(v);
		for (size_t i = 0; sym != NULL && i < n->nsym; i++) {
			if (strcmp(n->symbols[i], sym) == 0)
				return ob_long(b, (int64_t)i);
		}
		return -1;
	}
	case T_ARRAY: {
		if (!json_is_array(v))
			return -1;
		size_t cnt = json_array_size(v);
		if (cnt > 0 && ob_long(b, (int64_t)cnt) != 0)
			return -1;
		for (size_t i = 0; i < cnt; i++) {
			if (encode_default(b, n->items, json_array_get(v, i), depth + 1) != 0)
				return -1;
		}
		return ob_long(b, 0);
	}
	case T_MAP: {
		const char *key;
		json_t *item;
		if (!json_is_object(v))
			return -1;
		if (json_object_size(v) > 0 && ob_long(b, (int64_t)json_object_size(v)) != 0)
			return -1;
		json_object_foreach(v, key, item)
		{
			size_t kl = strlen(key);
			if (ob_long(b, (int64_t)kl) != 0 || ob_add(b, key, kl) != 0 ||
			    encode_default(b, n->items, item, depth + 1) != 0)
				return -1;
		}
		return ob_long(b, 0);
	}
	case T_RECORD:
		if (!json_is_object(v))
			return -1;
		for (size_t i = 0; i < n->nfields; i++) {
			json_t *fv = json_object_get(v, n->fields[i].name);
			if (fv == NULL)
				fv = n->fields[i].def;
			if (fv == NULL || encode_default(b, n->fields[i].type, fv, depth + 1) != 0)
				return -1;
		}
		return 0;
	case T_UNION:
		/* The specification (1.11) takes the first branch; later ones
		 * allow any: the first branch the value fits. */
		for (size_t i = 0; i < n->nbranch; i++) {
			size_t mark = b->len;
			if (ob_long(b, (int64_t)i) == 0 &&
			    encode_default(b, n->branches[i], v, depth + 1) == 0)
				return 0;
			if (b->nomem || b->over)
				return -1;
			b->len = mark;
		}
		return -1;
	}
	return -1;
}

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

static bool fail_check(check_ctx *cx, const char *fmt, ...) PRINTF_LIKE(2, 3);

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
		obuf probe = {.max = RESOLVE_MAX_SCHEMA_BYTES};
		int rc = encode_default(&probe, rf->type, rf->def, 0);
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
			                  w->full ? w->full : type_names[w->t]);
		return can_resolve(cx, w, r->branches[b], depth + 1);
	}
	if (w->t <= T_STRING || r->t <= T_STRING) {
		if (w->t <= T_STRING && r->t <= T_STRING && promotable(w->t, r->t))
			return true;
		return fail_check(cx, "the writer's %s cannot be read as %s", type_names[w->t],
		                  type_names[r->t]);
	}
	if (w->t != r->t)
		return fail_check(cx, "the writer's %s cannot be read as %s", type_names[w->t],
		                  type_names[r->t]);
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
	if (cx->n >= MAX_PLANS) {
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
		obuf b = {.max = RESOLVE_MAX_SCHEMA_BYTES};
		if (encode_default(&b, r->fields[i].type, r->fields[i].def, 0) != 0) {
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
	if (bx->rp->n >= MAX_PLANS) {
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

/* ---- Running a plan ---- */

typedef struct {
	const unsigned char *p;
	size_t len, pos, mark, base;
	const resolve_limits *lim;
	obuf out;
	codec_status status;
	char *errstr;
	size_t errstr_size;
} run_ctx;

static int run_fail(run_ctx *x, codec_status st, const char *field, const char *fmt, ...)
    PRINTF_LIKE(4, 5);

static int run_fail(run_ctx *x, codec_status st, const char *field, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	x->status = st;
	errstr_set(x->errstr, x->errstr_size, "field %s, byte %zu: %s", field ? field : "(datum)",
	           x->mark + x->base, msg);
	return -1;
}

/* Output trouble, said once. */
static int out_fail(run_ctx *x, const char *field)
{
	if (x->out.nomem)
		return run_fail(x, CODEC_ERR_NOMEM, field, "out of memory");
	return run_fail(x, CODEC_ERR_LIMIT, field, "the resolved value is over %zu bytes",
	                x->out.max);
}

static int put(run_ctx *x, const char *field, const void *p, size_t n)
{
	return ob_add(&x->out, p, n) == 0 ? 0 : out_fail(x, field);
}

static int put_long(run_ctx *x, const char *field, int64_t v)
{
	return ob_long(&x->out, v) == 0 ? 0 : out_fail(x, field);
}

static int get_varint(run_ctx *x, const char *field, int max_bytes, int bits, int64_t *out)
{
	uint64_t acc = 0;
	x->mark = x->pos;
	for (int i = 0; i < max_bytes; i++) {
		if (x->pos >= x->len)
			return run_fail(x, CODEC_ERR_DATUM, field,
			                "the value ends inside a number");
		unsigned b = x->p[x->pos++];
		if (i == max_bytes - 1 && (b >> (bits - 7 * i)) != 0)
			return run_fail(x, CODEC_ERR_DATUM, field,
			                "a number is longer than %d bytes or overflows", max_bytes);
		acc |= (uint64_t)(b & 0x7F) << (7 * i);
		if ((b & 0x80) == 0)
			break;
	}
	uint64_t mag = acc >> 1;
	*out = (acc & 1) ? -(int64_t)mag - 1 : (int64_t)mag;
	return 0;
}

static int get_long(run_ctx *x, const char *field, int64_t *v)
{
	return get_varint(x, field, 10, 64, v);
}

static int get_int(run_ctx *x, const char *field, int64_t *v)
{
	return get_varint(x, field, 5, 32, v);
}

static int get_fixed(run_ctx *x, const char *field, size_t n, const unsigned char **s)
{
	x->mark = x->pos;
	if (n > x->len - x->pos)
		return run_fail(x, CODEC_ERR_DATUM, field, "the value ends inside a %zu-byte item",
		                n);
	*s = x->p + x->pos;
	x->pos += n;
	return 0;
}

/* A length-prefixed string or bytes; a string's bytes are UTF-8. */
static int get_bytes(run_ctx *x, const char *field, bool is_string, const unsigned char **s,
                     size_t *n)
{
	int64_t len;
	size_t start = x->pos, at;

	if (get_long(x, field, &len) != 0)
		return -1;
	x->mark = start;
	if (len < 0)
		return run_fail(x, CODEC_ERR_DATUM, field, "negative length %lld", (long long)len);
	if ((uint64_t)len > x->len - x->pos)
		return run_fail(x, CODEC_ERR_DATUM, field,
		                "length %lld is more than the %zu bytes left", (long long)len,
		                x->len - x->pos);
	if ((uint64_t)len > x->lim->max_string_bytes)
		return run_fail(x, CODEC_ERR_LIMIT, field,
		                "length %lld is over the limit of %zu bytes", (long long)len,
		                x->lim->max_string_bytes);
	/* NUL is valid UTF-8 and valid Avro: refusing it is the reader's
	 * decoder's business, not the resolution's. */
	for (size_t from = 0; is_string && from < (size_t)len; from += at + 1) {
		utf8_verdict v = utf8_check(x->p + x->pos + from, (size_t)len - from, &at);
		if (v == UTF8_OK)
			break;
		if (v == UTF8_BAD)
			return run_fail(x, CODEC_ERR_DATUM, field,
			                "invalid UTF-8 at offset %zu of a string", from + at);
	}
	*s = x->p + x->pos;
	*n = (size_t)len;
	x->pos += (size_t)len;
	return 0;
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
		int64_t count, bytes = -1;
		size_t block_mark = x->pos, block_start;
		if (get_long(x, field, &count) != 0)
			return -1;
		if (count == 0)
			break;
		if (count < 0) {
			if (count == INT64_MIN)
				return run_fail(x, CODEC_ERR_DATUM, field,
				                "block count out of range");
			count = -count;
			if (get_long(x, field, &bytes) != 0)
				return -1;
			if (bytes < 0 || (uint64_t)bytes > x->len - x->pos)
				return run_fail(
				    x, CODEC_ERR_DATUM, field,
				    "block byte size %lld is not within the %zu bytes left",
				    (long long)bytes, x->len - x->pos);
		}
		x->mark = block_mark;
		/* A count the bytes left cannot hold is refused before any
		 * loop; items that take no bytes are bounded by max_items. */
		uint64_t room = item_min > 0 ? (x->len - x->pos) / item_min : x->lim->max_items;
		if ((uint64_t)count > room || (uint64_t)count > x->lim->max_items - total)
			return run_fail(x, CODEC_ERR_DATUM, field,
			                "a block of %lld items cannot fit in the %zu bytes left",
			                (long long)count, x->len - x->pos);
		if (p != NULL && put_long(x, field, count) != 0)
			return -1;
		block_start = x->pos;
		for (int64_t i = 0; i < count; i++) {
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
		if (bytes >= 0 && x->pos - block_start != (uint64_t)bytes) {
			x->mark = block_mark;
			return run_fail(x, CODEC_ERR_DATUM, field,
			                "a block announced %lld bytes but its items take %zu",
			                (long long)bytes, x->pos - block_start);
		}
		total += (size_t)count;
	}
	return p != NULL ? put_long(x, field, 0) : 0;
}

/* Read a value of the writer's type w, checked, and write nothing. */
static int skip_node(run_ctx *x, const rnode *w, const char *field, int depth)
{
	int64_t v;
	const unsigned char *s = NULL;
	size_t n;

	x->mark = x->pos;
	if (depth > RESOLVE_MAX_DEPTH)
		return run_fail(x, CODEC_ERR_LIMIT, field, "data nested deeper than %d",
		                RESOLVE_MAX_DEPTH);
	switch (w->t) {
	case T_NULL:
		return 0;
	case T_BOOLEAN:
		if (get_fixed(x, field, 1, &s) != 0)
			return -1;
		if (*s > 1)
			return run_fail(x, CODEC_ERR_DATUM, field, "a boolean is not 0 or 1");
		return 0;
	case T_INT:
		return get_int(x, field, &v);
	case T_LONG:
		return get_long(x, field, &v);
	case T_FLOAT:
		return get_fixed(x, field, 4, &s);
	case T_DOUBLE:
		return get_fixed(x, field, 8, &s);
	case T_FIXED:
		return get_fixed(x, field, w->size, &s);
	case T_BYTES:
		return get_bytes(x, field, false, &s, &n);
	case T_STRING:
		return get_bytes(x, field, true, &s, &n);
	case T_ENUM:
		if (get_int(x, field, &v) != 0)
			return -1;
		if (v < 0 || (uint64_t)v >= w->nsym)
			return run_fail(x, CODEC_ERR_DATUM, field,
			                "enum index %lld is not one of the %zu symbols",
			                (long long)v, w->nsym);
		return 0;
	case T_UNION:
		if (get_long(x, field, &v) != 0)
			return -1;
		if (v < 0 || (uint64_t)v >= w->nbranch)
			return run_fail(x, CODEC_ERR_DATUM, field,
			                "union branch %lld is not one of the %zu branches",
			                (long long)v, w->nbranch);
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
	return run_fail(x, CODEC_ERR_DATUM, field, "unsupported type");
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
			return run_fail(x, CODEC_ERR_NOMEM, p->r->full, "out of memory");
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
			run_fail(x, CODEC_ERR_NOMEM, p->r->full, "out of memory");
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

	x->mark = x->pos;
	if (depth > RESOLVE_MAX_DEPTH)
		return run_fail(x, CODEC_ERR_LIMIT, field, "data nested deeper than %d",
		                RESOLVE_MAX_DEPTH);
	switch (p->op) {
	case OP_NULL:
		return 0;
	case OP_BOOLEAN:
		if (skip_node(x, p->w, field, depth) != 0)
			return -1;
		return put(x, field, x->p + x->pos - 1, 1);
	case OP_INT:
	case OP_LONG:
	case OP_FLOAT:
	case OP_DOUBLE:
	case OP_FIXED:
	case OP_BYTES:
	case OP_STRING: {
		/* Same type: the writer's bytes are the reader's, once checked. */
		size_t from = x->pos;
		if (skip_node(x, p->w, field, depth) != 0)
			return -1;
		return put(x, field, x->p + from, x->pos - from);
	}
	case OP_INT_TO_LONG:
		if (get_int(x, field, &v) != 0)
			return -1;
		return put_long(x, field, v);
	case OP_INT_TO_FLOAT:
	case OP_LONG_TO_FLOAT:
		if ((p->op == OP_INT_TO_FLOAT ? get_int(x, field, &v) : get_long(x, field, &v)) !=
		    0)
			return -1;
		return ob_float(&x->out, (float)v) == 0 ? 0 : out_fail(x, field);
	case OP_INT_TO_DOUBLE:
	case OP_LONG_TO_DOUBLE:
		if ((p->op == OP_INT_TO_DOUBLE ? get_int(x, field, &v) : get_long(x, field, &v)) !=
		    0)
			return -1;
		return ob_double(&x->out, (double)v) == 0 ? 0 : out_fail(x, field);
	case OP_FLOAT_TO_DOUBLE: {
		float f;
		uint32_t u = 0;
		if (get_fixed(x, field, 4, &s) != 0)
			return -1;
		for (int i = 0; i < 4; i++)
			u |= (uint32_t)s[i] << (8 * i);
		memcpy(&f, &u, 4);
		return ob_double(&x->out, (double)f) == 0 ? 0 : out_fail(x, field);
	}
	case OP_STRING_TO_BYTES:
	case OP_BYTES_TO_STRING: {
		/* The same encoding; a string made of bytes must be UTF-8. */
		size_t from = x->pos;
		if (get_bytes(x, field, p->op == OP_BYTES_TO_STRING, &s, &n) != 0)
			return -1;
		return put(x, field, x->p + from, x->pos - from);
	}
	case OP_ENUM:
		if (get_int(x, field, &v) != 0)
			return -1;
		if (v < 0 || (uint64_t)v >= p->w->nsym)
			return run_fail(x, CODEC_ERR_DATUM, field,
			                "enum index %lld is not one of the %zu symbols",
			                (long long)v, p->w->nsym);
		if (p->symmap[v] < 0)
			return run_fail(x, CODEC_ERR_RESOLVE, field,
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
		if (get_long(x, field, &v) != 0)
			return -1;
		if (v < 0 || (uint64_t)v >= p->w->nbranch)
			return run_fail(x, CODEC_ERR_DATUM, field,
			                "union branch %lld is not one of the %zu branches",
			                (long long)v, p->w->nbranch);
		if (p->branches[v] == NULL)
			return run_fail(x, CODEC_ERR_RESOLVE, field,
			                "the writer's union branch %lld (%.64s) cannot be read as "
			                "the reader's type",
			                (long long)v,
			                p->w->branches[v]->full ? p->w->branches[v]->full
			                                        : type_names[p->w->branches[v]->t]);
		return run_node(x, p->branches[v], field, depth + 1);
	}
	return run_fail(x, CODEC_ERR_DATUM, field, "unsupported plan");
}

codec_status resolve_datum(const resolve_plan *rp, const resolve_limits *lim, const void *datum,
                           size_t len, size_t base_offset, unsigned char **out, size_t *out_len,
                           char *errstr, size_t errstr_size)
{
	run_ctx x = {.p = datum,
	             .len = len,
	             .base = base_offset,
	             .lim = lim,
	             .out = {.max = lim->max_out_bytes},
	             .errstr = errstr,
	             .errstr_size = errstr_size};

	*out = NULL;
	*out_len = 0;
	if (run_node(&x, rp->top, NULL, 0) != 0) {
		free(x.out.buf);
		return x.status;
	}
	if (x.pos != x.len) {
		free(x.out.buf);
		errstr_set(errstr, errstr_size, "%zu trailing bytes after the datum",
		           x.len - x.pos);
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
