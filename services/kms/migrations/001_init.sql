-- The KM-S schema: VAL service providers and their SLAs (managed with the
-- admin command), the VAL servers and their versioned key formats (written by
-- the KM-S on success), one decision per requestId, and the audit trail of
-- every consumed message keyed by its Kafka coordinates.
--
-- Times the KM-S puts on the wire (processed_at) are kept as bigint
-- milliseconds so that a replayed Result is byte-identical; the others are
-- timestamptz. No access token is stored anywhere.

CREATE TABLE providers (
	vsp_id text PRIMARY KEY,
	name text NOT NULL DEFAULT '',
	enabled boolean NOT NULL DEFAULT true,
	-- How many val_servers rows name this provider. Kept by the KM-S, which
	-- adds its batch's admissions once per batch while it holds the
	-- provider's row lock, so an admission checks the SLA limit without
	-- counting val_servers.
	val_server_count integer NOT NULL DEFAULT 0 CHECK (val_server_count >= 0),
	created_at timestamptz NOT NULL DEFAULT now(),
	disabled_at timestamptz
);

CREATE TABLE slas (
	sla_id bigserial PRIMARY KEY,
	vsp_id text NOT NULL REFERENCES providers (vsp_id),
	services text[] NOT NULL CHECK (cardinality(services) > 0),
	key_formats text[] NOT NULL CHECK (cardinality(key_formats) > 0),
	max_val_servers integer NOT NULL CHECK (max_val_servers > 0),
	valid_from timestamptz NOT NULL,
	valid_until timestamptz NOT NULL,
	revoked_at timestamptz,
	created_at timestamptz NOT NULL DEFAULT now(),
	CHECK (valid_until > valid_from)
);
CREATE INDEX slas_vsp_id ON slas (vsp_id);

CREATE TABLE val_servers (
	requester_identity text PRIMARY KEY,
	vsp_id text NOT NULL REFERENCES providers (vsp_id),
	endpoint text NOT NULL,
	first_provisioned_at timestamptz NOT NULL,
	last_provisioned_at timestamptz NOT NULL,
	last_request_id text NOT NULL
);
CREATE INDEX val_servers_vsp_id ON val_servers (vsp_id);

-- One row per version of a VAL server's key format for one VAL service; the
-- highest version is the current one. content is the KeyFormat's map.
CREATE TABLE key_formats (
	requester_identity text NOT NULL REFERENCES val_servers (requester_identity),
	val_service_id text NOT NULL,
	version integer NOT NULL CHECK (version > 0),
	format_type text NOT NULL,
	format_version text,
	content jsonb NOT NULL,
	request_id text NOT NULL,
	provisioned_at timestamptz NOT NULL,
	PRIMARY KEY (requester_identity, val_service_id, version)
);

-- One decision per well-formed requestId: what makes a repeated request get
-- the same Result.
CREATE TABLE decisions (
	request_id text PRIMARY KEY,
	requester_identity text NOT NULL,
	content_hash bytea,
	result text NOT NULL,
	cause text,
	detail text,
	kms_id text NOT NULL,
	processed_at bigint NOT NULL,
	topic text NOT NULL,
	kafka_partition integer NOT NULL,
	kafka_offset bigint NOT NULL
);

-- One row per consumed message. A message consumed again after a crash finds
-- its row by its coordinates and is answered with the outcome recorded here.
-- outcome is the first outcome: DECIDED, REPLAYED, CONFLICT, DLQ or ERROR.
CREATE TABLE audit (
	id bigserial PRIMARY KEY,
	topic text NOT NULL,
	kafka_partition integer NOT NULL,
	kafka_offset bigint NOT NULL,
	request_id text,
	requester_identity text,
	outcome text NOT NULL
		CHECK (outcome IN ('DECIDED', 'REPLAYED', 'CONFLICT', 'DLQ', 'ERROR')),
	has_result boolean NOT NULL,
	result text,
	cause text,
	detail text,
	kms_id text NOT NULL,
	processed_at bigint NOT NULL,
	reply_note text,
	recorded_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (topic, kafka_partition, kafka_offset)
);
-- A hash index: an identity of any length can be audited (a btree entry is
-- limited to about 2.7 kB, and a too-long identity must still get its audit
-- row); the trail is ordered by id after the lookup.
CREATE INDEX audit_requester_identity ON audit USING hash (requester_identity);
