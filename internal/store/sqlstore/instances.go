package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// CreateInstance implements store.Instances.
func (q *queries) CreateInstance(ctx context.Context, in store.Instance) error {
	const op = "CreateInstance"
	args, err := instanceArgs(in)
	if err != nil {
		return q.mapErr(op, err)
	}
	_, err = q.exec(ctx, op, insertInstance, args...)
	return err
}

const insertInstance = `INSERT INTO instances (id, tenant, custodian_dn, enclave, cert_serial, wrapping_serial,
	wrapping_kem, wrapping_public, enrolled_at, revoked_at, ak_fingerprint, ak_trust, attested_at, attestation_profiles)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// instanceArgs returns insertInstance's arguments for in.
func instanceArgs(in store.Instance) ([]any, error) {
	var ts times
	enrolled := ts.at("EnrolledAt", in.EnrolledAt)
	revoked := ts.opt("RevokedAt", in.RevokedAt)
	attested := ts.opt("AttestedAt", in.AttestedAt)
	if ts.err != nil {
		return nil, ts.err
	}
	return []any{in.ID, in.Tenant, in.CustodianDN, in.Enclave, in.CertSerial, in.WrappingSerial,
		in.WrappingKEM, notNull(in.WrappingPublic), enrolled, revoked,
		nullString(in.AKFingerprint), nullString(in.AKTrust), attested, nullString(strings.Join(in.AttestationProfiles, ","))}, nil
}

const instanceColumns = `id, tenant, custodian_dn, enclave, cert_serial, wrapping_serial,
	wrapping_kem, wrapping_public, enrolled_at, revoked_at, ak_fingerprint, ak_trust, attested_at, attestation_profiles,
	last_poll_at, keys_loaded`

func scanInstance(row scanner) (store.Instance, error) {
	var in store.Instance
	var enrolled int64
	var revoked, attested, polled, loaded sql.NullInt64
	var ak, trust, profiles sql.NullString
	err := row.Scan(&in.ID, &in.Tenant, &in.CustodianDN, &in.Enclave, &in.CertSerial,
		&in.WrappingSerial, &in.WrappingKEM, &in.WrappingPublic, &enrolled, &revoked,
		&ak, &trust, &attested, &profiles, &polled, &loaded)
	if err != nil {
		return store.Instance{}, err
	}
	in.LastPollAt = fromNullNanos(polled)
	if loaded.Valid {
		n := int(loaded.Int64)
		in.KeysLoaded = &n
	}
	in.AKFingerprint, in.AKTrust = ak.String, trust.String
	in.AttestedAt = fromNullNanos(attested)
	if profiles.String != "" {
		in.AttestationProfiles = strings.Split(profiles.String, ",")
	}
	in.WrappingPublic = nilIfEmpty(in.WrappingPublic)
	in.EnrolledAt = fromNanos(enrolled)
	in.RevokedAt = fromNullNanos(revoked)
	return in, nil
}

// GetInstance implements store.Instances.
func (q *queries) GetInstance(ctx context.Context, id string) (store.Instance, error) {
	in, err := scanInstance(q.read().queryRow(ctx,
		`SELECT `+instanceColumns+` FROM instances WHERE id = ?`, id))
	if err != nil {
		return store.Instance{}, q.mapErr("GetInstance", err)
	}
	return in, nil
}

// ListInstances implements store.Instances. Instances enrolled at the same
// time are ordered by id, byte by byte, whatever the database's collation.
// The caller owns the returned slice.
func (q *queries) ListInstances(ctx context.Context, tenant, custodianDN string) ([]store.Instance, error) {
	const op = "ListInstances"
	var where []string
	var args []any
	if tenant != "" {
		where = append(where, "tenant = ?")
		args = append(args, tenant)
	}
	if custodianDN != "" {
		where = append(where, "custodian_dn = ?")
		args = append(args, custodianDN)
	}
	query := `SELECT ` + instanceColumns + ` FROM instances`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY enrolled_at, id` + q.d.byteOrder()
	list, err := all(ctx, q, query, args, scanInstance)
	if err != nil {
		return nil, q.mapErr(op, err)
	}
	return list, nil
}

// EnrollInstance implements store.Instances. The token is consumed by
// ConsumeOneTime's conditional UPDATE, inside the transaction that
// registers the instance: racing enrollments are serialized on the token's
// row and exactly one commits.
func (q *queries) EnrollInstance(ctx context.Context, tokenKind string, tokenHash []byte, in store.Instance, certs []store.Cert) error {
	const op = "EnrollInstance"
	args, err := instanceArgs(in)
	if err != nil {
		return q.mapErr(op, err)
	}
	enrolled := in.EnrolledAt.UnixNano() // instanceArgs checked the range
	return q.write(ctx, op, func(c conn) error {
		if len(tokenHash) > 0 {
			n, err := c.changed(ctx, consume, enrolled, tokenHash, tokenKind, enrolled)
			if err != nil {
				return err
			}
			if n != 1 {
				return whyNotConsumed(ctx, c, tokenKind, tokenHash, enrolled)
			}
		}
		if err := putCerts(ctx, c, certs); err != nil {
			return err
		}
		_, err := c.exec(ctx, insertInstance, args...)
		return err
	})
}

// RenewInstance implements store.Instances. The instance's row stays
// locked until the commit (FOR UPDATE on PostgreSQL), so a renewal and a
// revocation of one instance are serialized.
func (q *queries) RenewInstance(ctx context.Context, id, certSerial, wrappingSerial string, certs []store.Cert) error {
	return q.write(ctx, "RenewInstance", func(c conn) error {
		if err := instanceRevoked.lockOpen(ctx, c, id); err != nil {
			return err
		}
		if err := putCerts(ctx, c, certs); err != nil {
			return err
		}
		_, err := c.exec(ctx,
			`UPDATE instances SET cert_serial = ?, wrapping_serial = ? WHERE id = ?`, certSerial, wrappingSerial, id)
		return err
	})
}

// RevokeInstance implements store.Instances. The event carries the
// instance's tenant, its id as Subject, and at. An instance created with
// RevokedAt set counts as revoked before: RevokeInstance appends no event
// for it.
func (q *queries) RevokeInstance(ctx context.Context, id string, at time.Time) error {
	const op = "RevokeInstance"
	n, err := nanos("at", at)
	if err != nil {
		return q.mapErr(op, err)
	}
	return q.write(ctx, op, func(c conn) error {
		return revokeOnce(ctx, c, `instances`, `id`, `revoked_at`, id, n, store.RevocationInstance)
	})
}

// RecordAttestation implements store.Instances. Like RenewInstance it
// locks the instance's row, so it is serialized with a revocation.
func (q *queries) RecordAttestation(ctx context.Context, id string, at time.Time, profiles []string) error {
	const op = "RecordAttestation"
	n, err := nanos("at", at)
	if err != nil {
		return q.mapErr(op, err)
	}
	for _, p := range profiles {
		if p == "" || strings.Contains(p, ",") {
			return fmt.Errorf("sqlstore: %s: attestation profile %q cannot be stored (empty or with a comma)", op, p)
		}
	}
	return q.write(ctx, op, func(c conn) error {
		if err := instanceRevoked.lockOpen(ctx, c, id); err != nil {
			return err
		}
		_, err := c.exec(ctx, `UPDATE instances SET attested_at = ?, attestation_profiles = ? WHERE id = ?`,
			n, nullString(strings.Join(profiles, ",")), id)
		return err
	})
}

// NotePoll implements store.Instances.
func (q *queries) NotePoll(ctx context.Context, id string, at time.Time, keysLoaded int) error {
	const op = "NotePoll"
	n, err := nanos("at", at)
	if err != nil {
		return q.mapErr(op, err)
	}
	return q.write(ctx, op, func(c conn) error {
		var res sql.Result
		var err error
		const newer = ` AND (last_poll_at IS NULL OR last_poll_at <= ?)`
		if keysLoaded < 0 {
			res, err = c.exec(ctx, `UPDATE instances SET last_poll_at = ? WHERE id = ?`+newer, n, id, n)
		} else {
			res, err = c.exec(ctx, `UPDATE instances SET last_poll_at = ?, keys_loaded = ? WHERE id = ?`+newer, n, keysLoaded, id, n)
		}
		if err != nil {
			return err
		}
		if rows, err := res.RowsAffected(); err != nil || rows > 0 {
			return err
		}
		// Nothing changed: an older poll than the one recorded, or no
		// such instance.
		var one int
		err = c.queryRow(ctx, `SELECT 1 FROM instances WHERE id = ?`, id).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		return err
	})
}

// DeleteLapsedInstances implements store.Instances, in one transaction.
func (q *queries) DeleteLapsedInstances(ctx context.Context, before time.Time, limit int) ([]store.Instance, error) {
	const op = "DeleteLapsedInstances"
	n, err := nanos("before", before)
	if err != nil {
		return nil, q.mapErr(op, err)
	}
	var gone []store.Instance
	err = q.write(ctx, op, func(c conn) error {
		gone = nil
		rows, err := c.query(ctx, `SELECT `+instanceColumns+` FROM instances
			WHERE cert_serial IN (SELECT serial FROM certs WHERE not_after < ?)
			ORDER BY id LIMIT ?`+q.d.forUpdate(), n, int64(limit))
		if err != nil {
			return err
		}
		for rows.Next() {
			in, err := scanInstance(rows)
			if err != nil {
				rows.Close()
				return err
			}
			gone = append(gone, in)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		for _, in := range gone {
			if _, err := c.exec(ctx, `DELETE FROM releases WHERE instance_id = ?`, in.ID); err != nil {
				return err
			}
			if _, err := c.exec(ctx, `DELETE FROM certs WHERE kind IN (?, ?) AND subject = ?`, store.CertInstance, store.CertWrapping, in.ID); err != nil {
				return err
			}
			if _, err := c.exec(ctx, `DELETE FROM instances WHERE id = ?`, in.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, q.mapErr(op, err)
	}
	return gone, nil
}
