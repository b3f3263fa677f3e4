-- The batch's provisioned VAL servers, one row per identity (the last
-- request of the batch wins). A VAL server is never moved to another
-- provider: when another provider's admission stored the identity meanwhile,
-- the forced NULL fails the statement (a data error), and the batch is split
-- and decided again from fresh reads.
INSERT INTO val_servers AS v (requester_identity, vsp_id, endpoint, first_provisioned_at,
	last_provisioned_at, last_request_id)
SELECT i, p, e, to_timestamp(t / 1000.0), to_timestamp(t / 1000.0), r
FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[]) AS x (i, p, e, t, r)
ON CONFLICT (requester_identity) DO UPDATE SET
	vsp_id = CASE WHEN v.vsp_id = EXCLUDED.vsp_id THEN v.vsp_id END,
	endpoint = EXCLUDED.endpoint,
	last_provisioned_at = EXCLUDED.last_provisioned_at,
	last_request_id = EXCLUDED.last_request_id
