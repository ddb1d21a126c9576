package sqlstore

import "context"

// Pragma returns the value of PRAGMA name on db's write connection.
func Pragma(ctx context.Context, db *DB, name string) (string, error) {
	var v string
	err := db.w.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v)
	return v, err
}

// Setting returns the value of the run-time parameter name on one of db's
// connections.
func Setting(ctx context.Context, db *DB, name string) (string, error) {
	var v string
	err := db.r.QueryRowContext(ctx, `SELECT current_setting($1)`, name).Scan(&v)
	return v, err
}

// MapErrPostgres is the store's error mapping on PostgreSQL.
func MapErrPostgres(op string, err error) error { return mapErr(postgresDialect{}, op, err) }

// RebindPostgres is PostgreSQL's placeholder rebinding.
func RebindPostgres(query string) string { return postgresDialect{}.rebind(query) }

// The audit log's advisory lock, for tests that hold it from outside.
const (
	LockSpace = pgLockSpace
	LockAudit = int32(lockAudit)
)

// Exec runs query on db's write connection, outside the store's methods:
// for tests that damage rows the way an older version could.
func Exec(ctx context.Context, db *DB, query string, args ...any) error {
	_, err := db.w.ExecContext(ctx, query, args...)
	return err
}

// QueryString runs query on db's write connection and returns its one
// value as text.
func QueryString(ctx context.Context, db *DB, query string, args ...any) (string, error) {
	var v string
	err := db.w.QueryRowContext(ctx, query, args...).Scan(&v)
	return v, err
}

// Groups is how many group commits db ran (0 where it does not group).
func Groups(db *DB) int64 {
	if db.group == nil {
		return 0
	}
	return db.group.groups.Load()
}

// Pending is how many InTx calls wait for db's next group.
func Pending(db *DB) int {
	if db.group == nil {
		return 0
	}
	db.group.mu.Lock()
	defer db.group.mu.Unlock()
	return len(db.group.pending)
}

// UsageUpdates are the usage UPDATE statements with how many arguments
// each takes, by the method that runs them.
var UsageUpdates = map[string]struct {
	Query string
	Args  int
}{
	"AddKeyUsage":      {usageUpdate(keyUsageCond), 9},
	"AddReleasedUsage": {usageUpdate(releasedUsageCond), 11},
}
