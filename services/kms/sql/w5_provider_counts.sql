-- The batch's admissions, added once per provider.
UPDATE providers AS p SET val_server_count = p.val_server_count + x.n
FROM unnest($1::text[], $2::integer[]) AS x (v, n)
WHERE p.vsp_id = x.v
