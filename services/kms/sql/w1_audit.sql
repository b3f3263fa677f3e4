-- The batch's audit rows, one per consumed message, in one statement.
INSERT INTO audit (topic, kafka_partition, kafka_offset, request_id, requester_identity,
	outcome, has_result, result, cause, detail, kms_id, processed_at, reply_note)
SELECT * FROM unnest($1::text[], $2::integer[], $3::bigint[], $4::text[], $5::text[],
	$6::text[], $7::boolean[], $8::text[], $9::text[], $10::text[], $11::text[],
	$12::bigint[], $13::text[])
