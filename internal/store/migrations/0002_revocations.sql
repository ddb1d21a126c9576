-- 0002: the revocation feed sidecars poll.
--
-- Portable subset, as in 0001: these statements run unchanged on SQLite and
-- PostgreSQL.
--
-- One row per revocation event (a key disabled, an instance revoked),
-- appended in the same transaction that changes the key or instance row.
-- seq numbers the events of every tenant together: 1, 2, 3, ... with no
-- gaps, in commit order, so a sidecar that has read every event up to seq N
-- only ever needs the events after N. There is no AUTOINCREMENT or SERIAL
-- (a sequence leaves gaps on rollback and hands out numbers out of commit
-- order): the writing transaction assigns COALESCE(MAX(seq), 0) + 1 itself.
--
-- That is only safe while writers of this table are serialized until they
-- commit. SQLite does that: every write transaction starts with BEGIN
-- IMMEDIATE. PostgreSQL does not: under READ COMMITTED two transactions read
-- the same MAX(seq), and one fails on the primary key or, worse, a higher
-- seq commits before a lower one and a polling sidecar skips the lower one
-- for good. The PostgreSQL store must take a lock that is held until commit
-- before reading MAX(seq), e.g. pg_advisory_xact_lock on a fixed key, or
-- SELECT ... FOR UPDATE on a counter row, so appends stay gap-free and
-- ordered.
--
-- at is the revocation time the caller gave, BIGINT Unix nanoseconds.
CREATE TABLE revocations (
    seq     BIGINT NOT NULL PRIMARY KEY,
    tenant  TEXT   NOT NULL,
    kind    TEXT   NOT NULL,
    subject TEXT   NOT NULL,
    at      BIGINT NOT NULL
);
CREATE INDEX revocations_tenant_seq ON revocations (tenant, seq);
