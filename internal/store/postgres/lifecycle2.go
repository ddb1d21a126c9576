package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dcaas/dcaas/internal/store"
)

// PeekOneTime implements store.OneTime.
func (db *DB) PeekOneTime(ctx context.Context, kind string, hash []byte, now time.Time) (store.OneTimeSecret, error) {
	const op = "PeekOneTime"
	n, err := nanos("now", now)
	if err != nil {
		return store.OneTimeSecret{}, fmt.Errorf("postgres: %s: %w", op, err)
	}
	if len(hash) == 0 {
		return store.OneTimeSecret{}, fmt.Errorf("postgres: %s: empty hash: %w", op, store.ErrNotFound)
	}
	var s store.OneTimeSecret
	var created, expires int64
	var used *int64
	err = db.pool.QueryRow(ctx,
		`SELECT hash, kind, tenant, subject, payload, created_by, created_at, expires_at, used_at
		 FROM one_time WHERE hash = $1 AND kind = $2`, hash, kind).
		Scan(&s.Hash, &s.Kind, &s.Tenant, &s.Subject, &s.Payload, &s.CreatedBy, &created, &expires, &used)
	switch {
	case err != nil:
		return store.OneTimeSecret{}, mapErr(op, err)
	case used != nil:
		return store.OneTimeSecret{}, fmt.Errorf("postgres: %s: %w", op, store.ErrUsed)
	case expires <= n:
		return store.OneTimeSecret{}, fmt.Errorf("postgres: %s: %w", op, store.ErrExpired)
	}
	s.Payload = nilIfEmpty(s.Payload)
	s.CreatedAt = fromNanos(created)
	s.ExpiresAt = fromNanos(expires)
	return s, nil
}

// EnrollInstance implements store.Instances. The token is consumed by the
// same conditional UPDATE as ConsumeOneTime's, inside the transaction that
// registers the instance: racing enrollments queue on the token's row lock
// and exactly one commits.
func (db *DB) EnrollInstance(ctx context.Context, tokenKind string, tokenHash []byte, in store.Instance, certs []store.Cert) error {
	const op = "EnrollInstance"
	enrolled, err := nanos("EnrolledAt", in.EnrolledAt)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	revoked, err := nullNanos("RevokedAt", in.RevokedAt)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	var notConsumed bool
	err = db.tx(ctx, op, func(tx pgx.Tx) error {
		if len(tokenHash) > 0 {
			tag, err := tx.Exec(ctx,
				`UPDATE one_time SET used_at = $1
				 WHERE hash = $2 AND kind = $3 AND used_at IS NULL AND expires_at > $1`,
				enrolled, tokenHash, tokenKind)
			if err != nil {
				return err
			}
			if tag.RowsAffected() != 1 {
				notConsumed = true
				return errNotConsumed
			}
		}
		if err := putCerts(ctx, tx, certs); err != nil {
			return err
		}
		_, err := tx.Exec(ctx,
			`INSERT INTO instances (id, tenant, custodian_dn, enclave, cert_serial, wrapping_serial,
			 wrapping_kem, wrapping_public, enrolled_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			in.ID, in.Tenant, in.CustodianDN, in.Enclave, in.CertSerial, in.WrappingSerial,
			in.WrappingKEM, notNull(in.WrappingPublic), enrolled, revoked)
		return err
	})
	if notConsumed {
		return mapErr(op, db.whyNotConsumed(ctx, tokenKind, tokenHash, enrolled))
	}
	return err
}

var errNotConsumed = errors.New("postgres: one-time secret not consumed")

func putCerts(ctx context.Context, tx pgx.Tx, certs []store.Cert) error {
	for _, c := range certs {
		notAfter, err := nanos("NotAfter", c.NotAfter)
		if err != nil {
			return err
		}
		revoked, err := nullNanos("RevokedAt", c.RevokedAt)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx,
			`INSERT INTO certs (serial, kind, tenant, subject, not_after, revoked_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			c.Serial, c.Kind, c.Tenant, c.Subject, notAfter, revoked); err != nil {
			return err
		}
	}
	return nil
}

// RenewInstance implements store.Instances. The instance's row is locked,
// so a renewal and a revocation of one instance are serialized.
func (db *DB) RenewInstance(ctx context.Context, id, certSerial, wrappingSerial string, certs []store.Cert) error {
	return db.tx(ctx, "RenewInstance", func(tx pgx.Tx) error {
		var revoked *int64
		if err := tx.QueryRow(ctx, `SELECT revoked_at FROM instances WHERE id = $1 FOR UPDATE`, id).Scan(&revoked); err != nil {
			return err
		}
		if revoked != nil {
			return fmt.Errorf("instance %s is revoked: %w", id, store.ErrConflict)
		}
		if err := putCerts(ctx, tx, certs); err != nil {
			return err
		}
		_, err := tx.Exec(ctx,
			`UPDATE instances SET cert_serial = $1, wrapping_serial = $2 WHERE id = $3`, certSerial, wrappingSerial, id)
		return err
	})
}

// RecordReleases implements store.Releases.
func (db *DB) RecordReleases(ctx context.Context, instanceID string, refs []store.KeyRef, at time.Time) error {
	const op = "RecordReleases"
	n, err := nanos("at", at)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	if len(refs) == 0 {
		return nil
	}
	ids := make([]string, len(refs))
	vers := make([]int64, len(refs))
	for i, r := range refs {
		ids[i], vers[i] = r.KeyID, int64(r.Version)
	}
	_, err = db.pool.Exec(ctx,
		`INSERT INTO releases (instance_id, key_id, version, released_at)
		 SELECT $1, k, v, $4 FROM unnest($2::text[], $3::bigint[]) AS t(k, v)
		 ON CONFLICT (instance_id, key_id, version) DO NOTHING`, instanceID, ids, vers, n)
	return mapErr(op, err)
}

// ReleasedVersions implements store.Releases.
func (db *DB) ReleasedVersions(ctx context.Context, instanceID string, keyIDs []string) (map[string]int, error) {
	const op = "ReleasedVersions"
	out := map[string]int{}
	if len(keyIDs) == 0 {
		return out, nil
	}
	rows, err := db.pool.Query(ctx,
		`SELECT key_id, MAX(version) FROM releases WHERE instance_id = $1 AND key_id = ANY($2) GROUP BY key_id`,
		instanceID, keyIDs)
	if err != nil {
		return nil, mapErr(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var v int64
		if err := rows.Scan(&id, &v); err != nil {
			return nil, mapErr(op, err)
		}
		out[id] = int(v)
	}
	return out, mapErr(op, rows.Err())
}

// KeysDueForRotation implements store.Keys.
func (db *DB) KeysDueForRotation(ctx context.Context, now time.Time, countedType string, minEncryptions int64, limit int) ([]store.Key, error) {
	const op = "KeysDueForRotation"
	n, err := nanos("now", now)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", op, err)
	}
	if limit < 1 {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx,
		`SELECT k.key_id FROM keys k JOIN key_versions v ON v.key_id = k.key_id AND v.version = k.current_version
		 WHERE k.disabled_at IS NULL AND v.ekb IS NOT NULL AND length(v.ekb) > 0
		   AND ((COALESCE(k.rotation_period, 0) > 0 AND v.created_at + k.rotation_period <= $1)
		     OR (k.key_type = $2 AND COALESCE(v.encryptions, 0) >= $3))
		 ORDER BY k.key_id LIMIT $4`, n, countedType, minEncryptions, limit)
	if err != nil {
		return nil, mapErr(op, err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, mapErr(op, err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, mapErr(op, err)
	}
	out := make([]store.Key, 0, len(ids))
	for _, id := range ids {
		k, err := db.GetKey(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// rotatedSubject is the subject of a RevocationKeyRotated event.
func rotatedSubject(keyID string, version int) string {
	return keyID + ":" + strconv.Itoa(version)
}
