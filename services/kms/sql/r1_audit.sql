-- The messages of the batch handled before (crash recovery), by their Kafka
-- coordinates.
SELECT a.topic, a.kafka_partition, a.kafka_offset, a.has_result, a.result, a.cause, a.detail,
	a.kms_id, a.processed_at
FROM unnest($1::text[], $2::integer[], $3::bigint[]) AS k (t, p, o)
JOIN audit AS a ON a.topic = k.t AND a.kafka_partition = k.p AND a.kafka_offset = k.o
