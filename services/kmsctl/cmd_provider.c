/*
 * cmd_provider: kmsctl provider add, list, disable and enable: the VAL
 * service providers whose SLAs the KM-S applies. A disabled provider keeps
 * its rows; its SLAs stop applying until it is enabled again. Each change
 * is one transaction with its admin audit row (db_change()), the row as it
 * was read under FOR UPDATE so that before and after belong together.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_provider.h"
#include "db.h"
#include "out.h"
#include "table.h"

static int show_provider(const cli *o, const PGresult *r, const char *done)
{
	if (o->json)
		return out_print_json(
		    json_pack("{s:o, s:o, s:o}", "vsp_id", out_str(db_cell(r, 0, 0)), "name",
		              out_str(db_cell(r, 0, 1)), "enabled", out_bool(db_cell(r, 0, 2))));
	char *shown = table_escape(db_cell(r, 0, 0));
	if (shown == NULL)
		return cli_fail(CLI_EXIT_RUNTIME, "out of memory", NULL);
	printf("provider %s %s\n", shown, done);
	free(shown);
	return CLI_EXIT_OK;
}

int cmd_provider_add(PGconn *c, const cli *o)
{
	const char *p[2] = {o->args[0], o->name != NULL ? o->name : ""};
	if (p[0][0] == '\0')
		return cli_misuse("VSP_ID is empty");
	if (db_begin(c) != 0)
		return CLI_EXIT_RUNTIME;
	PGresult *r = db_run(c,
	                     "INSERT INTO providers (vsp_id, name) VALUES ($1, $2)"
	                     " ON CONFLICT (vsp_id) DO NOTHING RETURNING vsp_id, name, enabled,"
	                     " (to_jsonb(providers) - 'val_server_count')::text",
	                     2, p);
	int rc;
	if (r == NULL) {
		db_rollback(c);
		rc = CLI_EXIT_RUNTIME;
	} else if (PQntuples(r) == 0) {
		db_rollback(c);
		rc = cli_fail(CLI_EXIT_EXISTS, "the provider already exists", NULL);
	} else if (db_change(c, o->actor, "provider.add", p[0], NULL, db_cell(r, 0, 3)) != 0) {
		rc = CLI_EXIT_RUNTIME;
	} else {
		rc = show_provider(o, r, "added");
	}
	PQclear(r);
	return rc;
}

int cmd_provider_list(PGconn *c, const cli *o)
{
	PGresult *r = db_run(c,
	                     "SELECT vsp_id, name, enabled, " DB_ISO("created_at") ", " DB_ISO(
	                         "disabled_at") ", val_server_count"
	                                        " FROM providers ORDER BY vsp_id",
	                     0, NULL);
	if (r == NULL)
		return CLI_EXIT_RUNTIME;
	int rc;
	if (o->json) {
		json_t *arr = json_array();
		for (int i = 0; i < PQntuples(r) && arr != NULL; i++)
			arr = out_append(arr, json_pack("{s:o, s:o, s:o}", "vsp_id",
			                                out_str(db_cell(r, i, 0)), "name",
			                                out_str(db_cell(r, i, 1)), "enabled",
			                                out_bool(db_cell(r, i, 2))));
		rc = out_print_json(arr);
	} else {
		static const char *const h[] = {"VSP_ID",     "NAME",        "ENABLED",
		                                "CREATED_AT", "DISABLED_AT", "VAL_SERVERS"};
		table *t = table_new(6, h);
		for (int i = 0; i < PQntuples(r); i++) {
			const char *row_cells[6] = {
			    db_cell(r, i, 0),
			    db_cell(r, i, 1),
			    strcmp(PQgetvalue(r, i, 2), "t") == 0 ? "yes" : "no",
			    db_cell(r, i, 3),
			    db_cell(r, i, 4),
			    db_cell(r, i, 5)};
			t = out_row(t, row_cells);
		}
		rc = out_print_table(t);
	}
	PQclear(r);
	return rc;
}

static int set_enabled(PGconn *c, const cli *o, int enable)
{
	const char *p[2] = {o->args[0], enable ? "t" : "f"};
	int rc;
	PGresult *r = NULL;
	PGresult *b = db_lock_row(c,
	                          "SELECT (to_jsonb(p) - 'val_server_count')::text FROM providers p"
	                          " WHERE vsp_id = $1 FOR UPDATE",
	                          1, p, "provider", &rc);
	if (b == NULL)
		return rc;
	rc = CLI_EXIT_RUNTIME;
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
	if (db_change(c, o->actor, enable ? "provider.enable" : "provider.disable", p[0],
	              db_cell(b, 0, 0), db_cell(r, 0, 3)) != 0)
		goto done;
	rc = show_provider(o, r, enable ? "enabled" : "disabled");
	goto done;
fail:
	db_rollback(c);
done:
	PQclear(b);
	PQclear(r);
	return rc;
}

int cmd_provider_disable(PGconn *c, const cli *o)
{
	return set_enabled(c, o, 0);
}

int cmd_provider_enable(PGconn *c, const cli *o)
{
	return set_enabled(c, o, 1);
}
