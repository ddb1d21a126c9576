package sqlstore

import (
	"context"
	"database/sql"

	"github.com/dcaas/dcaas/internal/store"
)

// ListTenants implements store.Listing.
func (q *queries) ListTenants(ctx context.Context) ([]store.Tenant, error) {
	var out []store.Tenant
	err := q.each(ctx, `SELECT name, master_key_version, sealed_hmac_key, created_at FROM tenants ORDER BY name`+q.d.byteOrder(), nil,
		func(rows *sql.Rows) error {
			var t store.Tenant
			var created int64
			if err := rows.Scan(&t.Name, &t.MasterKeyVersion, &t.SealedHMACKey, &created); err != nil {
				return err
			}
			t.SealedHMACKey = nilIfEmpty(t.SealedHMACKey)
			t.CreatedAt = fromNanos(created)
			out = append(out, t)
			return nil
		})
	if err != nil {
		return nil, q.mapErr("ListTenants", err)
	}
	return out, nil
}

// ListApps implements store.Listing.
func (q *queries) ListApps(ctx context.Context, tenant string) ([]store.App, error) {
	out, err := all(ctx, q, `SELECT `+appColumns+` FROM apps WHERE tenant = ? ORDER BY name`+q.d.byteOrder(), []any{tenant}, scanApp)
	if err != nil {
		return nil, q.mapErr("ListApps", err)
	}
	return out, nil
}

// ListKeys implements store.Listing.
func (q *queries) ListKeys(ctx context.Context, tenant string) ([]store.Key, error) {
	var out []store.Key
	err := q.each(ctx, `SELECT `+keyColumns+` FROM keys WHERE tenant = ? ORDER BY key_id`+q.d.byteOrder(), []any{tenant},
		func(rows *sql.Rows) error {
			k, err := scanKey(rows)
			if err == nil {
				out = append(out, k)
			}
			return err
		})
	if err != nil {
		return nil, q.mapErr("ListKeys", err)
	}
	return out, nil
}

// FleetDetails implements store.Listing.
func (q *queries) FleetDetails(ctx context.Context, tenant string) (map[string]store.FleetDetail, error) {
	out := map[string]store.FleetDetail{}
	err := q.each(ctx,
		`SELECT i.id, (SELECT COUNT(DISTINCT r.key_id) FROM releases r WHERE r.instance_id = i.id), c.not_after
		 FROM instances i LEFT JOIN certs c ON c.serial = i.cert_serial
		 WHERE i.tenant = ?`, []any{tenant},
		func(rows *sql.Rows) error {
			var id string
			var d store.FleetDetail
			var notAfter sql.NullInt64
			if err := rows.Scan(&id, &d.KeysReleased, &notAfter); err != nil {
				return err
			}
			if notAfter.Valid {
				d.CertNotAfter = fromNanos(notAfter.Int64)
			}
			out[id] = d
			return nil
		})
	if err != nil {
		return nil, q.mapErr("FleetDetails", err)
	}
	return out, nil
}
