-- 0003: key lifecycle and usage limits.
--
-- Portable subset, as in 0001: these statements run unchanged on SQLite and
-- PostgreSQL. ADD COLUMN without DEFAULT: rows that existed before read
-- NULL, which the stores read as 0 (no minimum decryption version, no
-- rotation period, nothing counted yet).
--
-- keys.min_decryption_version retires every version below it; raising it
-- appends a key_version event to the revocation feed in the same
-- transaction (subject "<key id>:<version>").
-- keys.rotation_period is BIGINT nanoseconds (0 or NULL: none).
-- key_versions.encryptions and key_versions.bytes are running totals of
-- what the version encrypted: central operations and sidecar reports.
ALTER TABLE keys ADD COLUMN min_decryption_version BIGINT;
ALTER TABLE keys ADD COLUMN rotation_period BIGINT;
ALTER TABLE key_versions ADD COLUMN encryptions BIGINT;
ALTER TABLE key_versions ADD COLUMN bytes BIGINT;
