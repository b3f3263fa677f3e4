/*
 * valctl diff: two recordings of Results (valctl record of a results topic)
 * compared Result by Result, to see what a new KM-S build or a staging stack
 * answers differently from the one before.
 *
 * Results are paired by requestId; a requestId answered several times (a
 * repeat, a conflict) is paired occurrence by occurrence in file order,
 * which is the order of its partition. A Result is compared as its record
 * key, every field of the Avro Result and every header (a header sent
 * several times as the list of its values), plus, on request, its
 * partition; the record's coordinates and timestamp are where it was read,
 * not what was answered, and are never compared. What differs from one run
 * to the next by design is left out: processedAt, kmsId, ce_time and
 * ce_source (the kmsId), ce_id when asked (a digest of the Result's bytes,
 * processedAt included), and whatever --ignore names.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "codec.h"
#include "commands.h"
#include "recording.h"
#include "utf8.h"
#include "util.h"

static const char diff_help[] =
    "Usage: valctl diff [OPTIONS] A.jsonl B.jsonl\n"
    "\n"
    "Compare two recordings of Results (valctl record of a results topic) by\n"
    "requestId: print the Results found on one side only and, field by field,\n"
    "the Results that differ (a table, or --json). Compared: the record key,\n"
    "each field of the Result and each header. Ignored: processedAt, kmsId,\n"
    "ce_time, ce_source (and ce_id with --ignore-ce-id). A requestId answered\n"
    "more than once is paired occurrence by occurrence, in file order.\n"
    "Exit codes: 0 equal, 1 different, 2 misuse or a line that is not a\n"
    "recorded Result, 4 a file that cannot be read.\n"
    "\n"
    "  --json                one JSON document instead of the table\n"
    "  --ignore-ce-id        ignore the ce_id header too\n"
    "  --ignore NAME         ignore this field or header too (repeatable)\n"
    "  --partition           compare the partition each Result was on, too\n"
    "  -h, --help            this help\n";

enum { OPT_JSON = 256, OPT_IGNORE_CE_ID, OPT_IGNORE, OPT_PARTITION };

static const char *const default_ignored[] = {"processedAt", "kmsId", "ce_time", "ce_source"};

typedef struct {
	char *id;          /* requestId */
	size_t occurrence; /* 1 for the first Result of the id in the file */
	size_t line_no;
	json_t *fields; /* name -> value, in the Result's order */
} result_entry;

typedef struct {
	const char *path;
	result_entry *items;
	size_t count, cap;
} recording;

typedef struct {
	const char **ignored;
	size_t ignored_count;
	int partition;
	int json; /* --json: the report as JSON */
} diff_opts;

static int is_ignored(const diff_opts *o, const char *name)
{
	size_t i;

	for (i = 0; i < o->ignored_count; i++) {
		if (strcmp(o->ignored[i], name) == 0)
			return 1;
	}
	return 0;
}

/* Bytes as text when they are UTF-8 without NUL, else {"base64": ...}. */
static json_t *bytes_value(const unsigned char *p, size_t len, int is_null)
{
	char *b64;
	json_t *j;

	if (is_null)
		return json_null();
	if (utf8_check(p, len, NULL) == UTF8_OK)
		return json_stringn((const char *)p, len);
	b64 = valctl_base64_encode(p, len);
	if (b64 == NULL)
		return NULL;
	j = json_pack("{s:s}", "base64", b64);
	free(b64);
	return j;
}

/* Set name to v (stolen) unless it is ignored; 0 or -1. */
static int put(const diff_opts *o, json_t *fields, const char *name, json_t *v)
{
	if (v == NULL)
		return -1;
	if (is_ignored(o, name)) {
		json_decref(v);
		return 0;
	}
	return json_object_set_new(fields, name, v);
}

/* The fields of one recorded Result; NULL with errstr filled. */
static json_t *result_fields(const diff_opts *o, const valctl_recline *l,
                             const codec_response_owned *r)
{
	json_t *f = json_object(), *prev, *list;
	size_t i;
	int bad = 0;

	if (f == NULL)
		return NULL;
	bad |= put(o, f, "key", bytes_value(l->key, l->key_len, l->key_null));
	bad |= put(o, f, "requestId", json_string(r->request_id));
	bad |= put(o, f, "requesterIdentity", json_string(r->requester_identity));
	bad |= put(o, f, "result", json_string(codec_result_name(r->result)));
	bad |= put(o, f, "cause",
	           r->cause == CODEC_CAUSE_NONE ? json_null()
	                                        : json_string(codec_cause_name(r->cause)));
	bad |= put(o, f, "detail", r->detail != NULL ? json_string(r->detail) : json_null());
	bad |= put(o, f, "kmsId", json_string(r->kms_id));
	bad |= put(o, f, "processedAt", json_integer((json_int_t)r->processed_at));
	if (o->partition)
		bad |= put(o, f, "partition", json_integer(l->partition));
	for (i = 0; i < l->header_count && !bad; i++) {
		const valctl_recheader *h = &l->headers[i];
		json_t *v;

		if (is_ignored(o, h->name))
			continue;
		v = bytes_value(h->value, h->len, h->is_null);
		if (v == NULL) {
			bad = 1;
			break;
		}
		prev = json_object_get(f, h->name);
		if (prev == NULL) {
			bad |= json_object_set_new(f, h->name, v);
		} else if (json_is_array(prev)) {
			bad |= json_array_append_new(prev, v);
		} else {
			/* A header sent twice: the list of its values. */
			list = json_pack("[O, o]", prev, v);
			bad |= list == NULL || json_object_set_new(f, h->name, list) != 0;
		}
	}
	if (bad) {
		json_decref(f);
		return NULL;
	}
	return f;
}

static int entry_cmp(const void *a, const void *b)
{
	const result_entry *x = a, *y = b;
	int c = strcmp(x->id, y->id);

	if (c != 0)
		return c;
	return x->line_no < y->line_no ? -1 : x->line_no > y->line_no;
}

static void recording_free(recording *rec)
{
	size_t i;

	for (i = 0; i < rec->count; i++) {
		free(rec->items[i].id);
		json_decref(rec->items[i].fields);
	}
	free(rec->items);
}

/* Read a recording of Results. Returns -1 to go on, else an exit code
 * (the message printed). */
static int load(const diff_opts *o, const codec *c, recording *rec)
{
	const char *sub = "diff";
	valctl_lines *in;
	valctl_recline l;
	codec_response_owned *resp = NULL;
	char *text;
	size_t len, line_no, i;
	char errstr[512];
	int complete, r, rc = VALCTL_EXIT_USAGE;

	in = valctl_lines_open(rec->path, errstr, sizeof errstr);
	if (in == NULL) {
		valctl_err(sub, "%s", errstr);
		return VALCTL_EXIT_RUNTIME;
	}
	memset(&l, 0, sizeof l);
	while ((r = valctl_lines_next(in, &text, &len, &line_no, &complete)) > 0) {
		result_entry *e;

		if (len == 0)
			continue;
		if (valctl_recline_parse(text, len, 0, &l, errstr, sizeof errstr) != 0) {
			if (!complete) {
				valctl_err(sub, "%s:%zu: the last line is cut short (%s): skipped",
				           rec->path, line_no, errstr);
				continue;
			}
			valctl_err(sub, "%s:%zu: %s", rec->path, line_no, errstr);
			goto done;
		}
		if (l.value_null || codec_decode_response(c, l.value, l.value_len, &resp, errstr,
		                                          sizeof errstr) != CODEC_OK) {
			valctl_err(sub, "%s:%zu: the value is not a Result (%s)", rec->path,
			           line_no, l.value_null ? "null" : errstr);
			goto done;
		}
		if (rec->count == rec->cap) {
			size_t cap = rec->cap > 0 ? rec->cap * 2 : 256;
			result_entry *grown = realloc(rec->items, cap * sizeof *grown);

			if (grown == NULL)
				goto oom;
			rec->items = grown;
			rec->cap = cap;
		}
		e = &rec->items[rec->count];
		e->line_no = line_no;
		e->occurrence = 0;
		e->id = strdup(resp->request_id);
		e->fields = result_fields(o, &l, resp);
		if (e->id == NULL || e->fields == NULL) {
			free(e->id);
			json_decref(e->fields);
			goto oom;
		}
		rec->count++;
		codec_response_owned_free(resp);
		resp = NULL;
		valctl_recline_clear(&l);
	}
	if (r < 0) {
		valctl_err(sub, "cannot read %s", rec->path);
		rc = VALCTL_EXIT_RUNTIME;
		goto done;
	}
	qsort(rec->items, rec->count, sizeof *rec->items, entry_cmp);
	for (i = 0; i < rec->count; i++) {
		rec->items[i].occurrence =
		    i > 0 && strcmp(rec->items[i].id, rec->items[i - 1].id) == 0
		        ? rec->items[i - 1].occurrence + 1
		        : 1;
	}
	rc = -1;
	goto done;
oom:
	valctl_err(sub, "out of memory");
	rc = VALCTL_EXIT_RUNTIME;
done:
	codec_response_owned_free(resp);
	valctl_recline_clear(&l);
	valctl_lines_close(in);
	return rc;
}

/* "id" or "id#n" for the n-th Result of an id. */
static char *label(const result_entry *e)
{
	size_t n = strlen(e->id) + 24;
	char *s = malloc(n);

	if (s == NULL)
		return NULL;
	if (e->occurrence > 1)
		snprintf(s, n, "%s#%zu", e->id, e->occurrence);
	else
		snprintf(s, n, "%s", e->id);
	return s;
}

/* The differing fields of a and b: [{name, a, b}], a or b left out when
 * the field is absent on that side. */
static json_t *field_diff(const result_entry *a, const result_entry *b)
{
	json_t *out = json_array(), *va, *vb, *row;
	const char *name;
	int pass, bad = 0;

	if (out == NULL)
		return NULL;
	/* a's fields in a's order, then those only b has */
	for (pass = 0; pass < 2 && !bad; pass++) {
		json_t *src = pass == 0 ? a->fields : b->fields;

		json_object_foreach(src, name, va)
		{
			(void)va;
			if (pass == 1 && json_object_get(a->fields, name) != NULL)
				continue;
			va = json_object_get(a->fields, name);
			vb = json_object_get(b->fields, name);
			if (va != NULL && vb != NULL && json_equal(va, vb))
				continue;
			row = json_pack("{s:s}", "name", name);
			if (row == NULL || (va != NULL && json_object_set(row, "a", va) != 0) ||
			    (vb != NULL && json_object_set(row, "b", vb) != 0) ||
			    json_array_append_new(out, row) != 0) {
				bad = 1;
				break;
			}
		}
	}
	if (bad) {
		json_decref(out);
		return NULL;
	}
	return out;
}

static json_t *side_entry(const result_entry *e)
{
	return json_pack("{s:s, s:I, s:I}", "requestId", e->id, "occurrence",
	                 (json_int_t)e->occurrence, "line", (json_int_t)e->line_no);
}

/* Compare; a report {equal, differ[], onlyInA[], onlyInB[]}. */
static json_t *compare(const recording *a, const recording *b)
{
	json_t *differ = json_array(), *only_a = json_array(), *only_b = json_array();
	json_t *report = NULL, *fields;
	size_t i = 0, j = 0, equal = 0;
	int bad = differ == NULL || only_a == NULL || only_b == NULL;

	while (!bad && (i < a->count || j < b->count)) {
		int c;

		if (i == a->count)
			c = 1;
		else if (j == b->count)
			c = -1;
		else {
			c = strcmp(a->items[i].id, b->items[j].id);
			if (c == 0 && a->items[i].occurrence != b->items[j].occurrence)
				c = a->items[i].occurrence < b->items[j].occurrence ? -1 : 1;
		}
		if (c < 0) {
			bad |= json_array_append_new(only_a, side_entry(&a->items[i++]));
		} else if (c > 0) {
			bad |= json_array_append_new(only_b, side_entry(&b->items[j++]));
		} else {
			fields = field_diff(&a->items[i], &b->items[j]);
			if (fields == NULL) {
				bad = 1;
			} else if (json_array_size(fields) == 0) {
				equal++;
				json_decref(fields);
			} else {
				json_t *d = side_entry(&a->items[i]);

				bad |= d == NULL || json_object_set_new(d, "fields", fields) != 0 ||
				       json_object_set_new(
				           d, "lineB",
				           json_integer((json_int_t)b->items[j].line_no)) != 0 ||
				       json_array_append_new(differ, d) != 0;
			}
			i++;
			j++;
		}
	}
	if (!bad)
		report = json_pack("{s:{s:s, s:I}, s:{s:s, s:I}, s:I, s:O, s:O, s:O}", "a", "file",
		                   a->path, "results", (json_int_t)a->count, "b", "file", b->path,
		                   "results", (json_int_t)b->count, "equal", (json_int_t)equal,
		                   "differ", differ, "onlyInA", only_a, "onlyInB", only_b);
	json_decref(differ);
	json_decref(only_a);
	json_decref(only_b);
	return report;
}

/* One cell of the table: the value as JSON text, "(absent)" without one. */
static char *cell(const json_t *v)
{
	return v == NULL ? strdup("(absent)") : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
}

static int print_table(const json_t *report)
{
	const json_t *differ = json_object_get(report, "differ");
	const json_t *only_a = json_object_get(report, "onlyInA");
	const json_t *only_b = json_object_get(report, "onlyInB");
	const json_t *d, *f;
	size_t i, k, w_id = strlen("REQUEST ID"), w_field = strlen("FIELD"), w_a = strlen("A");
	result_entry tmp;
	char *lab, *ca, *cb;
	int pass, bad = 0;

	/* Two passes: measure the columns, then print. */
	for (pass = 0; pass < 2 && !bad; pass++) {
		if (pass == 1 &&
		    (json_array_size(differ) + json_array_size(only_a) + json_array_size(only_b) >
		     0)) {
			if (w_a > 60)
				w_a = 60;
			printf("%-*s  %-*s  %-*s  %s\n", (int)w_id, "REQUEST ID", (int)w_field,
			       "FIELD", (int)w_a, "A", "B");
		}
		for (k = 0; k < 3; k++) {
			const json_t *list = k == 0 ? only_a : k == 1 ? only_b : differ;

			json_array_foreach(list, i, d)
			{
				size_t j;

				tmp.id = (char *)(uintptr_t)json_string_value(
				    json_object_get(d, "requestId"));
				tmp.occurrence =
				    (size_t)json_integer_value(json_object_get(d, "occurrence"));
				lab = label(&tmp);
				if (lab == NULL) {
					bad = 1;
					break;
				}
				if (strlen(lab) > w_id)
					w_id = strlen(lab);
				if (k < 2) {
					if (pass == 1)
						printf("%-*s  %-*s  %-*s  %s\n", (int)w_id, lab,
						       (int)w_field, "(Result)", (int)w_a,
						       k == 0 ? "present" : "missing",
						       k == 0 ? "missing" : "present");
					else if (strlen("(Result)") > w_field)
						w_field = strlen("(Result)");
					free(lab);
					continue;
				}
				json_array_foreach(json_object_get(d, "fields"), j, f)
				{
					const char *name =
					    json_string_value(json_object_get(f, "name"));

					ca = cell(json_object_get(f, "a"));
					cb = cell(json_object_get(f, "b"));
					if (ca == NULL || cb == NULL) {
						bad = 1;
					} else if (pass == 0) {
						if (strlen(name) > w_field)
							w_field = strlen(name);
						if (strlen(ca) > w_a)
							w_a = strlen(ca);
					} else {
						printf("%-*s  %-*s  %-*s  %s\n", (int)w_id,
						       j == 0 ? lab : "", (int)w_field, name,
						       (int)w_a, ca, cb);
					}
					free(ca);
					free(cb);
				}
				free(lab);
			}
		}
	}
	printf(
	    "valctl diff: A has %lld Results, B has %lld: %lld equal, %zu differ, %zu only in "
	    "A, %zu only in B\n",
	    (long long)json_integer_value(json_object_get(json_object_get(report, "a"), "results")),
	    (long long)json_integer_value(json_object_get(json_object_get(report, "b"), "results")),
	    (long long)json_integer_value(json_object_get(report, "equal")),
	    json_array_size(differ), json_array_size(only_a), json_array_size(only_b));
	return bad ? -1 : 0;
}

static int diff_option(void *ctx, const char *sub, int opt, const char *arg)
{
	diff_opts *o = ctx;

	switch (opt) {
	case OPT_JSON:
		o->json = 1;
		break;
	case OPT_IGNORE_CE_ID:
		o->ignored[o->ignored_count++] = "ce_id";
		break;
	case OPT_IGNORE:
		if (arg[0] == '\0')
			return valctl_usage(sub, "--ignore needs a field or header name");
		o->ignored[o->ignored_count++] = arg;
		break;
	case OPT_PARTITION:
		o->partition = 1;
		break;
	default:
		return VALCTL_NOT_MINE;
	}
	return VALCTL_GO_ON;
}

int valctl_cmd_diff(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, OPT_JSON},
	                                     {"ignore-ce-id", no_argument, NULL, OPT_IGNORE_CE_ID},
	                                     {"ignore", required_argument, NULL, OPT_IGNORE},
	                                     {"partition", no_argument, NULL, OPT_PARTITION},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	const char *sub = "diff";
	recording a = {NULL, NULL, 0, 0}, b = {NULL, NULL, 0, 0};
	diff_opts o;
	codec *c = NULL;
	json_t *report = NULL;
	char errstr[512];
	size_t i;
	int r, rc = VALCTL_EXIT_USAGE;

	memset(&o, 0, sizeof o);
	/* The defaults, then every --ignore: at most argc more. */
	o.ignored = calloc((size_t)argc + 8, sizeof *o.ignored);
	if (o.ignored == NULL) {
		valctl_err(sub, "out of memory");
		return VALCTL_EXIT_RUNTIME;
	}
	for (i = 0; i < sizeof default_ignored / sizeof default_ignored[0]; i++)
		o.ignored[o.ignored_count++] = default_ignored[i];
	r = valctl_parse(NULL, sub, diff_help, opts, diff_option, &o, 1, argc, argv);
	if (r != VALCTL_GO_ON) {
		rc = r;
		goto done;
	}
	if (argc - optind != 2) {
		rc = valctl_usage(sub, "two recordings are needed, A and B");
		goto done;
	}
	a.path = argv[optind];
	b.path = argv[optind + 1];
	c = codec_new(NULL, errstr, sizeof errstr);
	if (c == NULL) {
		valctl_err(sub, "%s", errstr);
		rc = VALCTL_EXIT_RUNTIME;
		goto done;
	}
	if ((r = load(&o, c, &a)) >= 0 || (r = load(&o, c, &b)) >= 0) {
		rc = r;
		goto done;
	}
	report = compare(&a, &b);
	if (report == NULL) {
		valctl_err(sub, "out of memory");
		rc = VALCTL_EXIT_RUNTIME;
		goto done;
	}
	if (o.json ? valctl_print_json(stdout, report) : print_table(report)) {
		valctl_err(sub, "cannot write the report");
		rc = VALCTL_EXIT_RUNTIME;
		goto done;
	}
	if (fflush(stdout) != 0) {
		valctl_err(sub, "cannot write the report");
		rc = VALCTL_EXIT_RUNTIME;
		goto done;
	}
	rc = json_array_size(json_object_get(report, "differ")) +
	                 json_array_size(json_object_get(report, "onlyInA")) +
	                 json_array_size(json_object_get(report, "onlyInB")) >
	             0
	         ? VALCTL_EXIT_FAILURE
	         : VALCTL_EXIT_SUCCESS;
done:
	json_decref(report);
	recording_free(&a);
	recording_free(&b);
	codec_destroy(c);
	free(o.ignored);
	return rc;
}
