package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// PutCert implements store.Certs.
func (db *DB) PutCert(ctx context.Context, c store.Cert) error {
	const op = "PutCert"
	notAfter, err := nanos("NotAfter", c.NotAfter)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	revoked, err := nullNanos("RevokedAt", c.RevokedAt)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	_, err = db.w.ExecContext(ctx,
		`INSERT INTO certs (serial, kind, tenant, subject, not_after, revoked_at) VALUES (?, ?, ?, ?, ?, ?)`,
		c.Serial, c.Kind, c.Tenant, c.Subject, notAfter, revoked)
	return mapErr(op, err)
}

// GetCert implements store.Certs.
func (db *DB) GetCert(ctx context.Context, serial string) (store.Cert, error) {
	c := store.Cert{Serial: serial}
	var notAfter int64
	var revoked sql.NullInt64
	err := db.r.QueryRowContext(ctx,
		`SELECT kind, tenant, subject, not_after, revoked_at FROM certs WHERE serial = ?`, serial).
		Scan(&c.Kind, &c.Tenant, &c.Subject, &notAfter, &revoked)
	if err != nil {
		return store.Cert{}, mapErr("GetCert", err)
	}
	c.NotAfter = fromNanos(notAfter)
	c.RevokedAt = fromNullNanos(revoked)
	return c, nil
}

// RevokeCertsOf implements store.Certs. Certificates revoked before keep
// their first revocation time; no matching certificate is not an error.
func (db *DB) RevokeCertsOf(ctx context.Context, kind, subject string, at time.Time) error {
	const op = "RevokeCertsOf"
	n, err := nanos("at", at)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	_, err = db.w.ExecContext(ctx,
		`UPDATE certs SET revoked_at = ? WHERE kind = ? AND subject = ? AND revoked_at IS NULL`,
		n, kind, subject)
	return mapErr(op, err)
}

// RevokeCert implements store.Certs.
func (db *DB) RevokeCert(ctx context.Context, serial string, at time.Time) error {
	const op = "RevokeCert"
	n, err := nanos("at", at)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	res, err := db.w.ExecContext(ctx,
		`UPDATE certs SET revoked_at = COALESCE(revoked_at, ?) WHERE serial = ?`, n, serial)
	if err != nil {
		return mapErr(op, err)
	}
	if changed, err := res.RowsAffected(); err != nil {
		return mapErr(op, err)
	} else if changed == 0 {
		return fmt.Errorf("sqlite: %s: %w", op, store.ErrNotFound)
	}
	return nil
}

// ListCerts implements store.Certs.
func (db *DB) ListCerts(ctx context.Context, kind, tenant, subject string) ([]store.Cert, error) {
	const op = "ListCerts"
	rows, err := db.r.QueryContext(ctx,
		`SELECT serial, not_after, revoked_at FROM certs WHERE kind = ? AND tenant = ? AND subject = ? ORDER BY not_after, serial`,
		kind, tenant, subject)
	if err != nil {
		return nil, mapErr(op, err)
	}
	defer rows.Close()
	var list []store.Cert
	for rows.Next() {
		c := store.Cert{Kind: kind, Tenant: tenant, Subject: subject}
		var notAfter int64
		var revoked sql.NullInt64
		if err := rows.Scan(&c.Serial, &notAfter, &revoked); err != nil {
			return nil, mapErr(op, err)
		}
		c.NotAfter = fromNanos(notAfter)
		c.RevokedAt = fromNullNanos(revoked)
		list = append(list, c)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(op, err)
	}
	return list, nil
}
