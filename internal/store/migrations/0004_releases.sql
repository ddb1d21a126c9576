-- 0004: what the KMS released to which sidecar instance.
--
-- Portable subset, as in 0001. One row per (instance, key, version) the KMS
-- sealed to that instance (rewrap, load, derive, refresh). A sidecar that
-- holds a version of a key is given the key's later versions without its
-- custodian (rotation delivery, POST /v1/keys/refresh).
CREATE TABLE releases (
    instance_id TEXT   NOT NULL,
    key_id      TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    released_at BIGINT NOT NULL,
    PRIMARY KEY (instance_id, key_id, version)
);
CREATE INDEX releases_key ON releases (key_id);
