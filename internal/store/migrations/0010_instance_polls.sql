-- 0010: what a sidecar said at its last revocation poll (issue 17): when
-- it polled and how many keys it held, for the fleet view. Nullable: an
-- instance that never polled (or polled before this) has NULL in both.
ALTER TABLE instances ADD COLUMN last_poll_at BIGINT;
ALTER TABLE instances ADD COLUMN keys_loaded BIGINT;
