-- 0001: the initial schema.
--
-- Portable subset: these statements run unchanged on SQLite and PostgreSQL.
-- Types are TEXT, BIGINT and BYTEA only. Times are BIGINT Unix nanoseconds
-- (UTC); an optional time is a NULL-able BIGINT. Booleans are BIGINT 0/1.
-- No AUTOINCREMENT or SERIAL: the audit log numbers its rows itself.

-- KMS-wide material (the CA certificate, the sealed CA key).
CREATE TABLE settings (
    name  TEXT  NOT NULL PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE tenants (
    name               TEXT   NOT NULL PRIMARY KEY,
    master_key_version BIGINT NOT NULL,
    sealed_hmac_key    BYTEA  NOT NULL,
    created_at         BIGINT NOT NULL
);

CREATE TABLE master_keys (
    tenant     TEXT   NOT NULL REFERENCES tenants (name),
    version    BIGINT NOT NULL,
    sealed     BYTEA  NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, version)
);

-- The admin app has tenant ''.
CREATE TABLE apps (
    tenant     TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    role       TEXT   NOT NULL,
    dn         TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, name),
    CONSTRAINT apps_dn_unique UNIQUE (dn)
);

CREATE TABLE certs (
    serial     TEXT   NOT NULL PRIMARY KEY,
    kind       TEXT   NOT NULL,
    tenant     TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    not_after  BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX certs_kind_subject ON certs (kind, subject);

CREATE TABLE keys (
    key_id          TEXT   NOT NULL PRIMARY KEY,
    tenant          TEXT   NOT NULL,
    owner           TEXT   NOT NULL,
    key_type        TEXT   NOT NULL,
    current_version BIGINT NOT NULL,
    retained        BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    disabled_at     BIGINT
);

-- ekb is NULL unless the key is retained.
CREATE TABLE key_versions (
    key_id     TEXT   NOT NULL REFERENCES keys (key_id),
    version    BIGINT NOT NULL,
    ekb        BYTEA,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (key_id, version)
);

-- Single-use secrets, stored only as the SHA-256 of the secret.
CREATE TABLE one_time (
    hash       BYTEA  NOT NULL PRIMARY KEY,
    kind       TEXT   NOT NULL,
    tenant     TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    payload    BYTEA,
    created_by TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX one_time_expires_at ON one_time (expires_at);

CREATE TABLE instances (
    id              TEXT   NOT NULL PRIMARY KEY,
    tenant          TEXT   NOT NULL,
    custodian_dn    TEXT   NOT NULL,
    enclave         TEXT   NOT NULL,
    cert_serial     TEXT   NOT NULL,
    wrapping_serial TEXT   NOT NULL,
    wrapping_kem    TEXT   NOT NULL,
    wrapping_public BYTEA  NOT NULL,
    enrolled_at     BIGINT NOT NULL,
    revoked_at      BIGINT
);
CREATE INDEX instances_tenant ON instances (tenant, enrolled_at);
CREATE INDEX instances_custodian ON instances (custodian_dn, enrolled_at);

-- The hash-chained audit log; seq is 1, 2, 3, ... with no gaps.
CREATE TABLE audit (
    seq       BIGINT NOT NULL PRIMARY KEY,
    logged_at BIGINT NOT NULL,
    caller    TEXT   NOT NULL,
    role      TEXT   NOT NULL,
    action    TEXT   NOT NULL,
    tenant    TEXT   NOT NULL,
    key_id    TEXT   NOT NULL,
    outcome   TEXT   NOT NULL,
    code      TEXT   NOT NULL,
    prev_hash BYTEA,
    hash      BYTEA  NOT NULL
);
