-- The current key format (highest version) of each VAL service of the
-- batch's VAL servers.
SELECT DISTINCT ON (requester_identity, val_service_id) requester_identity, val_service_id,
	version, format_type, format_version, content::text
FROM key_formats WHERE requester_identity = ANY($1::text[])
ORDER BY requester_identity, val_service_id, version DESC
