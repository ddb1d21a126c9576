package sqlite

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
func (db *DB) CreateInstance(ctx context.Context, in store.Instance) error {
	const op = "CreateInstance"
	enrolled, err := nanos("EnrolledAt", in.EnrolledAt)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	revoked, err := nullNanos("RevokedAt", in.RevokedAt)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	_, err = db.w.ExecContext(ctx,
		`INSERT INTO instances (id, tenant, custodian_dn, enclave, cert_serial, wrapping_serial,
		 wrapping_kem, wrapping_public, enrolled_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		in.ID, in.Tenant, in.CustodianDN, in.Enclave, in.CertSerial, in.WrappingSerial,
		in.WrappingKEM, notNull(in.WrappingPublic), enrolled, revoked)
	return mapErr(op, err)
}

const instanceColumns = `id, tenant, custodian_dn, enclave, cert_serial, wrapping_serial,
	wrapping_kem, wrapping_public, enrolled_at, revoked_at`

func scanInstance(row interface{ Scan(...any) error }) (store.Instance, error) {
	var in store.Instance
	var enrolled int64
	var revoked sql.NullInt64
	err := row.Scan(&in.ID, &in.Tenant, &in.CustodianDN, &in.Enclave, &in.CertSerial,
		&in.WrappingSerial, &in.WrappingKEM, &in.WrappingPublic, &enrolled, &revoked)
	if err != nil {
		return store.Instance{}, err
	}
	in.EnrolledAt = fromNanos(enrolled)
	in.RevokedAt = fromNullNanos(revoked)
	return in, nil
}

// GetInstance implements store.Instances.
func (db *DB) GetInstance(ctx context.Context, id string) (store.Instance, error) {
	in, err := scanInstance(db.r.QueryRowContext(ctx,
		`SELECT `+instanceColumns+` FROM instances WHERE id = ?`, id))
	if err != nil {
		return store.Instance{}, mapErr("GetInstance", err)
	}
	return in, nil
}

// ListInstances implements store.Instances. Instances enrolled at the same
// time are ordered by id. The caller owns the returned slice.
func (db *DB) ListInstances(ctx context.Context, tenant, custodianDN string) ([]store.Instance, error) {
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
	q := `SELECT ` + instanceColumns + ` FROM instances`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY enrolled_at, id`
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, mapErr(op, err)
	}
	defer rows.Close()
	var list []store.Instance
	for rows.Next() {
		in, err := scanInstance(rows)
		if err != nil {
			return nil, mapErr(op, err)
		}
		list = append(list, in)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(op, err)
	}
	return list, nil
}

// RevokeInstance implements store.Instances. The event carries the
// instance's tenant, its id as Subject, and at. An instance created with
// RevokedAt set counts as revoked before: RevokeInstance appends no event
// for it.
func (db *DB) RevokeInstance(ctx context.Context, id string, at time.Time) error {
	const op = "RevokeInstance"
	n, err := nanos("at", at)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	return db.write(ctx, op, func(tx *sql.Tx) error {
		var tenant string
		err := tx.QueryRowContext(ctx,
			`UPDATE instances SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING tenant`,
			n, id).Scan(&tenant)
		if errors.Is(err, sql.ErrNoRows) {
			// Nothing changed: revoked before (no new event), or unknown.
			var one int
			return tx.QueryRowContext(ctx, `SELECT 1 FROM instances WHERE id = ?`, id).Scan(&one)
		}
		if err != nil {
			return err
		}
		return appendRevocation(ctx, tx, tenant, store.RevocationInstance, id, n)
	})
}
