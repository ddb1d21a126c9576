-- 0006: KMS replica leases and the seal migration lock (store.Leases).
--
-- kms_leases: one row per running KMS replica, renewed while it runs,
-- deleted at a clean stop or, once expired, by a seal migration.
-- seal_migration: at most one row (id 1), held by `dcaas seal migrate`
-- from before it reads anything until it has finished; a KMS does not
-- start while it exists.
CREATE TABLE kms_leases (
    replica   TEXT   NOT NULL PRIMARY KEY,
    host      TEXT   NOT NULL,
    pid       BIGINT NOT NULL,
    heartbeat BIGINT NOT NULL,
    expires   BIGINT NOT NULL
);
CREATE TABLE seal_migration (
    id        BIGINT NOT NULL PRIMARY KEY,
    holder    TEXT   NOT NULL,
    host      TEXT   NOT NULL,
    pid       BIGINT NOT NULL,
    seal_from TEXT   NOT NULL,
    seal_to   TEXT   NOT NULL,
    started   BIGINT NOT NULL
);
