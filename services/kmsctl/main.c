/*
 * kmsctl: the KM-S's admin command. It manages VAL service providers and
 * their SLAs, and shows what the KM-S stored: VAL servers and their key
 * formats, decisions, the audit trail, counts. It talks to the KM-S's
 * PostgreSQL database directly (--dsn or KMS_DSN), never to the service.
 *
 * Human tables by default (cells escaped: see table.h); --json prints the
 * same data exactly, as JSON, in these shapes (times are ISO 8601 UTC strings
 * with milliseconds, "2030-01-31T12:00:00.000Z"; processed_at is the
 * Result's processedAt, milliseconds since the epoch; absent values are null):
 *
 *   migrate          {"applied": N}
 *   provider add     {"vsp_id", "name", "enabled"}
 *   provider list    [{"vsp_id", "name", "enabled"}]
 *   provider disable / enable   {"vsp_id", "name", "enabled"}
 *   sla add          {"sla_id"}
 *   sla list         [{"sla_id", "vsp_id", "services": [], "key_formats": [],
 *                      "max_val_servers", "valid_from", "valid_until",
 *                      "revoked"}]
 *   sla revoke       {"sla_id", "revoked": true}
 *   valserver list   [{"requester_identity", "vsp_id", "endpoint",
 *                      "first_provisioned_at", "last_provisioned_at",
 *                      "services": {"SVC": {"format_type", "format_version",
 *                                           "content": {}, "version"}}}]
 *   valserver show   the same object, plus "history": [{"val_service_id",
 *                      "version", "format_type", "format_version", "content",
 *                      "request_id", "provisioned_at"}] in service and version
 *                      order
 *   audit            [{"topic", "partition", "offset", "request_id",
 *                      "outcome", "result", "cause", "detail", "kms_id",
 *                      "processed_at", "reply_note"}] in the order recorded
 *   decision         {"request_id", "requester_identity", "result", "cause",
 *                     "detail", "kms_id", "processed_at"}
 *   stats            {"decisions": {"total", "by_result": {RESULT: N},
 *                                   "by_cause": {CAUSE: N}},
 *                     "audit": {"total", "by_outcome": {OUTCOME: N}},
 *                     "providers", "slas", "val_servers",
 *                     "key_format_versions"}
 *   admin-audit      [{"id", "changed_at", "actor", "db_role", "action",
 *                      "subject", "before", "after"}] in the order recorded;
 *                      before and after are the row as JSON objects (null
 *                      for what did not exist)
 *
 * Every change (provider add, disable, enable; sla add, revoke) runs in one
 * transaction with its admin audit row: who (--actor, by default the login
 * name; and the database role), when, what, the row before and after. A
 * change that fails leaves no row, and a row that cannot be written fails
 * the change.
 *
 * Exit codes: 0 done; 1 runtime failure (one line on stderr); 2 misuse (one
 * hint on stderr); 3 already exists (provider add); 4 not found.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errstr.h"
#include "codec.h"
#include "store.h"
#include "isotime.h"
#include "num.h"
#include "pgconn.h"
#include "table.h"
#include "utf8.h"

enum {
	EXIT_OK = 0,
	EXIT_RUNTIME = 1,
	EXIT_USAGE = 2,
	EXIT_EXISTS = 3,
	EXIT_NOT_FOUND = 4,
};

/* Options a command may take, as bits. */
enum {
	OPT_NAME = 1 << 0,
	OPT_PROVIDER = 1 << 1,
	OPT_SERVICES = 1 << 2,
	OPT_KEY_FORMATS = 1 << 3,
	OPT_MAX = 1 << 4,
	OPT_FROM = 1 << 5,
	OPT_UNTIL = 1 << 6,
	OPT_ACTOR = 1 << 7,
};

/* The longest --actor (the admin_audit table's CHECK says the same). */
#define ACTOR_MAX 128

typedef struct {
	const char *dsn;
	int json;
	unsigned given; /* OPT_ bits seen */
	const char *name;
	const char *provider;
	const char *services;
	const char *key_formats;
	const char *max;
	const char *valid_from;
	const char *valid_until;
	const char *actor; /* who makes a change: --actor, or the login name */
	char **args;       /* the positional arguments after the command words */
	int nargs;
} cli;

/* ISO 8601 UTC with milliseconds, for every timestamptz shown. */
#define ISO(col) "to_char((" col ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

static void usage(FILE *f)
{
	fputs("usage: kmsctl [--dsn DSN] [--json] COMMAND [ARGS]\n"
	      "\n"
	      "The KM-S's admin command: VAL service providers, their SLAs, and what the\n"
	      "KM-S stored. DSN is a libpq connection string; default: $KMS_DSN.\n"
	      "\n"
	      "commands:\n"
	      "  migrate                          create or upgrade the schema\n"
	      "  provider add VSP_ID [--name NAME]\n"
	      "  provider list\n"
	      "  provider disable VSP_ID          its SLAs stop applying\n"
	      "  provider enable VSP_ID\n"
	      "  sla add --provider VSP_ID --services A,B --key-formats JWK,RAW\n"
	      "          --max-val-servers N [--valid-from TIME] [--valid-until TIME]\n"
	      "                                   prints the new SLA's id; TIME is ISO 8601\n"
	      "                                   (2030-01-31 or 2030-01-31T12:00:00Z; UTC\n"
	      "                                   unless an offset is given); default valid\n"
	      "                                   from now until a year later\n"
	      "  sla list [--provider VSP_ID]\n"
	      "  sla revoke SLA_ID\n"
	      "  valserver list [--provider VSP_ID]\n"
	      "  valserver show IDENTITY          current key formats and their history\n"
	      "  audit IDENTITY                   the audit trail of a VAL server\n"
	      "  decision REQUEST_ID              the decision recorded for a requestId\n"
	      "  stats                            counts\n"
	      "  admin-audit                      who changed providers and SLAs, when, and\n"
	      "                                   the rows before and after\n"
	      "\n"
	      "options:\n"
	      "  --dsn DSN     PostgreSQL connection string (default: $KMS_DSN)\n"
	      "  --json        print JSON instead of tables\n"
	      "  --actor NAME  who makes a change, for the admin audit (default: the\n"
	      "                login name)\n"
	      "  -h, --help    print this help\n"
	      "\n"
	      "key formats: RAW OPAQUE PKCS1 PKCS8 X509 EC_PRIVATE_KEY\n"
	      "             TRANSPARENT_SYMMETRIC_KEY JWK MIKEY_SAKKE\n"
	      "exit codes: 0 done, 1 failure, 2 misuse, 3 already exists, 4 not found\n",
	      f);
}

static int misuse(const char *what)
{
	fprintf(stderr, "kmsctl: %s (see kmsctl --help)\n", what);
	return EXIT_USAGE;
}

/* One line on stderr; message may come from libpq (with newlines). */
static int fail_line(int code, const char *what, const char *message)
{
	char line[512];
	errstr_line(line, sizeof line, what, message);
	fprintf(stderr, "kmsctl: %s\n", line);
	return code;
}

/* ---- checked input ---- */

/* A comma-separated list as a JSON array text (duplicates dropped). Every
 * item must be non-empty. Returns a malloc'd text, or NULL (errs says why). */
static char *list_json(const char *list, int key_formats, char *err, size_t err_size)
{
	char *text = NULL, *copy = strdup(list);
	json_t *arr = json_array();
	if (copy == NULL || arr == NULL) {
		snprintf(err, err_size, "out of memory");
		goto done;
	}
	char *item = copy;
	for (;;) {
		char *comma = strchr(item, ',');
		if (comma != NULL)
			*comma = '\0';
		if (*item == '\0') {
			snprintf(err, err_size, "an empty item in a comma-separated list");
			goto done;
		}
		if (key_formats) {
			codec_key_format_type t;
			if (codec_key_format_type_parse(item, &t) != 0) {
				char *shown = table_escape(item);
				snprintf(err, err_size,
				         "unknown key format '%.64s' (known: RAW, OPAQUE, PKCS1, "
				         "PKCS8, X509, EC_PRIVATE_KEY, TRANSPARENT_SYMMETRIC_KEY, "
				         "JWK, MIKEY_SAKKE)",
				         shown != NULL ? shown : "?");
				free(shown);
				goto done;
			}
		}
		int seen = 0;
		size_t i;
		json_t *v;
		json_array_foreach(arr, i, v) seen |= strcmp(json_string_value(v), item) == 0;
		if (!seen && json_array_append_new(arr, json_string(item)) != 0) {
			snprintf(err, err_size, "out of memory");
			goto done;
		}
		if (comma == NULL)
			break;
		item = comma + 1;
	}
	text = json_dumps(arr, JSON_COMPACT);
	if (text == NULL)
		snprintf(err, err_size, "out of memory");
done:
	json_decref(arr);
	free(copy);
	return text;
}

/* ---- database ---- */

static PGconn *db_connect(const char *dsn)
{
	char why[512];
	PGconn *c = pgconn_open(dsn, why, sizeof why);
	if (c == NULL)
		fail_line(0, "cannot connect to PostgreSQL", why);
	return c;
}

/* Run one parameterized statement. Returns its result, or NULL with the
 * failure printed, unless its SQLSTATE is quiet_state, which the caller
 * handles: then *quiet is set to 1. */
static PGresult *db_run_quiet(PGconn *c, const char *sql, int n, const char *const *params,
                              const char *quiet_state, int *quiet)
{
	PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);
	if (r != NULL && (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK))
		return r;
	const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (quiet_state != NULL && state != NULL && strcmp(state, quiet_state) == 0)
		*quiet = 1;
	else
		fail_line(0, "database", msg != NULL ? msg : PQerrorMessage(c));
	PQclear(r);
	return NULL;
}

static PGresult *db_run(PGconn *c, const char *sql, int n, const char *const *params)
{
	return db_run_quiet(c, sql, n, params, NULL, NULL);
}

static const char *cell(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* ---- changes and their audit rows ---- */

static int tx_begin(PGconn *c)
{
	PGresult *r = db_run(c, "BEGIN", 0, NULL);
	if (r == NULL)
		return -1;
	PQclear(r);
	return 0;
}

static void tx_rollback(PGconn *c)
{
	PQclear(PQexec(c, "ROLLBACK"));
}

/* COMMIT of a failed transaction answers "ROLLBACK" without an error:
 * only the command tag tells. */
static int tx_commit(PGconn *c)
{
	PGresult *r = db_run(c, "COMMIT", 0, NULL);
	int ok = r != NULL && strcmp(PQcmdStatus(r), "COMMIT") == 0;
	if (r != NULL && !ok)
		fail_line(0, "database", "the change was rolled back");
	PQclear(r);
	return ok ? 0 : -1;
}

/* The change's admin audit row, inside its transaction. before and after
 * are JSON texts of the row (NULL: it did not exist). */
static int audit_change(PGconn *c, const cli *o, const char *action, const char *subject,
                        const char *before, const char *after)
{
	const char *p[5] = {o->actor, action, subject, before, after};
	PGresult *r = db_run(c,
	                     "INSERT INTO admin_audit (actor, action, subject, before, after)"
	                     " VALUES ($1, $2, $3, $4::jsonb, $5::jsonb)",
	                     5, p);
	if (r == NULL)
		return -1;
	PQclear(r);
	return 0;
}

/* Finish a change whose statements went through: its audit row, then the
 * commit. Returns 0, or -1 with the change rolled back and the failure
 * printed. */
static int finish_change(PGconn *c, const cli *o, const char *action, const char *subject,
                         const char *before, const char *after)
{
	if (audit_change(c, o, action, subject, before, after) != 0 || tx_commit(c) != 0) {
		tx_rollback(c);
		return -1;
	}
	return 0;
}

/* ---- JSON ---- */

/* A JSON string of s, or null for NULL. Text from the database is UTF-8;
 * should a byte not be, it is shown as U+FFFD rather than lost. */
static json_t *jstr(const char *s)
{
	if (s == NULL)
		return json_null();
	json_t *j = json_string(s);
	if (j != NULL)
		return j;
	size_t len = strlen(s);
	char *fixed = malloc(len * 3 + 1);
	if (fixed == NULL)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < len;) {
		char one[5] = {0};
		size_t n = 1;
		for (; n <= 4 && i + n <= len; n++) {
			memcpy(one, s + i, n);
			one[n] = '\0';
			if (utf8_valid(one))
				break;
		}
		if (n <= 4 && i + n <= len) {
			memcpy(fixed + o, s + i, n);
			o += n;
			i += n;
		} else {
			memcpy(fixed + o, "\xEF\xBF\xBD", 3);
			o += 3;
			i++;
		}
	}
	fixed[o] = '\0';
	j = json_string(fixed);
	free(fixed);
	return j;
}

static json_t *jint(const char *s)
{
	int64_t v;
	if (s == NULL || num_parse_i64(s, INT64_MIN, INT64_MAX, &v) != 0)
		return json_null();
	return json_integer(v);
}

static json_t *jbool(const char *s)
{
	return s == NULL ? json_null() : json_boolean(strcmp(s, "t") == 0);
}

/* JSON text from the database (jsonb, to_json), parsed. */
static json_t *jparse(const char *s)
{
	if (s == NULL)
		return json_null();
	json_t *j = json_loads(s, JSON_DECODE_ANY, NULL);
	return j != NULL ? j : json_null();
}

static int print_json(json_t *j)
{
	if (j == NULL)
		return fail_line(EXIT_RUNTIME, "out of memory", NULL);
	char *text = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);
	json_decref(j);
	if (text == NULL)
		return fail_line(EXIT_RUNTIME, "cannot encode JSON", NULL);
	puts(text);
	free(text);
	return EXIT_OK;
}

static int print_table(table *t)
{
	if (t == NULL)
		return fail_line(EXIT_RUNTIME, "out of memory", NULL);
	table_print(t, stdout);
	table_destroy(t);
	return EXIT_OK;
}

/* Add a row, or drop the table when out of memory (print_table reports it). */
static table *row(table *t, const char *const *cells)
{
	if (t != NULL && table_add(t, cells) != 0) {
		table_destroy(t);
		return NULL;
	}
	return t;
}

/* ---- commands ---- */

static int cmd_migrate(const cli *o)
{
	char err[512];
	store *s = store_new(o->dsn, err, sizeof err);
	if (s == NULL)
		return fail_line(EXIT_RUNTIME, err, NULL);
	int n = store_migrate(s, err, sizeof err);
	store_destroy(s);
	if (n < 0)
		return fail_line(EXIT_RUNTIME, err, NULL);
	if (o->json)
		return print_json(json_pack("{s:i}", "applied", n));
	printf("%d migration%s applied\n", n, n == 1 ? "" : "s");
	return EXIT_OK;
}

static int show_provider(const cli *o, const PGresult *r, const char *done)
{
	if (o->json)
		return print_json(json_pack("{s:o, s:o, s:o}", "vsp_id", jstr(cell(r, 0, 0)),
		                            "name", jstr(cell(r, 0, 1)), "enabled",
		                            jbool(cell(r, 0, 2))));
	char *shown = table_escape(cell(r, 0, 0));
	if (shown == NULL)
		return fail_line(EXIT_RUNTIME, "out of memory", NULL);
	printf("provider %s %s\n", shown, done);
	free(shown);
	return EXIT_OK;
}

static int cmd_provider_add(PGconn *c, const cli *o)
{
	const char *p[2] = {o->args[0], o->name != NULL ? o->name : ""};
	if (p[0][0] == '\0')
		return misuse("VSP_ID is empty");
	if (tx_begin(c) != 0)
		return EXIT_RUNTIME;
	PGresult *r = db_run(c,
	                     "INSERT INTO providers (vsp_id, name) VALUES ($1, $2)"
	                     " ON CONFLICT (vsp_id) DO NOTHING RETURNING vsp_id, name, enabled,"
	                     " (to_jsonb(providers) - 'val_server_count')::text",
	                     2, p);
	int rc;
	if (r == NULL) {
		tx_rollback(c);
		rc = EXIT_RUNTIME;
	} else if (PQntuples(r) == 0) {
		tx_rollback(c);
		rc = fail_line(EXIT_EXISTS, "the provider already exists", NULL);
	} else if (finish_change(c, o, "provider.add", p[0], NULL, cell(r, 0, 3)) != 0) {
		rc = EXIT_RUNTIME;
	} else {
		rc = show_provider(o, r, "added");
	}
	PQclear(r);
	return rc;
}

static int cmd_provider_list(PGconn *c, const cli *o)
{
	PGresult *r = db_run(c,
	                     "SELECT vsp_id, name, enabled, " ISO("created_at") ", " ISO(
	                         "disabled_at") ", val_server_count"
	                                        " FROM providers ORDER BY vsp_id",
	                     0, NULL);
	if (r == NULL)
		return EXIT_RUNTIME;
	int rc;
	if (o->json) {
		json_t *arr = json_array();
		for (int i = 0; i < PQntuples(r) && arr != NULL; i++)
			if (json_array_append_new(arr, json_pack("{s:o, s:o, s:o}", "vsp_id",
			                                         jstr(cell(r, i, 0)), "name",
			                                         jstr(cell(r, i, 1)), "enabled",
			                                         jbool(cell(r, i, 2)))) != 0) {
				json_decref(arr);
				arr = NULL;
			}
		rc = print_json(arr);
	} else {
		static const char *const h[] = {"VSP_ID",     "NAME",        "ENABLED",
		                                "CREATED_AT", "DISABLED_AT", "VAL_SERVERS"};
		table *t = table_new(6, h);
		for (int i = 0; i < PQntuples(r); i++) {
			const char *row_cells[6] = {
			    cell(r, i, 0),
			    cell(r, i, 1),
			    strcmp(PQgetvalue(r, i, 2), "t") == 0 ? "yes" : "no",
			    cell(r, i, 3),
			    cell(r, i, 4),
			    cell(r, i, 5)};
			t = row(t, row_cells);
		}
		rc = print_table(t);
	}
	PQclear(r);
	return rc;
}

static int cmd_provider_enable(PGconn *c, const cli *o, int enable)
{
	const char *p[2] = {o->args[0], enable ? "t" : "f"};
	int rc = EXIT_RUNTIME;
	PGresult *b = NULL, *r = NULL;
	if (tx_begin(c) != 0)
		return EXIT_RUNTIME;
	/* the row as it is, locked until the change commits */
	b = db_run(c,
	           "SELECT (to_jsonb(p) - 'val_server_count')::text FROM providers p"
	           " WHERE vsp_id = $1 FOR UPDATE",
	           1, p);
	if (b == NULL)
		goto fail;
	if (PQntuples(b) == 0) {
		rc = fail_line(EXIT_NOT_FOUND, "no such provider", NULL);
		goto fail;
	}
	/* disabled_at keeps the first disabling */
	r = db_run(c,
	           "UPDATE providers SET enabled = $2,"
	           " disabled_at = CASE WHEN $2 THEN NULL"
	           " ELSE COALESCE(disabled_at, now()) END"
	           " WHERE vsp_id = $1 RETURNING vsp_id, name, enabled,"
	           " (to_jsonb(providers) - 'val_server_count')::text",
	           2, p);
	if (r == NULL || PQntuples(r) != 1)
		goto fail;
	if (finish_change(c, o, enable ? "provider.enable" : "provider.disable", p[0],
	                  cell(b, 0, 0), cell(r, 0, 3)) != 0)
		goto done;
	rc = show_provider(o, r, enable ? "enabled" : "disabled");
	goto done;
fail:
	tx_rollback(c);
done:
	PQclear(b);
	PQclear(r);
	return rc;
}

/* The checked inputs of sla add. */
typedef struct {
	int64_t max;
	int64_t from, until; /* ms; meaningful when given */
	char *services;      /* JSON arrays, owned */
	char *formats;
} sla_input;

static void sla_input_free(sla_input *in)
{
	free(in->services);
	free(in->formats);
	in->services = in->formats = NULL;
}

/* Check sla add's options. Returns 0, or EXIT_USAGE with the hint printed. */
static int sla_input_parse(const cli *o, sla_input *in)
{
	memset(in, 0, sizeof *in);
	unsigned need = OPT_PROVIDER | OPT_SERVICES | OPT_KEY_FORMATS | OPT_MAX;
	if ((o->given & need) != need)
		return misuse(
		    "sla add needs --provider, --services, --key-formats and --max-val-servers");
	if (num_parse_i64(o->max, 1, INT32_MAX, &in->max) != 0)
		return misuse("--max-val-servers must be a whole number from 1 to 2147483647");
	if (o->valid_from != NULL && isotime_parse_ms(o->valid_from, &in->from) != 0)
		return misuse("--valid-from is not an ISO 8601 time like 2030-01-31T12:00:00Z");
	if (o->valid_until != NULL && isotime_parse_ms(o->valid_until, &in->until) != 0)
		return misuse("--valid-until is not an ISO 8601 time like 2030-01-31T12:00:00Z");
	if (o->valid_from != NULL && o->valid_until != NULL && in->until <= in->from)
		return misuse("--valid-until must be later than --valid-from");
	char err[256];
	in->services = list_json(o->services, 0, err, sizeof err);
	if (in->services == NULL)
		return misuse(err);
	in->formats = list_json(o->key_formats, 1, err, sizeof err);
	if (in->formats == NULL) {
		sla_input_free(in);
		return misuse(err);
	}
	return 0;
}

static int check_sla_add(const cli *o)
{
	sla_input in;
	int rc = sla_input_parse(o, &in);
	sla_input_free(&in);
	return rc;
}

static int check_sla_revoke(const cli *o)
{
	int64_t id;
	if (num_parse_i64(o->args[0], 1, INT64_MAX, &id) != 0)
		return misuse("SLA_ID must be a positive whole number");
	return 0;
}

static int cmd_sla_add(PGconn *c, const cli *o)
{
	sla_input in;
	if (sla_input_parse(o, &in) != 0)
		return EXIT_USAGE;
	const char *services = in.services, *formats = in.formats;
	long long max = in.max;
	int64_t from = in.from, until = in.until;
	char m[24], f[24], u[24];
	snprintf(m, sizeof m, "%lld", max);
	snprintf(f, sizeof f, "%lld", (long long)from);
	snprintf(u, sizeof u, "%lld", (long long)until);
	const char *p[6] = {o->provider,
	                    services,
	                    formats,
	                    m,
	                    o->valid_from != NULL ? f : NULL,
	                    o->valid_until != NULL ? u : NULL};
	int quiet = 0, rc = EXIT_RUNTIME;
	if (tx_begin(c) != 0) {
		sla_input_free(&in);
		return EXIT_RUNTIME;
	}
	/* 23514: the CHECK that valid_until is later than valid_from */
	PGresult *r = db_run_quiet(
	    c,
	    "WITH t AS (SELECT COALESCE(to_timestamp($5::bigint / 1000.0), now()) AS f)"
	    " INSERT INTO slas (vsp_id, services, key_formats, max_val_servers,"
	    " valid_from, valid_until)"
	    " SELECT p.vsp_id,"
	    " ARRAY(SELECT e FROM jsonb_array_elements_text($2::jsonb) WITH ORDINALITY"
	    "  AS a(e, i) ORDER BY i),"
	    " ARRAY(SELECT e FROM jsonb_array_elements_text($3::jsonb) WITH ORDINALITY"
	    "  AS a(e, i) ORDER BY i),"
	    " $4, t.f, COALESCE(to_timestamp($6::bigint / 1000.0), t.f + interval '1 year')"
	    " FROM providers p, t WHERE p.vsp_id = $1 RETURNING sla_id, to_jsonb(slas)::text",
	    6, p, "23514", &quiet);
	if (r == NULL || PQntuples(r) == 0)
		tx_rollback(c);
	if (r == NULL && quiet)
		rc = misuse("--valid-until must be later than --valid-from");
	else if (r != NULL && PQntuples(r) == 0)
		rc = fail_line(EXIT_NOT_FOUND, "no such provider", NULL);
	else if (r != NULL &&
	         finish_change(c, o, "sla.add", PQgetvalue(r, 0, 0), NULL, cell(r, 0, 1)) != 0)
		rc = EXIT_RUNTIME;
	else if (r != NULL && o->json)
		rc = print_json(json_pack("{s:o}", "sla_id", jint(cell(r, 0, 0))));
	else if (r != NULL)
		rc = printf("%s\n", PQgetvalue(r, 0, 0)) < 0 ? EXIT_RUNTIME : EXIT_OK;
	PQclear(r);
	sla_input_free(&in);
	return rc;
}

/* A JSON array text of strings as one "a,b" cell (escaped later). */
static char *joined(const char *json_text)
{
	json_t *arr = jparse(json_text);
	size_t len = 1, i;
	json_t *v;
	json_array_foreach(arr, i, v) len += strlen(json_string_value(v)) + 1;
	char *out = calloc(1, len);
	size_t at = 0;
	if (out != NULL)
		json_array_foreach(arr, i, v)
		{
			int w = snprintf(out + at, len - at, "%s%s", i > 0 ? "," : "",
			                 json_string_value(v));
			if (w > 0)
				at += (size_t)w;
		}
	json_decref(arr);
	return out;
}

static int cmd_sla_list(PGconn *c, const cli *o)
{
	const char *p[1] = {o->provider};
	PGresult *r = db_run(
	    c,
	    "SELECT sla_id, vsp_id, to_json(services)::text, to_json(key_formats)::text,"
	    " max_val_servers, " ISO("valid_from") ", " ISO(
	        "valid_until") ","
	                       " revoked_at IS NOT NULL,"
	                       " CASE WHEN revoked_at IS NOT NULL THEN 'revoked'"
	                       " WHEN valid_until <= now() THEN 'expired'"
	                       " WHEN valid_from > now() THEN 'pending'"
	                       " WHEN NOT (SELECT enabled FROM providers WHERE vsp_id = "
	                       "slas.vsp_id)"
	                       " THEN 'provider disabled' ELSE 'active' END"
	                       " FROM slas WHERE $1::text IS NULL OR vsp_id = $1 ORDER BY sla_id",
	    1, p);
	if (r == NULL)
		return EXIT_RUNTIME;
	int rc;
	if (o->json) {
		json_t *arr = json_array();
		for (int i = 0; i < PQntuples(r) && arr != NULL; i++)
			if (json_array_append_new(
			        arr,
			        json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "sla_id",
			                  jint(cell(r, i, 0)), "vsp_id", jstr(cell(r, i, 1)),
			                  "services", jparse(cell(r, i, 2)), "key_formats",
			                  jparse(cell(r, i, 3)), "max_val_servers",
			                  jint(cell(r, i, 4)), "valid_from", jstr(cell(r, i, 5)),
			                  "valid_until", jstr(cell(r, i, 6)), "revoked",
			                  jbool(cell(r, i, 7)))) != 0) {
				json_decref(arr);
				arr = NULL;
			}
		rc = print_json(arr);
	} else {
		static const char *const h[] = {
		    "SLA_ID",          "VSP_ID",     "SERVICES",    "KEY_FORMATS",
		    "MAX_VAL_SERVERS", "VALID_FROM", "VALID_UNTIL", "STATE"};
		table *t = table_new(8, h);
		for (int i = 0; i < PQntuples(r) && t != NULL; i++) {
			char *svc = joined(cell(r, i, 2)), *kf = joined(cell(r, i, 3));
			const char *row_cells[8] = {
			    cell(r, i, 0), cell(r, i, 1), svc,           kf,
			    cell(r, i, 4), cell(r, i, 5), cell(r, i, 6), cell(r, i, 8)};
			t = svc != NULL && kf != NULL ? row(t, row_cells)
			                              : (table_destroy(t), NULL);
			free(svc);
			free(kf);
		}
		rc = print_table(t);
	}
	PQclear(r);
	return rc;
}

static int cmd_sla_revoke(PGconn *c, const cli *o)
{
	if (check_sla_revoke(o) != 0)
		return EXIT_USAGE;
	const char *p[1] = {o->args[0]};
	int rc = EXIT_RUNTIME;
	PGresult *b = NULL, *r = NULL;
	if (tx_begin(c) != 0)
		return EXIT_RUNTIME;
	b = db_run(c, "SELECT to_jsonb(s)::text FROM slas s WHERE sla_id = $1 FOR UPDATE", 1, p);
	if (b == NULL)
		goto fail;
	if (PQntuples(b) == 0) {
		rc = fail_line(EXIT_NOT_FOUND, "no such SLA", NULL);
		goto fail;
	}
	/* revoked_at keeps the first revocation */
	r = db_run(c,
	           "UPDATE slas SET revoked_at = COALESCE(revoked_at, now())"
	           " WHERE sla_id = $1 RETURNING sla_id, to_jsonb(slas)::text",
	           1, p);
	if (r == NULL || PQntuples(r) != 1)
		goto fail;
	if (finish_change(c, o, "sla.revoke", PQgetvalue(r, 0, 0), cell(b, 0, 0), cell(r, 0, 1)) !=
	    0)
		goto done;
	if (o->json)
		rc = print_json(
		    json_pack("{s:o, s:b}", "sla_id", jint(cell(r, 0, 0)), "revoked", 1));
	else
		rc = printf("SLA %s revoked\n", PQgetvalue(r, 0, 0)) < 0 ? EXIT_RUNTIME : EXIT_OK;
	goto done;
fail:
	tx_rollback(c);
done:
	PQclear(b);
	PQclear(r);
	return rc;
}

/* VAL servers with their current key format per service, one row per
 * (server, service); $1 filters by provider, $2 by identity (NULL: all). */
static const char SQL_VAL_SERVERS[] =
    "SELECT v.requester_identity, v.vsp_id, v.endpoint, " ISO("v.first_provisioned_at") ", " ISO(
        "v.last_provisioned_at") ","
                                 " k.val_service_id, k.format_type, k.format_version,"
                                 " k.content::text, k.version"
                                 " FROM val_servers v LEFT JOIN LATERAL ("
                                 "  SELECT DISTINCT ON (val_service_id) * FROM key_formats"
                                 "  WHERE requester_identity = v.requester_identity"
                                 "  ORDER BY val_service_id, version DESC) k ON true"
                                 " WHERE ($1::text IS NULL OR v.vsp_id = $1)"
                                 " AND ($2::text IS NULL OR v.requester_identity = $2)"
                                 " ORDER BY v.requester_identity, k.val_service_id";

/* The rows of SQL_VAL_SERVERS as the JSON array of the valserver list
 * shape. */
static json_t *val_servers_json(const PGresult *r)
{
	json_t *arr = json_array(), *cur = NULL, *services = NULL;
	const char *cur_id = NULL;
	for (int i = 0; i < PQntuples(r) && arr != NULL; i++) {
		const char *id = PQgetvalue(r, i, 0);
		if (cur_id == NULL || strcmp(cur_id, id) != 0) {
			services = json_object();
			cur = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "requester_identity",
			                jstr(id), "vsp_id", jstr(cell(r, i, 1)), "endpoint",
			                jstr(cell(r, i, 2)), "first_provisioned_at",
			                jstr(cell(r, i, 3)), "last_provisioned_at",
			                jstr(cell(r, i, 4)), "services", services);
			if (cur == NULL || json_array_append_new(arr, cur) != 0)
				goto oom;
			cur_id = id;
		}
		if (PQgetisnull(r, i, 5))
			continue;
		json_t *kf = json_pack("{s:o, s:o, s:o, s:o}", "format_type", jstr(cell(r, i, 6)),
		                       "format_version", jstr(cell(r, i, 7)), "content",
		                       jparse(cell(r, i, 8)), "version", jint(cell(r, i, 9)));
		if (kf == NULL || json_object_set_new(services, PQgetvalue(r, i, 5), kf) != 0)
			goto oom;
	}
	return arr;
oom:
	json_decref(arr);
	return NULL;
}

static table *val_servers_table(const PGresult *r)
{
	static const char *const h[] = {"REQUESTER_IDENTITY", "VSP_ID", "ENDPOINT",
	                                "LAST_PROVISIONED_AT", "SERVICES"};
	table *t = table_new(5, h);
	for (int i = 0; i < PQntuples(r) && t != NULL;) {
		/* the services of one server as "svc=FORMAT v2, ..." */
		int first = i;
		size_t len = 1;
		for (;
		     i < PQntuples(r) && strcmp(PQgetvalue(r, i, 0), PQgetvalue(r, first, 0)) == 0;
		     i++)
			if (!PQgetisnull(r, i, 5))
				len += strlen(PQgetvalue(r, i, 5)) + strlen(PQgetvalue(r, i, 6)) +
				       strlen(PQgetvalue(r, i, 9)) + 8;
		char *svc = calloc(1, len);
		if (svc == NULL) {
			table_destroy(t);
			return NULL;
		}
		for (int k = first; k < i; k++) {
			if (PQgetisnull(r, k, 5))
				continue;
			size_t at = strlen(svc);
			snprintf(svc + at, len - at, "%s%s=%s v%s", at > 0 ? ", " : "",
			         PQgetvalue(r, k, 5), PQgetvalue(r, k, 6), PQgetvalue(r, k, 9));
		}
		const char *row_cells[5] = {cell(r, first, 0), cell(r, first, 1), cell(r, first, 2),
		                            cell(r, first, 4), svc};
		t = row(t, row_cells);
		free(svc);
	}
	return t;
}

static int cmd_valserver_list(PGconn *c, const cli *o)
{
	const char *p[2] = {o->provider, NULL};
	PGresult *r = db_run(c, SQL_VAL_SERVERS, 2, p);
	if (r == NULL)
		return EXIT_RUNTIME;
	int rc = o->json ? print_json(val_servers_json(r)) : print_table(val_servers_table(r));
	PQclear(r);
	return rc;
}

static int cmd_valserver_show(PGconn *c, const cli *o)
{
	const char *p[2] = {NULL, o->args[0]};
	int rc = EXIT_RUNTIME;
	PGresult *r = NULL, *h = NULL;
	/* one snapshot for both reads */
	PGresult *b = db_run(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL);
	if (b == NULL)
		return EXIT_RUNTIME;
	PQclear(b);
	r = db_run(c, SQL_VAL_SERVERS, 2, p);
	if (r == NULL)
		goto done;
	if (PQntuples(r) == 0) {
		rc = fail_line(EXIT_NOT_FOUND, "no such VAL server", NULL);
		goto done;
	}
	h = db_run(c,
	           "SELECT val_service_id, version, format_type, format_version, content::text,"
	           " request_id, " ISO("provisioned_at") " FROM key_formats"
	                                                 " WHERE requester_identity = $1"
	                                                 " ORDER BY val_service_id, version",
	           1, p + 1);
	if (h == NULL)
		goto done;
	if (o->json) {
		json_t *arr = val_servers_json(r);
		json_t *obj = json_array_get(arr, 0);
		json_t *hist = json_array();
		for (int i = 0; i < PQntuples(h) && hist != NULL; i++)
			if (json_array_append_new(
			        hist,
			        json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "val_service_id",
			                  jstr(cell(h, i, 0)), "version", jint(cell(h, i, 1)),
			                  "format_type", jstr(cell(h, i, 2)), "format_version",
			                  jstr(cell(h, i, 3)), "content", jparse(cell(h, i, 4)),
			                  "request_id", jstr(cell(h, i, 5)), "provisioned_at",
			                  jstr(cell(h, i, 6)))) != 0) {
				json_decref(hist);
				hist = NULL;
			}
		if (obj == NULL || hist == NULL || json_object_set_new(obj, "history", hist) != 0) {
			json_decref(arr);
			rc = print_json(NULL);
			goto done;
		}
		json_incref(obj);
		json_decref(arr);
		rc = print_json(obj);
		goto done;
	}
	static const char *const fields[] = {"requester_identity", "vsp_id", "endpoint",
	                                     "first_provisioned_at", "last_provisioned_at"};
	for (int i = 0; i < 5; i++) {
		char *v = table_escape(PQgetvalue(r, 0, i));
		if (v == NULL) {
			rc = fail_line(EXIT_RUNTIME, "out of memory", NULL);
			goto done;
		}
		printf("%-21s %s\n", fields[i], v);
		free(v);
	}
	printf("\n");
	static const char *const hh[] = {"VAL_SERVICE_ID", "VERSION", "FORMAT_TYPE",
	                                 "FORMAT_VERSION", "CONTENT", "REQUEST_ID",
	                                 "PROVISIONED_AT", "CURRENT"};
	table *t = table_new(8, hh);
	for (int i = 0; i < PQntuples(h); i++) {
		int current = i + 1 == PQntuples(h) ||
		              strcmp(PQgetvalue(h, i, 0), PQgetvalue(h, i + 1, 0)) != 0;
		const char *row_cells[8] = {cell(h, i, 0), cell(h, i, 1),     cell(h, i, 2),
		                            cell(h, i, 3), cell(h, i, 4),     cell(h, i, 5),
		                            cell(h, i, 6), current ? "*" : ""};
		t = row(t, row_cells);
	}
	rc = print_table(t);
done:
	PQclear(r);
	PQclear(h);
	PQclear(PQexec(c, "COMMIT"));
	return rc;
}

static int cmd_audit(PGconn *c, const cli *o)
{
	const char *p[1] = {o->args[0]};
	PGresult *r = db_run(c,
	                     "SELECT topic, kafka_partition, kafka_offset, request_id, outcome,"
	                     " result, cause, detail, kms_id, processed_at, reply_note"
	                     " FROM audit WHERE requester_identity = $1 ORDER BY id",
	                     1, p);
	if (r == NULL)
		return EXIT_RUNTIME;
	int rc;
	if (o->json) {
		json_t *arr = json_array();
		for (int i = 0; i < PQntuples(r) && arr != NULL; i++)
			if (json_array_append_new(
			        arr, json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, "
			                       "s:o, s:o}",
			                       "topic", jstr(cell(r, i, 0)), "partition",
			                       jint(cell(r, i, 1)), "offset", jint(cell(r, i, 2)),
			                       "request_id", jstr(cell(r, i, 3)), "outcome",
			                       jstr(cell(r, i, 4)), "result", jstr(cell(r, i, 5)),
			                       "cause", jstr(cell(r, i, 6)), "detail",
			                       jstr(cell(r, i, 7)), "kms_id", jstr(cell(r, i, 8)),
			                       "processed_at", jint(cell(r, i, 9)), "reply_note",
			                       jstr(cell(r, i, 10)))) != 0) {
				json_decref(arr);
				arr = NULL;
			}
		rc = print_json(arr);
	} else {
		static const char *const h[] = {
		    "TOPIC", "PARTITION", "OFFSET", "REQUEST_ID",   "OUTCOME",   "RESULT",
		    "CAUSE", "DETAIL",    "KMS_ID", "PROCESSED_AT", "REPLY_NOTE"};
		table *t = table_new(11, h);
		for (int i = 0; i < PQntuples(r); i++) {
			const char *row_cells[11];
			for (int k = 0; k < 11; k++)
				row_cells[k] = cell(r, i, k);
			t = row(t, row_cells);
		}
		rc = print_table(t);
	}
	PQclear(r);
	return rc;
}

static int cmd_decision(PGconn *c, const cli *o)
{
	const char *p[1] = {o->args[0]};
	PGresult *r = db_run(c,
	                     "SELECT request_id, requester_identity, result, cause, detail, kms_id,"
	                     " processed_at FROM decisions WHERE request_id = $1",
	                     1, p);
	if (r == NULL)
		return EXIT_RUNTIME;
	int rc;
	if (PQntuples(r) == 0) {
		rc = fail_line(EXIT_NOT_FOUND, "no decision for this requestId", NULL);
	} else if (o->json) {
		rc = print_json(json_pack(
		    "{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "request_id", jstr(cell(r, 0, 0)),
		    "requester_identity", jstr(cell(r, 0, 1)), "result", jstr(cell(r, 0, 2)),
		    "cause", jstr(cell(r, 0, 3)), "detail", jstr(cell(r, 0, 4)), "kms_id",
		    jstr(cell(r, 0, 5)), "processed_at", jint(cell(r, 0, 6))));
	} else {
		static const char *const fields[] = {
		    "request_id", "requester_identity", "result", "cause", "detail",
		    "kms_id",     "processed_at"};
		rc = EXIT_OK;
		for (int i = 0; i < 7 && rc == EXIT_OK; i++) {
			char *v = table_escape(PQgetisnull(r, 0, i) ? "-" : PQgetvalue(r, 0, i));
			if (v == NULL)
				rc = fail_line(EXIT_RUNTIME, "out of memory", NULL);
			else
				printf("%-19s %s\n", fields[i], v);
			free(v);
		}
	}
	PQclear(r);
	return rc;
}

/* name -> count from a two-column result, into obj; returns the total. */
static long long counts(json_t *obj, table *t, const char *prefix, const PGresult *r, int col)
{
	long long total = 0;
	for (int i = 0; i < PQntuples(r); i++) {
		int64_t n = 0;
		if (num_parse_i64(PQgetvalue(r, i, col + 1), 0, INT64_MAX, &n) != 0)
			n = 0; /* a count is never anything else */
		const char *key = PQgetisnull(r, i, col) ? "none" : PQgetvalue(r, i, col);
		total += n;
		if (obj != NULL)
			json_object_set_new(obj, key, json_integer(n));
		if (t != NULL) {
			char name[160];
			snprintf(name, sizeof name, "%s.%s", prefix, key);
			const char *row_cells[2] = {name, PQgetvalue(r, i, col + 1)};
			table_add(t, row_cells);
		}
	}
	return total;
}

static int cmd_stats(PGconn *c, const cli *o)
{
	int rc = EXIT_RUNTIME;
	PGresult *res = NULL, *cau = NULL, *out = NULL, *tot = NULL;
	PGresult *b = db_run(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL);
	if (b == NULL)
		return EXIT_RUNTIME;
	PQclear(b);
	res = db_run(c, "SELECT result, count(*) FROM decisions GROUP BY 1 ORDER BY 1", 0, NULL);
	cau = db_run(c,
	             "SELECT cause, count(*) FROM decisions WHERE cause IS NOT NULL"
	             " GROUP BY 1 ORDER BY 1",
	             0, NULL);
	out = db_run(c, "SELECT outcome, count(*) FROM audit GROUP BY 1 ORDER BY 1", 0, NULL);
	tot = db_run(c,
	             "SELECT (SELECT count(*) FROM providers), (SELECT count(*) FROM slas),"
	             " (SELECT count(*) FROM val_servers), (SELECT count(*) FROM key_formats)",
	             0, NULL);
	if (res == NULL || cau == NULL || out == NULL || tot == NULL)
		goto done;
	if (o->json) {
		json_t *by_result = json_object(), *by_cause = json_object();
		json_t *by_outcome = json_object();
		long long nd = counts(by_result, NULL, NULL, res, 0);
		counts(by_cause, NULL, NULL, cau, 0);
		long long na = counts(by_outcome, NULL, NULL, out, 0);
		rc = print_json(json_pack(
		    "{s:{s:I, s:o, s:o}, s:{s:I, s:o}, s:o, s:o, s:o, s:o}", "decisions", "total",
		    (json_int_t)nd, "by_result", by_result, "by_cause", by_cause, "audit", "total",
		    (json_int_t)na, "by_outcome", by_outcome, "providers", jint(cell(tot, 0, 0)),
		    "slas", jint(cell(tot, 0, 1)), "val_servers", jint(cell(tot, 0, 2)),
		    "key_format_versions", jint(cell(tot, 0, 3))));
	} else {
		static const char *const h[] = {"COUNT", "N"};
		table *t = table_new(2, h);
		if (t != NULL) {
			char nd[24], na[24];
			long long d = counts(NULL, NULL, NULL, res, 0);
			long long a = counts(NULL, NULL, NULL, out, 0);
			snprintf(nd, sizeof nd, "%lld", d);
			snprintf(na, sizeof na, "%lld", a);
			const char *r1[2] = {"decisions", nd};
			table_add(t, r1);
			counts(NULL, t, "decisions.result", res, 0);
			counts(NULL, t, "decisions.cause", cau, 0);
			const char *r2[2] = {"audit", na};
			table_add(t, r2);
			counts(NULL, t, "audit.outcome", out, 0);
			static const char *const names[] = {"providers", "slas", "val_servers",
			                                    "key_format_versions"};
			for (int i = 0; i < 4; i++) {
				const char *rr[2] = {names[i], PQgetvalue(tot, 0, i)};
				table_add(t, rr);
			}
		}
		rc = print_table(t);
	}
done:
	PQclear(res);
	PQclear(cau);
	PQclear(out);
	PQclear(tot);
	PQclear(PQexec(c, "COMMIT"));
	return rc;
}

static int cmd_admin_audit(PGconn *c, const cli *o)
{
	/* The table shows, of a change to an existing row, only the members
	 * that changed; --json shows the rows whole. */
	PGresult *r =
	    db_run(c,
	           "SELECT id, " ISO(
	               "changed_at") ", actor, db_role, action, subject,"
	                             " before::text, after::text,"
	                             " CASE WHEN before IS NULL OR after IS NULL THEN before::text"
	                             "  ELSE (SELECT jsonb_object_agg(b.key, b.value)"
	                             "  FROM jsonb_each(before) b"
	                             "  WHERE b.value IS DISTINCT FROM after -> b.key)::text END,"
	                             " CASE WHEN before IS NULL OR after IS NULL THEN after::text"
	                             "  ELSE (SELECT jsonb_object_agg(a.key, a.value)"
	                             "  FROM jsonb_each(after) a"
	                             "  WHERE a.value IS DISTINCT FROM before -> a.key)::text END"
	                             " FROM admin_audit ORDER BY id",
	           0, NULL);
	if (r == NULL)
		return EXIT_RUNTIME;
	int rc;
	if (o->json) {
		json_t *arr = json_array();
		for (int i = 0; i < PQntuples(r) && arr != NULL; i++)
			if (json_array_append_new(
			        arr, json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id",
			                       jint(cell(r, i, 0)), "changed_at",
			                       jstr(cell(r, i, 1)), "actor", jstr(cell(r, i, 2)),
			                       "db_role", jstr(cell(r, i, 3)), "action",
			                       jstr(cell(r, i, 4)), "subject", jstr(cell(r, i, 5)),
			                       "before", jparse(cell(r, i, 6)), "after",
			                       jparse(cell(r, i, 7)))) != 0) {
				json_decref(arr);
				arr = NULL;
			}
		rc = print_json(arr);
	} else {
		static const char *const h[] = {"ID",     "CHANGED_AT", "ACTOR",  "DB_ROLE",
		                                "ACTION", "SUBJECT",    "BEFORE", "AFTER"};
		table *t = table_new(8, h);
		for (int i = 0; i < PQntuples(r); i++) {
			const char *row_cells[8] = {cell(r, i, 0), cell(r, i, 1), cell(r, i, 2),
			                            cell(r, i, 3), cell(r, i, 4), cell(r, i, 5),
			                            cell(r, i, 8), cell(r, i, 9)};
			t = row(t, row_cells);
		}
		rc = print_table(t);
	}
	PQclear(r);
	return rc;
}

/* The login name, else the effective user's name, for a change made
 * without --actor. */
static void default_actor(char *out, size_t size)
{
	struct passwd pw, *found = NULL;
	char buf[1024];

	if (getlogin_r(out, size) == 0 && out[0] != '\0')
		return;
	if (getpwuid_r(geteuid(), &pw, buf, sizeof buf, &found) == 0 && found != NULL &&
	    found->pw_name[0] != '\0') {
		snprintf(out, size, "%s", found->pw_name);
		return;
	}
	snprintf(out, size, "uid %u", (unsigned)geteuid());
}

/* An actor is a name on one line: printable, UTF-8, at most ACTOR_MAX
 * bytes. */
static int actor_valid(const char *a)
{
	if (a[0] == '\0' || strlen(a) > ACTOR_MAX || !utf8_valid(a))
		return 0;
	for (const unsigned char *p = (const unsigned char *)a; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			return 0;
	return 1;
}

/* ---- dispatch ---- */

typedef struct {
	const char *group, *verb;   /* verb NULL: a one-word command */
	int nargs;                  /* positional arguments after the words */
	unsigned options;           /* OPT_ bits it accepts */
	int (*check)(const cli *o); /* misuse found before connecting, or NULL */
	int (*run)(PGconn *c, const cli *o);
} command;

static int run_provider_disable(PGconn *c, const cli *o)
{
	return cmd_provider_enable(c, o, 0);
}

static int run_provider_enable(PGconn *c, const cli *o)
{
	return cmd_provider_enable(c, o, 1);
}

static const command commands[] = {
    {"migrate", NULL, 0, 0, NULL, NULL},
    {"provider", "add", 1, OPT_NAME | OPT_ACTOR, NULL, cmd_provider_add},
    {"provider", "list", 0, 0, NULL, cmd_provider_list},
    {"provider", "disable", 1, OPT_ACTOR, NULL, run_provider_disable},
    {"provider", "enable", 1, OPT_ACTOR, NULL, run_provider_enable},
    {"sla", "add", 0,
     OPT_PROVIDER | OPT_SERVICES | OPT_KEY_FORMATS | OPT_MAX | OPT_FROM | OPT_UNTIL | OPT_ACTOR,
     check_sla_add, cmd_sla_add},
    {"sla", "list", 0, OPT_PROVIDER, NULL, cmd_sla_list},
    {"sla", "revoke", 1, OPT_ACTOR, check_sla_revoke, cmd_sla_revoke},
    {"valserver", "list", 0, OPT_PROVIDER, NULL, cmd_valserver_list},
    {"valserver", "show", 1, 0, NULL, cmd_valserver_show},
    {"audit", NULL, 1, 0, NULL, cmd_audit},
    {"decision", NULL, 1, 0, NULL, cmd_decision},
    {"stats", NULL, 0, 0, NULL, cmd_stats},
    {"admin-audit", NULL, 0, 0, NULL, cmd_admin_audit},
};

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"dsn", required_argument, NULL, 'd'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {"name", required_argument, NULL, 'n'},
	    {"provider", required_argument, NULL, 'p'},
	    {"services", required_argument, NULL, 's'},
	    {"key-formats", required_argument, NULL, 'k'},
	    {"max-val-servers", required_argument, NULL, 'm'},
	    {"valid-from", required_argument, NULL, 'f'},
	    {"valid-until", required_argument, NULL, 'u'},
	    {"actor", required_argument, NULL, 'a'},
	    {NULL, 0, NULL, 0},
	};
	cli o = {0};
	char login[256];
	opterr = 0;
	int ch;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			o.dsn = optarg;
			break;
		case 'j':
			o.json = 1;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'n':
			o.name = optarg, o.given |= OPT_NAME;
			break;
		case 'p':
			o.provider = optarg, o.given |= OPT_PROVIDER;
			break;
		case 's':
			o.services = optarg, o.given |= OPT_SERVICES;
			break;
		case 'k':
			o.key_formats = optarg, o.given |= OPT_KEY_FORMATS;
			break;
		case 'm':
			o.max = optarg, o.given |= OPT_MAX;
			break;
		case 'f':
			o.valid_from = optarg, o.given |= OPT_FROM;
			break;
		case 'u':
			o.valid_until = optarg, o.given |= OPT_UNTIL;
			break;
		case 'a':
			o.actor = optarg, o.given |= OPT_ACTOR;
			break;
		default:
			return misuse("an unknown option, or an option without its value");
		}
	}
	char **words = argv + optind;
	int nwords = argc - optind;
	if (nwords == 0)
		return misuse("no command given");

	const command *cmd = NULL;
	int used = 0;
	for (size_t i = 0; i < sizeof commands / sizeof commands[0] && cmd == NULL; i++) {
		if (strcmp(commands[i].group, words[0]) != 0)
			continue;
		if (commands[i].verb == NULL) {
			cmd = &commands[i], used = 1;
		} else if (nwords >= 2 && strcmp(commands[i].verb, words[1]) == 0) {
			cmd = &commands[i], used = 2;
		}
	}
	if (cmd == NULL)
		return misuse("unknown command");
	o.args = words + used;
	o.nargs = nwords - used;
	if (o.nargs != cmd->nargs)
		return misuse(cmd->nargs == 0 ? "this command takes no arguments"
		                              : "this command takes one argument");
	if ((o.given & ~cmd->options) != 0)
		return misuse("an option this command does not take");
	/* the database holds UTF-8 only: say so here rather than fail there */
	const char *inputs[] = {o.name, o.provider, o.services, o.key_formats};
	for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
		if (inputs[i] != NULL && !utf8_valid(inputs[i]))
			return misuse("an option's value is not valid UTF-8");
	for (int i = 0; i < o.nargs; i++)
		if (!utf8_valid(o.args[i]))
			return misuse("an argument is not valid UTF-8");
	if (o.actor != NULL && !actor_valid(o.actor))
		return misuse("--actor must be a printable name of 1 to 128 bytes");
	if (o.actor == NULL && (cmd->options & OPT_ACTOR) != 0) {
		default_actor(login, sizeof login);
		if (!actor_valid(login))
			return misuse("the login name cannot be an actor: give --actor");
		o.actor = login;
	}

	if (cmd->check != NULL && cmd->check(&o) != 0)
		return EXIT_USAGE;
	if (o.dsn == NULL)
		o.dsn = getenv("KMS_DSN");
	if (o.dsn == NULL || o.dsn[0] == '\0')
		return misuse("no database: give --dsn or set KMS_DSN");

	if (cmd->run == NULL)
		return cmd_migrate(&o);
	PGconn *c = db_connect(o.dsn);
	if (c == NULL)
		return EXIT_RUNTIME;
	int rc = cmd->run(c, &o);
	PQfinish(c);
	if (fflush(stdout) != 0)
		return fail_line(EXIT_RUNTIME, "cannot write the output", NULL);
	return rc;
}
