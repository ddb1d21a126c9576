package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dcaas/dcaas/internal/store"
)

// CreateInstance implements store.Instances.
func (db *DB) CreateInstance(ctx context.Context, in store.Instance) error {
	const op = "CreateInstance"
	enrolled, err := nanos("EnrolledAt", in.EnrolledAt)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	revoked, err := nullNanos("RevokedAt", in.RevokedAt)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	_, err = db.pool.Exec(ctx,
		`INSERT INTO instances (id, tenant, custodian_dn, enclave, cert_serial, wrapping_serial,
		 wrapping_kem, wrapping_public, enrolled_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		in.ID, in.Tenant, in.CustodianDN, in.Enclave, in.CertSerial, in.WrappingSerial,
		in.WrappingKEM, notNull(in.WrappingPublic), enrolled, revoked)
	return mapErr(op, err)
}

const instanceColumns = `id, tenant, custodian_dn, enclave, cert_serial, wrapping_serial,
	wrapping_kem, wrapping_public, enrolled_at, revoked_at`

func scanInstance(row pgx.Row) (store.Instance, error) {
	var in store.Instance
	var enrolled int64
	var revoked *int64
	err := row.Scan(&in.ID, &in.Tenant, &in.CustodianDN, &in.Enclave, &in.CertSerial,
		&in.WrappingSerial, &in.WrappingKEM, &in.WrappingPublic, &enrolled, &revoked)
	if err != nil {
		return store.Instance{}, err
	}
	in.WrappingPublic = nilIfEmpty(in.WrappingPublic)
	in.EnrolledAt = fromNanos(enrolled)
	in.RevokedAt = fromNullNanos(revoked)
	return in, nil
}

// GetInstance implements store.Instances.
func (db *DB) GetInstance(ctx context.Context, id string) (store.Instance, error) {
	in, err := scanInstance(db.pool.QueryRow(ctx,
		`SELECT `+instanceColumns+` FROM instances WHERE id = $1`, id))
	if err != nil {
		return store.Instance{}, mapErr("GetInstance", err)
	}
	return in, nil
}

// ListInstances implements store.Instances. Instances enrolled at the same
// time are ordered by id, byte by byte (COLLATE "C", as SQLite compares),
// whatever the database's collation. The caller owns the returned slice.
func (db *DB) ListInstances(ctx context.Context, tenant, custodianDN string) ([]store.Instance, error) {
	const op = "ListInstances"
	var where []string
	var args []any
	if tenant != "" {
		args = append(args, tenant)
		where = append(where, "tenant = $"+strconv.Itoa(len(args)))
	}
	if custodianDN != "" {
		args = append(args, custodianDN)
		where = append(where, "custodian_dn = $"+strconv.Itoa(len(args)))
	}
	q := `SELECT ` + instanceColumns + ` FROM instances`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY enrolled_at, id COLLATE "C"`
	rows, err := db.pool.Query(ctx, q, args...)
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
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	return db.tx(ctx, op, func(tx pgx.Tx) error {
		var tenant string
		err := tx.QueryRow(ctx,
			`UPDATE instances SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL RETURNING tenant`,
			n, id).Scan(&tenant)
		if errors.Is(err, pgx.ErrNoRows) {
			// Nothing changed: revoked before (no new event), or unknown.
			var one int
			return tx.QueryRow(ctx, `SELECT 1 FROM instances WHERE id = $1`, id).Scan(&one)
		}
		if err != nil {
			return err
		}
		return appendRevocation(ctx, tx, tenant, store.RevocationInstance, id, n)
	})
}
