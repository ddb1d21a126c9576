-- 0007: attestation-bound key release (issue 16, item 5).
--
-- An instance enrolled with TPM attestation records the attestation key
-- it enrolled with (hex SHA-256 of its TPMT_PUBLIC), what vouched for that
-- key ('allowlist', or 'ek:' and the manufacturer's name for an AK
-- trusted through its TPM's EK certificate), when its last quote
-- was verified (at enrollment or a re-attestation) and the attestation
-- profiles that quote satisfied (comma-separated names). A key policy's
-- release conditions are checked against them. Token-enrolled instances
-- keep NULL in all four: they are never attested. (The columns are
-- nullable because the portable subset has no DEFAULT for the rows that
-- exist already.)
ALTER TABLE instances ADD COLUMN ak_fingerprint TEXT;
ALTER TABLE instances ADD COLUMN ak_trust TEXT;
ALTER TABLE instances ADD COLUMN attested_at BIGINT;
ALTER TABLE instances ADD COLUMN attestation_profiles TEXT;
