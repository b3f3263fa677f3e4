-- The batch's providers with their SLAs active at $2 (ms since the epoch):
-- one row per SLA, or one row with NULL SLA columns.
SELECT p.vsp_id, p.enabled, p.val_server_count, s.sla_id, to_json(s.services)::text,
	to_json(s.key_formats)::text, s.max_val_servers
FROM providers AS p LEFT JOIN slas AS s ON s.vsp_id = p.vsp_id
	AND s.revoked_at IS NULL
	AND s.valid_from <= to_timestamp($2::bigint / 1000.0)
	AND s.valid_until > to_timestamp($2::bigint / 1000.0)
WHERE p.vsp_id = ANY($1::text[])
ORDER BY p.vsp_id, s.sla_id
