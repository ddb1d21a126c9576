package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// SetKeyVersionKCV implements store.KeyCheckValues: one conditional
// UPDATE, so replicas racing to fill the same value all succeed.
func (q *queries) SetKeyVersionKCV(ctx context.Context, keyID string, version int, kcv string) error {
	const op = "SetKeyVersionKCV"
	return q.write(ctx, op, func(c conn) error {
		if _, err := c.exec(ctx, `UPDATE key_versions SET kcv = ? WHERE key_id = ? AND version = ? AND kcv IS NULL`,
			kcv, keyID, version); err != nil {
			return err
		}
		var stored sql.NullString
		if err := c.queryRow(ctx, `SELECT kcv FROM key_versions WHERE key_id = ? AND version = ?`, keyID, version).Scan(&stored); err != nil {
			return err
		}
		if stored.String != kcv {
			return fmt.Errorf("version %s:%d has KCV %q, not %q: %w", keyID, version, stored.String, kcv, store.ErrConflict)
		}
		return nil
	})
}

// CreateCeremony implements store.Ceremonies.
func (q *queries) CreateCeremony(ctx context.Context, cr store.Ceremony) error {
	const op = "CreateCeremony"
	var ts times
	created := ts.at("CreatedAt", cr.CreatedAt)
	expires := ts.at("ExpiresAt", cr.ExpiresAt)
	if ts.err != nil {
		return q.mapErr(op, ts.err)
	}
	return q.write(ctx, op, func(c conn) error {
		_, err := c.exec(ctx,
			`INSERT INTO key_ceremonies (id, tenant, key_type, components, expected_kcv, owner, request, created_by, created_at, expires_at)
			 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			cr.ID, cr.Tenant, cr.KeyType, cr.Components, cr.ExpectedKCV, cr.Owner, notNull(cr.Request), cr.CreatedBy, created, expires)
		return err
	})
}

// GetCeremony implements store.Ceremonies: one statement, so one snapshot.
func (q *queries) GetCeremony(ctx context.Context, id string) (store.Ceremony, []store.CeremonyComponent, error) {
	const op = "GetCeremony"
	rows, err := q.read().query(ctx,
		`SELECT k.tenant, k.key_type, k.components, k.expected_kcv, k.owner, k.request, k.created_by, k.created_at, k.expires_at,
		        COALESCE(k.key_id, ''), k.completed_at, p.idx, p.admin, p.kcv, p.sealed, p.entered_at
		 FROM key_ceremonies k LEFT JOIN key_ceremony_components p ON p.ceremony_id = k.id
		 WHERE k.id = ? ORDER BY p.idx`, id)
	if err != nil {
		return store.Ceremony{}, nil, q.mapErr(op, err)
	}
	defer rows.Close()
	cr := store.Ceremony{ID: id}
	found := false
	var comps []store.CeremonyComponent
	for rows.Next() {
		found = true
		var created, expires int64
		var completed, idx, entered sql.NullInt64
		var admin, kcv sql.NullString
		var sealed []byte
		if err := rows.Scan(&cr.Tenant, &cr.KeyType, &cr.Components, &cr.ExpectedKCV, &cr.Owner, &cr.Request, &cr.CreatedBy,
			&created, &expires, &cr.KeyID, &completed, &idx, &admin, &kcv, &sealed, &entered); err != nil {
			return store.Ceremony{}, nil, q.mapErr(op, err)
		}
		cr.CreatedAt, cr.ExpiresAt, cr.CompletedAt = fromNanos(created), fromNanos(expires), fromNullNanos(completed)
		if idx.Valid {
			comps = append(comps, store.CeremonyComponent{
				CeremonyID: id, Index: int(idx.Int64), Admin: admin.String, KCV: kcv.String,
				Sealed: nilIfEmpty(sealed), EnteredAt: fromNanos(entered.Int64),
			})
		}
	}
	if err := rows.Err(); err != nil {
		return store.Ceremony{}, nil, q.mapErr(op, err)
	}
	if !found {
		return store.Ceremony{}, nil, q.mapErr(op, sql.ErrNoRows)
	}
	cr.Request = nilIfEmpty(cr.Request)
	return cr, comps, nil
}

// AddCeremonyComponent implements store.Ceremonies. The ceremony's row
// stays locked from the check to the commit (FOR UPDATE on PostgreSQL),
// and the table's keys refuse a second component of one index or admin.
func (q *queries) AddCeremonyComponent(ctx context.Context, p store.CeremonyComponent) error {
	const op = "AddCeremonyComponent"
	entered, err := nanos("EnteredAt", p.EnteredAt)
	if err != nil {
		return q.mapErr(op, err)
	}
	return q.write(ctx, op, func(c conn) error {
		if err := ceremonyCompleted.lockOpen(ctx, c, p.CeremonyID); err != nil {
			return err
		}
		var n int
		if err := c.queryRow(ctx, `SELECT COUNT(*) FROM key_ceremony_components WHERE ceremony_id = ?`, p.CeremonyID).Scan(&n); err != nil {
			return err
		}
		var taken int
		if err := c.queryRow(ctx, `SELECT COUNT(*) FROM key_ceremony_components WHERE ceremony_id = ? AND admin = ?`, p.CeremonyID, p.Admin).Scan(&taken); err != nil {
			return err
		}
		if taken > 0 {
			return fmt.Errorf("admin %q entered a component of ceremony %s already: %w", p.Admin, p.CeremonyID, store.ErrExists)
		}
		if p.Index != n+1 {
			return fmt.Errorf("component %d, want %d: %w", p.Index, n+1, store.ErrConflict)
		}
		_, err := c.exec(ctx,
			`INSERT INTO key_ceremony_components (ceremony_id, idx, admin, kcv, sealed, entered_at) VALUES (?, ?, ?, ?, ?, ?)`,
			p.CeremonyID, p.Index, p.Admin, p.KCV, p.Sealed, entered)
		return err
	})
}

// CompleteCeremony implements store.Ceremonies.
func (q *queries) CompleteCeremony(ctx context.Context, id, keyID string, at time.Time) error {
	const op = "CompleteCeremony"
	n, err := nanos("at", at)
	if err != nil {
		return q.mapErr(op, err)
	}
	return q.write(ctx, op, func(c conn) error {
		if err := ceremonyCompleted.lockOpen(ctx, c, id); err != nil {
			return err
		}
		if _, err := c.exec(ctx, `UPDATE key_ceremonies SET key_id = ?, completed_at = ? WHERE id = ?`, keyID, n, id); err != nil {
			return err
		}
		_, err := c.exec(ctx, `UPDATE key_ceremony_components SET sealed = NULL WHERE ceremony_id = ?`, id)
		return err
	})
}

// DeleteExpiredCeremonies implements store.Ceremonies.
func (q *queries) DeleteExpiredCeremonies(ctx context.Context, now time.Time) (int, error) {
	const op = "DeleteExpiredCeremonies"
	n, err := nanos("now", now)
	if err != nil {
		return 0, q.mapErr(op, err)
	}
	return q.deleteExpired(ctx, op, n, `key_ceremonies`, `key_ceremony_components`, `ceremony_id`)
}
