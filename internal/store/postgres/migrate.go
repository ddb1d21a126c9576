package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dcaas/dcaas/internal/store/migrations"
)

// migrate applies every migration not yet recorded in schema_migrations,
// statement by statement, all in one transaction (PostgreSQL DDL is
// transactional, so a database is never half migrated). The transaction
// first takes the migration advisory lock, so replicas starting together
// migrate once: the others wait, then find everything applied. An
// up-to-date database is recognized without taking the lock (and opens on
// a read-only server). It refuses a database a newer dcaas migrated.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	all, err := migrations.All()
	if err != nil {
		return err
	}
	applied, err := appliedVersions(ctx, pool)
	if err != nil {
		return mapErr("migrate", err)
	}
	if err := checkKnown(applied, len(all)); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	if len(applied) == len(all) {
		return nil
	}
	return inTx(ctx, pool, "migrate", func(tx pgx.Tx) error {
		if err := lock(ctx, tx, lockMigrate); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    BIGINT NOT NULL PRIMARY KEY,
			applied_at BIGINT NOT NULL
		)`); err != nil {
			return err
		}
		// Another replica may have migrated while this one waited.
		applied, err := appliedIn(ctx, tx)
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
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return fmt.Errorf("%s: %w", m.Name, err)
				}
			}
			if _, err := tx.Exec(ctx,
				`INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`,
				m.Version, now); err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
		}
		return nil
	})
}

// appliedVersions returns the versions recorded in schema_migrations, none
// when the table does not exist yet (in the search path).
func appliedVersions(ctx context.Context, pool *pgxpool.Pool) (map[int]bool, error) {
	var exists bool
	err := pool.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists)
	if err != nil || !exists {
		return map[int]bool{}, err
	}
	return appliedIn(ctx, pool)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func appliedIn(ctx context.Context, q querier) (map[int]bool, error) {
	rows, err := q.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, err
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	applied := make(map[int]bool, len(versions))
	for _, v := range versions {
		applied[int(v)] = true
	}
	return applied, nil
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
