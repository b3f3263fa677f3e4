-- The VAL servers of the batch stored before, and their providers.
SELECT requester_identity, vsp_id FROM val_servers WHERE requester_identity = ANY($1::text[])
