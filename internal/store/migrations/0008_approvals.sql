-- 0008: quorum approvals (issue 16 item 2).
--
-- approval_policies: one row per tenant that ever set a quorum; approvers
-- is a JSON array of admin DNs; version grows by one per change (a change
-- is stored only over the version it was made from).
-- approvals: one request for the approval of an action with exact
-- parameters (params, canonical JSON; params_hash its SHA-256 with the
-- action, tenant and key). state: pending, executed, denied, cancelled;
-- it leaves pending once, by a conditional UPDATE.
-- approval_votes: one row per approver and request.
CREATE TABLE approval_policies (
    tenant     TEXT   NOT NULL PRIMARY KEY,
    quorum     BIGINT NOT NULL,
    approvers  TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE approvals (
    id          TEXT   NOT NULL PRIMARY KEY,
    tenant      TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    key_id      TEXT   NOT NULL,
    params      BYTEA,
    params_hash BYTEA  NOT NULL,
    requester   TEXT   NOT NULL,
    state       TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    closed_at   BIGINT,
    closed_by   TEXT
);
CREATE INDEX approvals_tenant ON approvals (tenant, created_at);
CREATE TABLE approval_votes (
    approval_id TEXT   NOT NULL,
    approver    TEXT   NOT NULL,
    voted_at    BIGINT NOT NULL,
    PRIMARY KEY (approval_id, approver)
);
