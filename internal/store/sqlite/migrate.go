package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/dcaas/dcaas/internal/store/migrations"
)

// migrate applies every migration not yet recorded in schema_migrations, all
// in one write transaction, so a database is never half migrated. It reads
// before it writes: an up-to-date database opens without taking the write
// lock (and opens read-only). It refuses a database a newer dcaas migrated.
func migrate(ctx context.Context, db *sql.DB) error {
	all, err := migrations.All()
	if err != nil {
		return err
	}
	applied, err := appliedVersions(ctx, db)
	if err != nil {
		return mapErr("migrate", err)
	}
	if err := checkKnown(applied, len(all)); err != nil {
		return err
	}
	if len(applied) == len(all) {
		return nil
	}

	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: one migrator at a time
	if err != nil {
		return mapErr("migrate", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    BIGINT NOT NULL PRIMARY KEY,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return mapErr("migrate", err)
	}
	// Another process may have migrated while this one waited for the lock.
	if applied, err = appliedIn(ctx, tx); err != nil {
		return mapErr("migrate", err)
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
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return mapErr("migrate "+m.Name, err)
			}
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
			m.Version, now); err != nil {
			return mapErr("migrate "+m.Name, err)
		}
	}
	return mapErr("migrate", tx.Commit())
}

// appliedVersions returns the versions recorded in schema_migrations, none
// when the table does not exist yet.
func appliedVersions(ctx context.Context, db *sql.DB) (map[int]bool, error) {
	var n int
	err := db.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&n)
	if err != nil || n == 0 {
		return map[int]bool{}, err
	}
	return appliedIn(ctx, db)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func appliedIn(ctx context.Context, q querier) (map[int]bool, error) {
	rows, err := q.QueryContext(ctx, `SELECT version FROM schema_migrations`)
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
			return fmt.Errorf("sqlite: database has schema version %d, this dcaas knows 1 to %d; upgrade dcaas", v, known)
		}
	}
	return nil
}
