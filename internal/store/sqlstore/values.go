package sqlstore

import (
	"database/sql"
	"fmt"
	"math"
	"time"
)

// Times are stored as BIGINT Unix nanoseconds, which cover the years 1678
// to 2262. A time outside that range, the zero time.Time included, is
// refused rather than stored wrong.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// nanos returns t as Unix nanoseconds, or an error naming field when t does
// not fit.
func nanos(field string, t time.Time) (int64, error) {
	if t.Before(minTime) || t.After(maxTime) {
		return 0, fmt.Errorf("%s %s is outside the storable range (years 1678 to 2262)", field, t.Format(time.RFC3339))
	}
	return t.UnixNano(), nil
}

// nullNanos is nanos for an optional time: nil is NULL.
func nullNanos(field string, t *time.Time) (sql.NullInt64, error) {
	if t == nil {
		return sql.NullInt64{}, nil
	}
	n, err := nanos(field, *t)
	return sql.NullInt64{Int64: n, Valid: true}, err
}

// times converts several times with nanos and nullNanos, keeping the
// first error: check err once after the last conversion.
type times struct{ err error }

// at is nanos(field, t), or 0 after an error.
func (ts *times) at(field string, t time.Time) int64 {
	if ts.err != nil {
		return 0
	}
	n, err := nanos(field, t)
	ts.err = err
	return n
}

// opt is nullNanos(field, t), or NULL after an error.
func (ts *times) opt(field string, t *time.Time) sql.NullInt64 {
	if ts.err != nil {
		return sql.NullInt64{}
	}
	n, err := nullNanos(field, t)
	ts.err = err
	return n
}

// fromNanos is the inverse of nanos, in UTC.
func fromNanos(n int64) time.Time {
	return time.Unix(0, n).UTC()
}

// fromNullNanos is the inverse of nullNanos.
func fromNullNanos(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromNanos(n.Int64)
	return &t
}

// notNull returns b, or an empty slice for nil, for a NOT NULL column: the
// drivers send a nil []byte as NULL.
func notNull(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// nilIfEmpty returns nil for an empty slice, so that an empty BYTEA reads
// back as nil whatever the driver returns for it.
func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// boolInt stores a boolean as BIGINT 0/1.
func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// nullString is s, or NULL when s is empty (for the nullable columns
// later migrations add: rows from before them hold NULL).
func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }
