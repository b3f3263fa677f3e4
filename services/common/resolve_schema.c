/*
 * resolve_schema: a schema given as JSON (ours, or a registry's answer, so
 * hostile) parsed into a graph of nodes, named types shared by reference.
 * Everything is checked on the way: the text's size, the nesting, the node
 * count, names, namespaces and aliases by the Avro rules, a name defined
 * twice, a symbol or field twice, a union holding a union or a type twice.
 * Out of memory is told apart from a bad schema, since only the latter is a
 * verdict on the schema.
 */
#include "resolve.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "errstr.h"
#include "resolve_int.h"

const char *const resolve_type_names[] = {"null",   "boolean", "int",    "long",   "float",
                                          "double", "bytes",   "string", "record", "enum",
                                          "array",  "map",     "union",  "fixed"};

typedef struct {
	resolve_schema *s;
	bool nomem;
	char *errstr;
	size_t errstr_size;
} pctx;

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
		if (strcmp(name, resolve_type_names[i]) == 0) {
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
		char *full = codec_full_name(name, ns);
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
		(*out)[i] = full_names ? codec_full_name(n, ns) : strdup(n);
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
		errstr_set(px->errstr, px->errstr_size, "%s without a valid name",
		           resolve_type_names[t]);
		return NULL;
	}
	if (strchr(name, '.') == NULL && jns != NULL) {
		ns = jname(jns);
		if (ns == NULL || !codec_dotted_name_ok(ns, true)) {
			errstr_set(px->errstr, px->errstr_size, "%s %.64s has an invalid namespace",
			           resolve_type_names[t], name);
			return NULL;
		}
	}
	n = new_node(px, t);
	if (n == NULL)
		return NULL;
	n->full = codec_full_name(name, ns);
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
			    json_integer_value(size) > RESOLVE_MAX_FIXED_SIZE) {
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
				           b->full ? b->full : resolve_type_names[b->t]);
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
		     resolve_json_syntax_ok(json, len)))
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
