-- 0009: key check values and key import by components (issue 16).
--
-- key_versions.kcv: the version's key check value (six upper-case hex
-- digits), for the key types that have one; NULL for the other types and,
-- until the KMS next reads the key, for versions made before this
-- migration. It is not secret: a function of the key, computed where the
-- key is in clear.
-- key_ceremonies: one key being entered in components (split knowledge),
-- until it expires. request holds the new key's parameters (JSON). key_id
-- and completed_at are set when the last component made the key.
-- key_ceremony_components: the components entered so far, one per admin;
-- sealed is the component in an EKB under the tenant master key, cleared
-- when the ceremony completes.
ALTER TABLE key_versions ADD COLUMN kcv TEXT;
CREATE TABLE key_ceremonies (
    id           TEXT   NOT NULL PRIMARY KEY,
    tenant       TEXT   NOT NULL,
    key_type     TEXT   NOT NULL,
    components   BIGINT NOT NULL,
    expected_kcv TEXT   NOT NULL,
    owner        TEXT   NOT NULL,
    request      BYTEA  NOT NULL,
    created_by   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    key_id       TEXT,
    completed_at BIGINT
);
CREATE INDEX key_ceremonies_expires ON key_ceremonies (expires_at);
CREATE TABLE key_ceremony_components (
    ceremony_id TEXT   NOT NULL,
    idx         BIGINT NOT NULL,
    admin       TEXT   NOT NULL,
    kcv         TEXT   NOT NULL,
    sealed      BYTEA,
    entered_at  BIGINT NOT NULL,
    PRIMARY KEY (ceremony_id, idx),
    UNIQUE (ceremony_id, admin)
);
