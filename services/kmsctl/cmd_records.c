/*
 * cmd_records: kmsctl audit, decision, stats and admin-audit: what the KM-S
 * and kmsctl recorded, read only. The audit trail of a VAL server (every
 * request the service consumed and what became of it), the decision kept
 * for a requestId, counts over both (in one snapshot, so they add up), and
 * who changed providers and SLAs.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cmd_records.h"
#include "db.h"
#include "num.h"
#include "out.h"
#include "table.h"

int cmd_records_audit(PGconn *c, const cli *o)
{
	const char *p[1] = {o->args[0]};
	PGresult *r = db_run(c,
	                     "SELECT topic, kafka_partition, kafka_offset, request_id, outcome,"
	                     " result, cause, detail, kms_id, processed_at, reply_note"
	                     " FROM audit WHERE requester_identity = $1 ORDER BY id",
	                     1, p);
	if (r == NULL)
		return CLI_EXIT_RUNTIME;
	int rc;
	if (o->json) {
		json_t *arr = json_array();
		for (int i = 0; i < PQntuples(r) && arr != NULL; i++)
			arr = out_append(
			    arr, json_pack(
			             "{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, "
			             "s:o, s:o}",
			             "topic", out_str(db_cell(r, i, 0)), "partition",
			             out_int(db_cell(r, i, 1)), "offset", out_int(db_cell(r, i, 2)),
			             "request_id", out_str(db_cell(r, i, 3)), "outcome",
			             out_str(db_cell(r, i, 4)), "result", out_str(db_cell(r, i, 5)),
			             "cause", out_str(db_cell(r, i, 6)), "detail",
			             out_str(db_cell(r, i, 7)), "kms_id", out_str(db_cell(r, i, 8)),
			             "processed_at", out_int(db_cell(r, i, 9)), "reply_note",
			             out_str(db_cell(r, i, 10))));
		rc = out_print_json(arr);
	} else {
		static const char *const h[] = {
		    "TOPIC", "PARTITION", "OFFSET", "REQUEST_ID",   "OUTCOME",   "RESULT",
		    "CAUSE", "DETAIL",    "KMS_ID", "PROCESSED_AT", "REPLY_NOTE"};
		table *t = table_new(11, h);
		for (int i = 0; i < PQntuples(r); i++) {
			const char *row_cells[11];
			for (int k = 0; k < 11; k++)
				row_cells[k] = db_cell(r, i, k);
			t = out_row(t, row_cells);
		}
		rc = out_print_table(t);
	}
	PQclear(r);
	return rc;
}

int cmd_records_decision(PGconn *c, const cli *o)
{
	const char *p[1] = {o->args[0]};
	PGresult *r = db_run(c,
	                     "SELECT request_id, requester_identity, result, cause, detail, kms_id,"
	                     " processed_at FROM decisions WHERE request_id = $1",
	                     1, p);
	if (r == NULL)
		return CLI_EXIT_RUNTIME;
	int rc;
	if (PQntuples(r) == 0) {
		rc = cli_fail(CLI_EXIT_NOT_FOUND, "no decision for this requestId", NULL);
	} else if (o->json) {
		rc = out_print_json(json_pack(
		    "{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "request_id", out_str(db_cell(r, 0, 0)),
		    "requester_identity", out_str(db_cell(r, 0, 1)), "result",
		    out_str(db_cell(r, 0, 2)), "cause", out_str(db_cell(r, 0, 3)), "detail",
		    out_str(db_cell(r, 0, 4)), "kms_id", out_str(db_cell(r, 0, 5)), "processed_at",
		    out_int(db_cell(r, 0, 6))));
	} else {
		static const char *const fields[] = {
		    "request_id", "requester_identity", "result", "cause", "detail",
		    "kms_id",     "processed_at"};
		rc = CLI_EXIT_OK;
		for (int i = 0; i < 7 && rc == CLI_EXIT_OK; i++) {
			char *v = table_escape(PQgetisnull(r, 0, i) ? "-" : PQgetvalue(r, 0, i));
			if (v == NULL)
				rc = cli_fail(CLI_EXIT_RUNTIME, "out of memory", NULL);
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

int cmd_records_stats(PGconn *c, const cli *o)
{
	int rc = CLI_EXIT_RUNTIME;
	PGresult *res = NULL, *cau = NULL, *out = NULL, *tot = NULL;
	if (db_snapshot(c) != 0)
		return CLI_EXIT_RUNTIME;
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
		rc = out_print_json(json_pack(
		    "{s:{s:I, s:o, s:o}, s:{s:I, s:o}, s:o, s:o, s:o, s:o}", "decisions", "total",
		    (json_int_t)nd, "by_result", by_result, "by_cause", by_cause, "audit", "total",
		    (json_int_t)na, "by_outcome", by_outcome, "providers",
		    out_int(db_cell(tot, 0, 0)), "slas", out_int(db_cell(tot, 0, 1)), "val_servers",
		    out_int(db_cell(tot, 0, 2)), "key_format_versions",
		    out_int(db_cell(tot, 0, 3))));
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
		rc = out_print_table(t);
	}
done:
	PQclear(res);
	PQclear(cau);
	PQclear(out);
	PQclear(tot);
	db_snapshot_end(c);
	return rc;
}

int cmd_records_admin_audit(PGconn *c, const cli *o)
{
	/* The table shows, of a change to an existing row, only the members
	 * that changed; --json shows the rows whole. */
	PGresult *r =
	    db_run(c,
	           "SELECT id, " DB_ISO(
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
		return CLI_EXIT_RUNTIME;
	int rc;
	if (o->json) {
		json_t *arr = json_array();
		for (int i = 0; i < PQntuples(r) && arr != NULL; i++)
			arr = out_append(arr, json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
			                                "id", out_int(db_cell(r, i, 0)),
			                                "changed_at", out_str(db_cell(r, i, 1)),
			                                "actor", out_str(db_cell(r, i, 2)),
			                                "db_role", out_str(db_cell(r, i, 3)),
			                                "action", out_str(db_cell(r, i, 4)),
			                                "subject", out_str(db_cell(r, i, 5)),
			                                "before", out_parse(db_cell(r, i, 6)),
			                                "after", out_parse(db_cell(r, i, 7))));
		rc = out_print_json(arr);
	} else {
		static const char *const h[] = {"ID",     "CHANGED_AT", "ACTOR",  "DB_ROLE",
		                                "ACTION", "SUBJECT",    "BEFORE", "AFTER"};
		table *t = table_new(8, h);
		for (int i = 0; i < PQntuples(r); i++) {
			const char *row_cells[8] = {
			    db_cell(r, i, 0), db_cell(r, i, 1), db_cell(r, i, 2), db_cell(r, i, 3),
			    db_cell(r, i, 4), db_cell(r, i, 5), db_cell(r, i, 8), db_cell(r, i, 9)};
			t = out_row(t, row_cells);
		}
		rc = out_print_table(t);
	}
	PQclear(r);
	return rc;
}
