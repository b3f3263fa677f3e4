-- The batch's new key-format versions, numbered by the KM-S from the
-- current versions it read under the providers' locks.
INSERT INTO key_formats (requester_identity, val_service_id, version, format_type,
	format_version, content, request_id, provisioned_at)
SELECT i, s, v, ft, fv, c::jsonb, r, to_timestamp(t / 1000.0)
FROM unnest($1::text[], $2::text[], $3::integer[], $4::text[], $5::text[], $6::text[],
	$7::text[], $8::bigint[]) AS x (i, s, v, ft, fv, c, r, t)
