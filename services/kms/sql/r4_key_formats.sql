-- The current key format (highest version) of each (VAL server, VAL service)
-- pair the batch names: one backward step of the primary key's index each,
-- however many versions a VAL server has piled up.
SELECT x.i, x.s, k.version, k.format_type, k.format_version, k.content::text
FROM unnest($1::text[], $2::text[]) AS x (i, s)
CROSS JOIN LATERAL (
	SELECT version, format_type, format_version, content FROM key_formats
	WHERE requester_identity = x.i AND val_service_id = x.s
	ORDER BY version DESC LIMIT 1) AS k
