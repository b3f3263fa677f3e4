-- Lock the batch's providers up front, in one order for every KM-S, so that
-- two instances cannot deadlock. FOR NO KEY UPDATE excludes the other KM-S
-- instances but not the KEY SHARE lock that a concurrent insert's foreign key
-- takes on the provider's row.
SELECT vsp_id FROM providers WHERE vsp_id = ANY($1::text[]) ORDER BY vsp_id FOR NO KEY UPDATE
