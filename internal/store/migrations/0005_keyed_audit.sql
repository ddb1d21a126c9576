-- 0005: the keyed audit log (internal/audit, docs/formats.md).
--
-- Portable subset, as in 0001. ADD COLUMN without DEFAULT: records written
-- before it read NULL, the unkeyed records of the legacy chain.
--
-- audit.sig is the Ed25519 signature of the record by the KMS's audit key
-- (sealed under the root key in settings "audit-key").
-- audit_checkpoints holds signed checkpoints: the audit key's signature
-- over (seq, the hash of record seq, made_at). One per seq, the first made;
-- seq 0 is the empty log, whose hash is 32 zero bytes.
ALTER TABLE audit ADD COLUMN sig BYTEA;
CREATE TABLE audit_checkpoints (
    seq     BIGINT NOT NULL PRIMARY KEY,
    made_at BIGINT NOT NULL,
    hash    BYTEA  NOT NULL,
    sig     BYTEA  NOT NULL
);
