package sqlite

import "context"

// OpenReadOnly opens an existing database with SQLite's mode=ro, so that
// every write fails as it would on a read-only file system (chmod does not
// stop root, who runs the tests).
func OpenReadOnly(ctx context.Context, path string) (*DB, error) {
	return open(ctx, path, true)
}

// Pragma returns the value of PRAGMA name on db's write connection.
func Pragma(ctx context.Context, db *DB, name string) (string, error) {
	var v string
	err := db.w.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v)
	return v, err
}
