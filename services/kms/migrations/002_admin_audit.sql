-- The admin audit trail: one row for every change the admin command makes to
-- providers and SLAs, written in the change's own transaction, so that a
-- change and its row commit together or not at all. Who (the operator's name
-- as given to kmsctl, and the database role that made the change), when,
-- what, and the row before and after, as JSON.
--
-- Rows are only ever added: a trigger refuses UPDATE, DELETE and TRUNCATE to
-- everyone, the table's owner included; dropping the trigger is a schema
-- change of its own, not a quiet edit.
--
-- The KM-S itself needs no right on this table: this migration also makes
-- the group role kms_service with exactly the rights the KM-S's statements
-- need on its own tables (and none here). A deployment runs the KM-S as a
-- login role in kms_service, and kmsctl as the owner of the tables (the role
-- that migrates).

CREATE TABLE admin_audit (
	id bigserial PRIMARY KEY,
	changed_at timestamptz NOT NULL DEFAULT now(),
	actor text NOT NULL CHECK (actor <> '' AND length(actor) <= 128),
	db_role text NOT NULL DEFAULT session_user,
	action text NOT NULL CHECK (action IN ('provider.add', 'provider.disable',
		'provider.enable', 'sla.add', 'sla.revoke')),
	subject text NOT NULL,
	before jsonb,
	after jsonb,
	CHECK (before IS NOT NULL OR after IS NOT NULL)
);
REVOKE ALL ON admin_audit FROM PUBLIC;

CREATE FUNCTION admin_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'admin_audit is append-only: its rows are never changed or removed'
		USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER admin_audit_no_change BEFORE UPDATE OR DELETE ON admin_audit
	FOR EACH ROW EXECUTE FUNCTION admin_audit_append_only();
CREATE TRIGGER admin_audit_no_truncate BEFORE TRUNCATE ON admin_audit
	FOR EACH STATEMENT EXECUTE FUNCTION admin_audit_append_only();

-- Roles belong to the whole cluster, databases to one: another database's
-- migration may make the role at the same moment, and a migrating role
-- without CREATEROLE makes none (the grants are then left to the
-- administrator, as the notice says).
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kms_service') THEN
		BEGIN
			CREATE ROLE kms_service NOLOGIN;
		EXCEPTION
			WHEN duplicate_object OR unique_violation THEN
				NULL;
			WHEN insufficient_privilege THEN
				RAISE NOTICE 'role kms_service not made: the migrating role cannot create roles';
		END;
	END IF;
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kms_service') THEN
		-- services/kms/sql/: r0 locks providers (FOR NO KEY UPDATE needs
		-- UPDATE on a column), w5 updates their counts; r5 reads SLAs;
		-- r1/w1, r2/w2, r3/w3, r4/w4 read and add audit rows, decisions,
		-- VAL servers (w3 updates its columns on conflict) and key formats.
		GRANT SELECT, UPDATE (val_server_count) ON providers TO kms_service;
		GRANT SELECT ON slas TO kms_service;
		GRANT SELECT, INSERT ON audit TO kms_service;
		GRANT USAGE ON SEQUENCE audit_id_seq TO kms_service;
		GRANT SELECT, INSERT ON decisions TO kms_service;
		GRANT SELECT, INSERT, UPDATE (vsp_id, endpoint, last_provisioned_at, last_request_id)
			ON val_servers TO kms_service;
		GRANT SELECT, INSERT ON key_formats TO kms_service;
	END IF;
END
$$;
