package sqlstore

import (
	"context"
	"database/sql"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// PutCert implements store.Certs.
func (q *queries) PutCert(ctx context.Context, c store.Cert) error {
	const op = "PutCert"
	notAfter, revoked, err := certTimes(c)
	if err != nil {
		return q.mapErr(op, err)
	}
	_, err = q.exec(ctx, op, insertCert, c.Serial, c.Kind, c.Tenant, c.Subject, notAfter, revoked)
	return err
}

const insertCert = `INSERT INTO certs (serial, kind, tenant, subject, not_after, revoked_at) VALUES (?, ?, ?, ?, ?, ?)`

// certTimes returns c's times as stored.
func certTimes(c store.Cert) (notAfter int64, revoked sql.NullInt64, err error) {
	var ts times
	notAfter = ts.at("NotAfter", c.NotAfter)
	revoked = ts.opt("RevokedAt", c.RevokedAt)
	return notAfter, revoked, ts.err
}

// putCerts stores certs inside the write transaction c runs in.
func putCerts(ctx context.Context, c conn, certs []store.Cert) error {
	for _, cert := range certs {
		notAfter, revoked, err := certTimes(cert)
		if err != nil {
			return err
		}
		if _, err := c.exec(ctx, insertCert,
			cert.Serial, cert.Kind, cert.Tenant, cert.Subject, notAfter, revoked); err != nil {
			return err
		}
	}
	return nil
}

// GetCert implements store.Certs.
func (q *queries) GetCert(ctx context.Context, serial string) (store.Cert, error) {
	c := store.Cert{Serial: serial}
	var notAfter int64
	var revoked sql.NullInt64
	err := q.read().queryRow(ctx,
		`SELECT kind, tenant, subject, not_after, revoked_at FROM certs WHERE serial = ?`, serial).
		Scan(&c.Kind, &c.Tenant, &c.Subject, &notAfter, &revoked)
	if err != nil {
		return store.Cert{}, q.mapErr("GetCert", err)
	}
	c.NotAfter = fromNanos(notAfter)
	c.RevokedAt = fromNullNanos(revoked)
	return c, nil
}

// GetCertIdentity implements store.Certs.
func (q *queries) GetCertIdentity(ctx context.Context, serial string) (store.Cert, *store.App, error) {
	c := store.Cert{Serial: serial}
	var notAfter int64
	var revoked, appCreated sql.NullInt64
	var appName, appRole, appDN sql.NullString
	err := q.read().queryRow(ctx,
		`SELECT c.kind, c.tenant, c.subject, c.not_after, c.revoked_at, a.name, a.role, a.dn, a.created_at
		 FROM certs c LEFT JOIN apps a ON c.kind = ? AND a.tenant = c.tenant AND a.name = c.subject
		 WHERE c.serial = ?`, store.CertApp, serial).
		Scan(&c.Kind, &c.Tenant, &c.Subject, &notAfter, &revoked, &appName, &appRole, &appDN, &appCreated)
	if err != nil {
		return store.Cert{}, nil, q.mapErr("GetCertIdentity", err)
	}
	c.NotAfter = fromNanos(notAfter)
	c.RevokedAt = fromNullNanos(revoked)
	if !appName.Valid {
		return c, nil, nil
	}
	return c, &store.App{Tenant: c.Tenant, Name: appName.String, Role: appRole.String, DN: appDN.String, CreatedAt: fromNanos(appCreated.Int64)}, nil
}

// RevokeCertsOf implements store.Certs. Certificates revoked before keep
// their first revocation time; no matching certificate is not an error.
func (q *queries) RevokeCertsOf(ctx context.Context, kind, subject string, at time.Time) error {
	const op = "RevokeCertsOf"
	n, err := nanos("at", at)
	if err != nil {
		return q.mapErr(op, err)
	}
	_, err = q.exec(ctx, op,
		`UPDATE certs SET revoked_at = ? WHERE kind = ? AND subject = ? AND revoked_at IS NULL`,
		n, kind, subject)
	return err
}

// RevokeCert implements store.Certs. A certificate revoked before keeps
// its first revocation time; an unknown serial is store.ErrNotFound.
func (q *queries) RevokeCert(ctx context.Context, serial string, at time.Time) error {
	const op = "RevokeCert"
	n, err := nanos("at", at)
	if err != nil {
		return q.mapErr(op, err)
	}
	res, err := q.exec(ctx, op,
		`UPDATE certs SET revoked_at = COALESCE(revoked_at, ?) WHERE serial = ?`, n, serial)
	if err != nil {
		return err
	}
	if changed, err := res.RowsAffected(); err != nil {
		return q.mapErr(op, err)
	} else if changed == 0 {
		return q.mapErr(op, store.ErrNotFound)
	}
	return nil
}

// ListCerts implements store.Certs: kind's certificates of subject in
// tenant, soonest expiry first.
func (q *queries) ListCerts(ctx context.Context, kind, tenant, subject string) ([]store.Cert, error) {
	const op = "ListCerts"
	rows, err := q.read().query(ctx,
		`SELECT serial, not_after, revoked_at FROM certs WHERE kind = ? AND tenant = ? AND subject = ? ORDER BY not_after, serial`+q.d.byteOrder(),
		kind, tenant, subject)
	if err != nil {
		return nil, q.mapErr(op, err)
	}
	defer rows.Close()
	var list []store.Cert
	for rows.Next() {
		c := store.Cert{Kind: kind, Tenant: tenant, Subject: subject}
		var notAfter int64
		var revoked sql.NullInt64
		if err := rows.Scan(&c.Serial, &notAfter, &revoked); err != nil {
			return nil, q.mapErr(op, err)
		}
		c.NotAfter = fromNanos(notAfter)
		c.RevokedAt = fromNullNanos(revoked)
		list = append(list, c)
	}
	if err := rows.Err(); err != nil {
		return nil, q.mapErr(op, err)
	}
	return list, nil
}

// RevokedAppCerts implements store.Certs: one query, for every
// revocation poll.
func (q *queries) RevokedAppCerts(ctx context.Context, dn string, now time.Time) ([]string, error) {
	const op = "RevokedAppCerts"
	n, err := nanos("now", now)
	if err != nil {
		return nil, q.mapErr(op, err)
	}
	out, err := all(ctx, q, `SELECT c.serial FROM certs c JOIN apps a ON c.tenant = a.tenant AND c.subject = a.name
		WHERE a.dn = ? AND c.kind = ? AND c.revoked_at IS NOT NULL AND c.not_after > ?
		ORDER BY c.serial`+q.d.byteOrder(), []any{dn, store.CertApp, n}, func(row scanner) (string, error) {
		var s string
		return s, row.Scan(&s)
	})
	if err != nil {
		return nil, q.mapErr(op, err)
	}
	return out, nil
}
