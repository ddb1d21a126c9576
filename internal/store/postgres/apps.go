package postgres

import (
	"context"
	"fmt"

	"github.com/dcaas/dcaas/internal/store"
)

// CreateApp implements store.Apps. It also returns store.ErrExists when
// another app has a.DN.
func (db *DB) CreateApp(ctx context.Context, a store.App) error {
	const op = "CreateApp"
	created, err := nanos("CreatedAt", a.CreatedAt)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	_, err = db.pool.Exec(ctx,
		`INSERT INTO apps (tenant, name, role, dn, created_at) VALUES ($1, $2, $3, $4, $5)`,
		a.Tenant, a.Name, a.Role, a.DN, created)
	return mapErr(op, err)
}

// GetApp implements store.Apps.
func (db *DB) GetApp(ctx context.Context, tenant, name string) (store.App, error) {
	return db.getApp(ctx, "GetApp", `WHERE tenant = $1 AND name = $2`, tenant, name)
}

// GetAppByDN implements store.Apps.
func (db *DB) GetAppByDN(ctx context.Context, dn string) (store.App, error) {
	return db.getApp(ctx, "GetAppByDN", `WHERE dn = $1`, dn)
}

func (db *DB) getApp(ctx context.Context, op, where string, args ...any) (store.App, error) {
	var a store.App
	var created int64
	err := db.pool.QueryRow(ctx,
		`SELECT tenant, name, role, dn, created_at FROM apps `+where, args...).
		Scan(&a.Tenant, &a.Name, &a.Role, &a.DN, &created)
	if err != nil {
		return store.App{}, mapErr(op, err)
	}
	a.CreatedAt = fromNanos(created)
	return a, nil
}
