-- The batch's new decisions, one per well-formed requestId decided.
INSERT INTO decisions (request_id, requester_identity, content_hash, result, cause, detail,
	kms_id, processed_at, topic, kafka_partition, kafka_offset)
SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::text[],
	$7::text[], $8::bigint[], $9::text[], $10::integer[], $11::bigint[])
