package sqlstore

import (
	"context"

	"github.com/dcaas/dcaas/internal/store"
)

// CreateApp implements store.Apps. It also returns store.ErrExists when
// another app has a.DN.
func (q *queries) CreateApp(ctx context.Context, a store.App) error {
	const op = "CreateApp"
	created, err := nanos("CreatedAt", a.CreatedAt)
	if err != nil {
		return q.mapErr(op, err)
	}
	_, err = q.exec(ctx, op,
		`INSERT INTO apps (tenant, name, role, dn, created_at) VALUES (?, ?, ?, ?, ?)`,
		a.Tenant, a.Name, a.Role, a.DN, created)
	return err
}

// GetApp implements store.Apps.
func (q *queries) GetApp(ctx context.Context, tenant, name string) (store.App, error) {
	return q.getApp(ctx, "GetApp", `WHERE tenant = ? AND name = ?`, tenant, name)
}

// GetAppByDN implements store.Apps.
func (q *queries) GetAppByDN(ctx context.Context, dn string) (store.App, error) {
	return q.getApp(ctx, "GetAppByDN", `WHERE dn = ?`, dn)
}

func (q *queries) getApp(ctx context.Context, op, where string, args ...any) (store.App, error) {
	a, err := scanApp(q.read().queryRow(ctx, `SELECT `+appColumns+` FROM apps `+where, args...))
	if err != nil {
		return store.App{}, q.mapErr(op, err)
	}
	return a, nil
}

// appColumns are the columns scanApp reads, in its order.
const appColumns = `tenant, name, role, dn, created_at`

// scanApp reads one row of appColumns.
func scanApp(row scanner) (store.App, error) {
	var a store.App
	var created int64
	if err := row.Scan(&a.Tenant, &a.Name, &a.Role, &a.DN, &created); err != nil {
		return store.App{}, err
	}
	a.CreatedAt = fromNanos(created)
	return a, nil
}
