/*
 * cmd_sla: kmsctl sla add, list and revoke: the service level agreements
 * that say which services and key formats a provider's VAL servers may
 * provision, how many servers, and when. sla add's options are checked
 * whole before connecting (cmd_sla_check_add), so a typo costs no
 * connection; the lists go to PostgreSQL as JSON arrays and become arrays
 * there, in the order given.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_sla.h"
#include "codec.h"
#include "db.h"
#include "isotime.h"
#include "num.h"
#include "out.h"
#include "table.h"

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

/* Check sla add's options. Returns 0, or CLI_EXIT_USAGE with the hint printed. */
static int sla_input_parse(const cli *o, sla_input *in)
{
	memset(in, 0, sizeof *in);
	unsigned need = CLI_OPT_PROVIDER | CLI_OPT_SERVICES | CLI_OPT_KEY_FORMATS | CLI_OPT_MAX;
	if ((o->given & need) != need)
		return cli_misuse(
		    "sla add needs --provider, --services, --key-formats and --max-val-servers");
	if (num_parse_i64(o->max, 1, INT32_MAX, &in->max) != 0)
		return cli_misuse("--max-val-servers must be a whole number from 1 to 2147483647");
	if (o->valid_from != NULL && isotime_parse_ms(o->valid_from, &in->from) != 0)
		return cli_misuse("--valid-from is not an ISO 8601 time like 2030-01-31T12:00:00Z");
	if (o->valid_until != NULL && isotime_parse_ms(o->valid_until, &in->until) != 0)
		return cli_misuse(
		    "--valid-until is not an ISO 8601 time like 2030-01-31T12:00:00Z");
	if (o->valid_from != NULL && o->valid_until != NULL && in->until <= in->from)
		return cli_misuse("--valid-until must be later than --valid-from");
	char err[256];
	in->services = list_json(o->services, 0, err, sizeof err);
	if (in->services == NULL)
		return cli_misuse(err);
	in->formats = list_json(o->key_formats, 1, err, sizeof err);
	if (in->formats == NULL) {
		sla_input_free(in);
		return cli_misuse(err);
	}
	return 0;
}

int cmd_sla_check_add(const cli *o)
{
	sla_input in;
	int rc = sla_input_parse(o, &in);
	sla_input_free(&in);
	return rc;
}

int cmd_sla_check_revoke(const cli *o)
{
	int64_t id;
	if (num_parse_i64(o->args[0], 1, INT64_MAX, &id) != 0)
		return cli_misuse("SLA_ID must be a positive whole number");
	return 0;
}

int cmd_sla_add(PGconn *c, const cli *o)
{
	sla_input in;
	if (sla_input_parse(o, &in) != 0)
		return CLI_EXIT_USAGE;
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
	int quiet = 0, rc = CLI_EXIT_RUNTIME;
	if (db_begin(c) != 0) {
		sla_input_free(&in);
		return CLI_EXIT_RUNTIME;
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
		db_rollback(c);
	if (r == NULL && quiet)
		rc = cli_misuse("--valid-until must be later than --valid-from");
	else if (r != NULL && PQntuples(r) == 0)
		rc = cli_fail(CLI_EXIT_NOT_FOUND, "no such provider", NULL);
	else if (r != NULL && db_change(c, o->actor, "sla.add", PQgetvalue(r, 0, 0), NULL,
	                                db_cell(r, 0, 1)) != 0)
		rc = CLI_EXIT_RUNTIME;
	else if (r != NULL && o->json)
		rc = out_print_json(json_pack("{s:o}", "sla_id", out_int(db_cell(r, 0, 0))));
	else if (r != NULL)
		rc = printf("%s\n", PQgetvalue(r, 0, 0)) < 0 ? CLI_EXIT_RUNTIME : CLI_EXIT_OK;
	PQclear(r);
	sla_input_free(&in);
	return rc;
}

/* A JSON array text of strings as one "a,b" cell (escaped later). */
static char *joined(const char *json_text)
{
	json_t *arr = out_parse(json_text);
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

int cmd_sla_list(PGconn *c, const cli *o)
{
	const char *p[1] = {o->provider};
	PGresult *r = db_run(
	    c,
	    "SELECT sla_id, vsp_id, to_json(services)::text, to_json(key_formats)::text,"
	    " max_val_servers, " DB_ISO("valid_from") ", " DB_ISO(
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
		return CLI_EXIT_RUNTIME;
	int rc;
	if (o->json) {
		json_t *arr = json_array();
		for (int i = 0; i < PQntuples(r) && arr != NULL; i++)
			arr =
			    out_append(arr, json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
			                              "sla_id", out_int(db_cell(r, i, 0)), "vsp_id",
			                              out_str(db_cell(r, i, 1)), "services",
			                              out_parse(db_cell(r, i, 2)), "key_formats",
			                              out_parse(db_cell(r, i, 3)),
			                              "max_val_servers", out_int(db_cell(r, i, 4)),
			                              "valid_from", out_str(db_cell(r, i, 5)),
			                              "valid_until", out_str(db_cell(r, i, 6)),
			                              "revoked", out_bool(db_cell(r, i, 7))));
		rc = out_print_json(arr);
	} else {
		static const char *const h[] = {
		    "SLA_ID",          "VSP_ID",     "SERVICES",    "KEY_FORMATS",
		    "MAX_VAL_SERVERS", "VALID_FROM", "VALID_UNTIL", "STATE"};
		table *t = table_new(8, h);
		for (int i = 0; i < PQntuples(r) && t != NULL; i++) {
			char *svc = joined(db_cell(r, i, 2)), *kf = joined(db_cell(r, i, 3));
			const char *row_cells[8] = {db_cell(r, i, 0),
			                            db_cell(r, i, 1),
			                            svc,
			                            kf,
			                            db_cell(r, i, 4),
			                            db_cell(r, i, 5),
			                            db_cell(r, i, 6),
			                            db_cell(r, i, 8)};
			t = svc != NULL && kf != NULL ? out_row(t, row_cells)
			                              : (table_destroy(t), NULL);
			free(svc);
			free(kf);
		}
		rc = out_print_table(t);
	}
	PQclear(r);
	return rc;
}

int cmd_sla_revoke(PGconn *c, const cli *o)
{
	if (cmd_sla_check_revoke(o) != 0)
		return CLI_EXIT_USAGE;
	const char *p[1] = {o->args[0]};
	int rc;
	PGresult *r = NULL;
	PGresult *b =
	    db_lock_row(c, "SELECT to_jsonb(s)::text FROM slas s WHERE sla_id = $1 FOR UPDATE", 1,
	                p, "SLA", &rc);
	if (b == NULL)
		return rc;
	rc = CLI_EXIT_RUNTIME;
	/* revoked_at keeps the first revocation */
	r = db_run(c,
	           "UPDATE slas SET revoked_at = COALESCE(revoked_at, now())"
	           " WHERE sla_id = $1 RETURNING sla_id, to_jsonb(slas)::text",
	           1, p);
	if (r == NULL || PQntuples(r) != 1)
		goto fail;
	if (db_change(c, o->actor, "sla.revoke", PQgetvalue(r, 0, 0), db_cell(b, 0, 0),
	              db_cell(r, 0, 1)) != 0)
		goto done;
	if (o->json)
		rc = out_print_json(
		    json_pack("{s:o, s:b}", "sla_id", out_int(db_cell(r, 0, 0)), "revoked", 1));
	else
		rc = printf("SLA %s revoked\n", PQgetvalue(r, 0, 0)) < 0 ? CLI_EXIT_RUNTIME
		                                                         : CLI_EXIT_OK;
	goto done;
fail:
	db_rollback(c);
done:
	PQclear(b);
	PQclear(r);
	return rc;
}

/* VAL servers with their current key format per service, one row per
 * (server, service); $1 filters by provider, $2 by identity (NULL: all). */
