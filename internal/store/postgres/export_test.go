package postgres

import "context"

// MapErr exposes mapErr to the error mapping test.
var MapErr = mapErr

// Setting returns the value of the run-time parameter name on one of db's
// connections.
func Setting(ctx context.Context, db *DB, name string) (string, error) {
	var v string
	err := db.pool.QueryRow(ctx, `SELECT current_setting($1)`, name).Scan(&v)
	return v, err
}

// The audit log's advisory lock, for tests that hold it from outside.
const (
	LockSpace = lockSpace
	LockAudit = lockAudit
)
