-- 0007: a placeholder. Migration 7 belongs to another issue-16 change
-- (h-shamir / h-kcv), merged separately; this file only keeps the
-- numbering gap-free on this branch and is dropped when the real 0007 is
-- merged.
CREATE TABLE reserved_0007 (id BIGINT NOT NULL PRIMARY KEY);
