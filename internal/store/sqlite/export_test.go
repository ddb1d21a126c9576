package sqlite

import "context"

// Pragma returns the value of PRAGMA name on db's write connection.
func Pragma(ctx context.Context, db *DB, name string) (string, error) {
	var v string
	err := db.w.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v)
	return v, err
}
