/*
 * cmd_valserver: kmsctl valserver list and show: the VAL servers the KM-S
 * provisioned, with the current key format of each of their services (the
 * highest version), and for show the whole history of those formats, read
 * in one snapshot with the server so the two agree.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_valserver.h"
#include "db.h"
#include "out.h"
#include "table.h"

static const char SQL_VAL_SERVERS[] = "SELECT v.requester_identity, v.vsp_id, v.endpoint, " DB_ISO(
    "v.first_provisioned_at") ", " DB_ISO("v.last_provisioned_at") ","
                                                                   " k.val_service_id, "
                                                                   "k.format_type, "
                                                                   "k.format_version,"
                                                                   " k.content::text, k.version"
                                                                   " FROM val_servers v LEFT JOIN "
                                                                   "LATERAL ("
                                                                   "  SELECT DISTINCT ON "
                                                                   "(val_service_id) * FROM "
                                                                   "key_formats"
                                                                   "  WHERE requester_identity = "
                                                                   "v.requester_identity"
                                                                   "  ORDER BY val_service_id, "
                                                                   "version DESC) k ON true"
                                                                   " WHERE ($1::text IS NULL OR "
                                                                   "v.vsp_id = $1)"
                                                                   " AND ($2::text IS NULL OR "
                                                                   "v.requester_identity = $2)"
                                                                   " ORDER BY "
                                                                   "v.requester_identity, "
                                                                   "k.val_service_id";

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
			cur =
			    json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "requester_identity",
			              out_str(id), "vsp_id", out_str(db_cell(r, i, 1)), "endpoint",
			              out_str(db_cell(r, i, 2)), "first_provisioned_at",
			              out_str(db_cell(r, i, 3)), "last_provisioned_at",
			              out_str(db_cell(r, i, 4)), "services", services);
			if (cur == NULL || json_array_append_new(arr, cur) != 0)
				goto oom;
			cur_id = id;
		}
		if (PQgetisnull(r, i, 5))
			continue;
		json_t *kf =
		    json_pack("{s:o, s:o, s:o, s:o}", "format_type", out_str(db_cell(r, i, 6)),
		              "format_version", out_str(db_cell(r, i, 7)), "content",
		              out_parse(db_cell(r, i, 8)), "version", out_int(db_cell(r, i, 9)));
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
		const char *row_cells[5] = {db_cell(r, first, 0), db_cell(r, first, 1),
		                            db_cell(r, first, 2), db_cell(r, first, 4), svc};
		t = out_row(t, row_cells);
		free(svc);
	}
	return t;
}

int cmd_valserver_list(PGconn *c, const cli *o)
{
	const char *p[2] = {o->provider, NULL};
	PGresult *r = db_run(c, SQL_VAL_SERVERS, 2, p);
	if (r == NULL)
		return CLI_EXIT_RUNTIME;
	int rc =
	    o->json ? out_print_json(val_servers_json(r)) : out_print_table(val_servers_table(r));
	PQclear(r);
	return rc;
}

int cmd_valserver_show(PGconn *c, const cli *o)
{
	const char *p[2] = {NULL, o->args[0]};
	int rc = CLI_EXIT_RUNTIME;
	PGresult *r = NULL, *h = NULL;
	/* one snapshot for both reads */
	if (db_snapshot(c) != 0)
		return CLI_EXIT_RUNTIME;
	r = db_run(c, SQL_VAL_SERVERS, 2, p);
	if (r == NULL)
		goto done;
	if (PQntuples(r) == 0) {
		rc = cli_fail(CLI_EXIT_NOT_FOUND, "no such VAL server", NULL);
		goto done;
	}
	h = db_run(c,
	           "SELECT val_service_id, version, format_type, format_version, content::text,"
	           " request_id, " DB_ISO("provisioned_at") " FROM key_formats"
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
			hist = out_append(hist,
			                  json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
			                            "val_service_id", out_str(db_cell(h, i, 0)),
			                            "version", out_int(db_cell(h, i, 1)),
			                            "format_type", out_str(db_cell(h, i, 2)),
			                            "format_version", out_str(db_cell(h, i, 3)),
			                            "content", out_parse(db_cell(h, i, 4)),
			                            "request_id", out_str(db_cell(h, i, 5)),
			                            "provisioned_at", out_str(db_cell(h, i, 6))));
		if (obj == NULL || hist == NULL || json_object_set_new(obj, "history", hist) != 0) {
			json_decref(arr);
			rc = out_print_json(NULL);
			goto done;
		}
		json_incref(obj);
		json_decref(arr);
		rc = out_print_json(obj);
		goto done;
	}
	static const char *const fields[] = {"requester_identity", "vsp_id", "endpoint",
	                                     "first_provisioned_at", "last_provisioned_at"};
	for (int i = 0; i < 5; i++) {
		char *v = table_escape(PQgetvalue(r, 0, i));
		if (v == NULL) {
			rc = cli_fail(CLI_EXIT_RUNTIME, "out of memory", NULL);
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
		const char *row_cells[8] = {db_cell(h, i, 0), db_cell(h, i, 1),  db_cell(h, i, 2),
		                            db_cell(h, i, 3), db_cell(h, i, 4),  db_cell(h, i, 5),
		                            db_cell(h, i, 6), current ? "*" : ""};
		t = out_row(t, row_cells);
	}
	rc = out_print_table(t);
done:
	PQclear(r);
	PQclear(h);
	db_snapshot_end(c);
	return rc;
}
