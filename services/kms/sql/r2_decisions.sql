-- The requestIds of the batch decided before.
SELECT request_id, requester_identity, content_hash, result, cause, detail, kms_id, processed_at
FROM decisions WHERE request_id = ANY($1::text[])
