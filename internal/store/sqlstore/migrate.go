package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/dcaas/dcaas/internal/store/migrations"
)

// migrate applies every migration not yet recorded in schema_migrations,
// statement by statement, all in one write transaction (both databases
// have transactional DDL), so a database is never half migrated. The
// transaction takes lockMigrate first (on SQLite, BEGIN IMMEDIATE is
// enough), so stores opening together migrate once: the others wait, then
// find everything applied. An up-to-date database is recognized without
// writing (and opens read-only). It refuses a database a newer dcaas
// migrated.
func migrate(ctx context.Context, q *queries) error {
	all, err := migrations.All()
	if err != nil {
		return err
	}
	// Read through the write connection: on SQLite, a query-only one
	// could not switch a new file to WAL mode.
	applied, err := appliedVersions(ctx, conn{d: q.d, q: q.w}, q.d)
	if err != nil {
		return q.mapErr("migrate", err)
	}
	if err := checkKnown(applied, len(all)); err != nil {
		return q.mapErr("migrate", err)
	}
	if len(applied) == len(all) {
		return nil
	}
	return q.write(ctx, "migrate", func(c conn) error {
		if err := c.lock(ctx, lockMigrate); err != nil {
			return err
		}
		if _, err := c.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    BIGINT NOT NULL PRIMARY KEY,
			applied_at BIGINT NOT NULL
		)`); err != nil {
			return err
		}
		// Another store may have migrated while this one waited.
		applied, err := appliedIn(ctx, c)
		if err != nil {
			return err
		}
		if err := checkKnown(applied, len(all)); err != nil {
			return err
		}
		now := time.Now().UnixNano()
		for _, m := range all {
			if applied[m.Version] {
				continue
			}
			for _, stmt := range m.Statements() {
				// Run as written: DDL holds no placeholders to rebind.
				if _, err := c.q.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%s: %w", m.Name, err)
				}
			}
			if _, err := c.exec(ctx,
				`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
				m.Version, now); err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
		}
		return nil
	})
}

// appliedVersions returns the versions recorded in schema_migrations, none
// when the table does not exist yet.
func appliedVersions(ctx context.Context, c conn, d dialect) (map[int]bool, error) {
	exists, err := d.hasTable(ctx, c, "schema_migrations")
	if err != nil || !exists {
		return map[int]bool{}, err
	}
	return appliedIn(ctx, c)
}

func appliedIn(ctx context.Context, c conn) (map[int]bool, error) {
	rows, err := c.query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	applied := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		applied[v] = true
	}
	return applied, rows.Err()
}

// checkKnown fails when applied holds a version this binary does not have.
func checkKnown(applied map[int]bool, known int) error {
	for v := range applied {
		if v < 1 || v > known {
			return fmt.Errorf("database has schema version %d, this dcaas knows 1 to %d; upgrade dcaas", v, known)
		}
	}
	return nil
}
