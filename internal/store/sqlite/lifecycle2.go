package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// PeekOneTime implements store.OneTime.
func (db *DB) PeekOneTime(ctx context.Context, kind string, hash []byte, now time.Time) (store.OneTimeSecret, error) {
	const op = "PeekOneTime"
	n, err := nanos("now", now)
	if err != nil {
		return store.OneTimeSecret{}, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if len(hash) == 0 {
		return store.OneTimeSecret{}, fmt.Errorf("sqlite: %s: empty hash: %w", op, store.ErrNotFound)
	}
	var s store.OneTimeSecret
	var created, expires int64
	var used sql.NullInt64
	err = db.r.QueryRowContext(ctx,
		`SELECT hash, kind, tenant, subject, payload, created_by, created_at, expires_at, used_at
		 FROM one_time WHERE hash = ? AND kind = ?`, hash, kind).
		Scan(&s.Hash, &s.Kind, &s.Tenant, &s.Subject, &s.Payload, &s.CreatedBy, &created, &expires, &used)
	switch {
	case err != nil:
		return store.OneTimeSecret{}, mapErr(op, err)
	case used.Valid:
		return store.OneTimeSecret{}, fmt.Errorf("sqlite: %s: %w", op, store.ErrUsed)
	case expires <= n:
		return store.OneTimeSecret{}, fmt.Errorf("sqlite: %s: %w", op, store.ErrExpired)
	}
	s.CreatedAt = fromNanos(created)
	s.ExpiresAt = fromNanos(expires)
	return s, nil
}

// EnrollInstance implements store.Instances.
func (db *DB) EnrollInstance(ctx context.Context, tokenKind string, tokenHash []byte, in store.Instance, certs []store.Cert) error {
	const op = "EnrollInstance"
	enrolled, err := nanos("EnrolledAt", in.EnrolledAt)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	revoked, err := nullNanos("RevokedAt", in.RevokedAt)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	return db.write(ctx, op, func(tx *sql.Tx) error {
		if len(tokenHash) > 0 {
			res, err := tx.ExecContext(ctx,
				`UPDATE one_time SET used_at = ?
				 WHERE hash = ? AND kind = ? AND used_at IS NULL AND expires_at > ?`,
				enrolled, tokenHash, tokenKind, enrolled)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n != 1 {
				if err != nil {
					return err
				}
				return whyNotConsumed(ctx, tx, tokenKind, tokenHash, enrolled)
			}
		}
		if err := putCerts(ctx, tx, certs); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO instances (id, tenant, custodian_dn, enclave, cert_serial, wrapping_serial,
			 wrapping_kem, wrapping_public, enrolled_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			in.ID, in.Tenant, in.CustodianDN, in.Enclave, in.CertSerial, in.WrappingSerial,
			in.WrappingKEM, notNull(in.WrappingPublic), enrolled, revoked)
		return err
	})
}

func putCerts(ctx context.Context, tx *sql.Tx, certs []store.Cert) error {
	for _, c := range certs {
		notAfter, err := nanos("NotAfter", c.NotAfter)
		if err != nil {
			return err
		}
		revoked, err := nullNanos("RevokedAt", c.RevokedAt)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO certs (serial, kind, tenant, subject, not_after, revoked_at) VALUES (?, ?, ?, ?, ?, ?)`,
			c.Serial, c.Kind, c.Tenant, c.Subject, notAfter, revoked); err != nil {
			return err
		}
	}
	return nil
}

// RenewInstance implements store.Instances.
func (db *DB) RenewInstance(ctx context.Context, id, certSerial, wrappingSerial string, certs []store.Cert) error {
	const op = "RenewInstance"
	return db.write(ctx, op, func(tx *sql.Tx) error {
		var revoked sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT revoked_at FROM instances WHERE id = ?`, id).Scan(&revoked); err != nil {
			return err
		}
		if revoked.Valid {
			return fmt.Errorf("instance %s is revoked: %w", id, store.ErrConflict)
		}
		if err := putCerts(ctx, tx, certs); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx,
			`UPDATE instances SET cert_serial = ?, wrapping_serial = ? WHERE id = ?`, certSerial, wrappingSerial, id)
		return err
	})
}

// RecordReleases implements store.Releases.
func (db *DB) RecordReleases(ctx context.Context, instanceID string, refs []store.KeyRef, at time.Time) error {
	const op = "RecordReleases"
	n, err := nanos("at", at)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if len(refs) == 0 {
		return nil
	}
	return db.write(ctx, op, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx,
			`INSERT INTO releases (instance_id, key_id, version, released_at) VALUES (?, ?, ?, ?)
			 ON CONFLICT (instance_id, key_id, version) DO NOTHING`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, r := range refs {
			if _, err := stmt.ExecContext(ctx, instanceID, r.KeyID, r.Version, n); err != nil {
				return err
			}
		}
		return nil
	})
}

// ReleasedVersions implements store.Releases.
func (db *DB) ReleasedVersions(ctx context.Context, instanceID string, keyIDs []string) (map[string]int, error) {
	const op = "ReleasedVersions"
	out := map[string]int{}
	for lo := 0; lo < len(keyIDs); lo += 500 {
		part := keyIDs[lo:min(lo+500, len(keyIDs))]
		args := make([]any, 0, len(part)+1)
		args = append(args, instanceID)
		for _, id := range part {
			args = append(args, id)
		}
		rows, err := db.r.QueryContext(ctx,
			`SELECT key_id, MAX(version) FROM releases WHERE instance_id = ? AND key_id IN (`+
				strings.TrimSuffix(strings.Repeat("?, ", len(part)), ", ")+`) GROUP BY key_id`, args...)
		if err != nil {
			return nil, mapErr(op, err)
		}
		for rows.Next() {
			var id string
			var v int
			if err := rows.Scan(&id, &v); err != nil {
				rows.Close()
				return nil, mapErr(op, err)
			}
			out[id] = v
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, mapErr(op, err)
		}
	}
	return out, nil
}

// KeysDueForRotation implements store.Keys.
func (db *DB) KeysDueForRotation(ctx context.Context, now time.Time, countedType string, minEncryptions int64, limit int) ([]store.Key, error) {
	const op = "KeysDueForRotation"
	n, err := nanos("now", now)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if limit < 1 {
		return nil, nil
	}
	rows, err := db.r.QueryContext(ctx,
		`SELECT k.key_id FROM keys k JOIN key_versions v ON v.key_id = k.key_id AND v.version = k.current_version
		 WHERE k.disabled_at IS NULL AND v.ekb IS NOT NULL AND length(v.ekb) > 0
		   AND ((COALESCE(k.rotation_period, 0) > 0 AND v.created_at + k.rotation_period <= ?)
		     OR (k.key_type = ? AND COALESCE(v.encryptions, 0) >= ?))
		 ORDER BY k.key_id LIMIT ?`, n, countedType, minEncryptions, limit)
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
	err = rows.Err()
	rows.Close()
	if err != nil {
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
