package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"

	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// fence is the set of lease rows a DB handle's write transactions depend
// on: once AcquireLease has added one, every write transaction the handle
// begins first reads it (on PostgreSQL FOR KEY SHARE, which a migration's
// DELETE of the row waits for and which then finds nothing) and fails with
// store.ErrLeaseLost when it is gone. So a replica that was paused past
// its lease's expiry, and whose lease a seal migration then deleted, can
// never commit under the old seal.
type fence struct {
	mu       sync.Mutex
	replicas []string
}

func (f *fence) add(replica string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Contains(f.replicas, replica) {
		f.replicas = append(f.replicas, replica)
	}
}

func (f *fence) remove(replica string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replicas = slices.DeleteFunc(f.replicas, func(r string) bool { return r == replica })
}

func (f *fence) list() []string {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.replicas)
}

// check is the first statement of every write transaction of a fenced
// handle.
func (f *fence) check(ctx context.Context, c conn) error {
	for _, r := range f.list() {
		var got string
		err := c.queryRow(ctx, `SELECT replica FROM kms_leases WHERE replica = ?`+c.d.keyShare(), r).Scan(&got)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %w (replica %s)", store.ErrUnavailable, store.ErrLeaseLost, r)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// AcquireLease implements store.Leases. It takes lockLeases, the lock
// BeginSealMigration takes, so that one of them sees the other's row.
func (db *DB) AcquireLease(ctx context.Context, l store.Lease) error {
	const op = "AcquireLease"
	if l.Replica == "" {
		return fmt.Errorf("%s: %s: an empty replica id", db.d.name(), op)
	}
	var ts times
	hb, exp := ts.at("heartbeat", l.Heartbeat), ts.at("expires", l.Expires)
	if ts.err != nil {
		return fmt.Errorf("%s: %s: %w", db.d.name(), op, ts.err)
	}
	err := db.write(ctx, op, func(c conn) error {
		if err := c.lock(ctx, lockLeases); err != nil {
			return err
		}
		m, err := readMigration(ctx, c)
		if err != nil {
			return err
		}
		if m != nil {
			return &store.MigratingError{Migration: *m}
		}
		_, err = c.exec(ctx, `INSERT INTO kms_leases (replica, host, pid, heartbeat, expires) VALUES (?, ?, ?, ?, ?)`,
			l.Replica, l.Host, l.PID, hb, exp)
		return err
	})
	if err != nil {
		return err
	}
	db.fence.add(l.Replica)
	return nil
}

// RenewLease implements store.Leases. The UPDATE changes no key column, so
// it does not wait for the write transactions holding the row FOR KEY
// SHARE.
func (db *DB) RenewLease(ctx context.Context, replica string, heartbeat, expires time.Time) error {
	const op = "RenewLease"
	var ts times
	hb, exp := ts.at("heartbeat", heartbeat), ts.at("expires", expires)
	if ts.err != nil {
		return fmt.Errorf("%s: %s: %w", db.d.name(), op, ts.err)
	}
	res, err := conn{d: db.d, q: db.w}.exec(ctx, `UPDATE kms_leases SET heartbeat = ?, expires = ? WHERE replica = ?`, hb, exp, replica)
	if err != nil {
		return db.mapErr(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return db.mapErr(op, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: %s: %w (replica %s)", db.d.name(), op, store.ErrLeaseLost, replica)
	}
	return nil
}

// ReleaseLease implements store.Leases.
func (db *DB) ReleaseLease(ctx context.Context, replica string) error {
	_, err := conn{d: db.d, q: db.w}.exec(ctx, `DELETE FROM kms_leases WHERE replica = ?`, replica)
	if err != nil {
		return db.mapErr("ReleaseLease", err)
	}
	db.fence.remove(replica)
	return nil
}

// Leases implements store.Leases.
func (db *DB) Leases(ctx context.Context) ([]store.Lease, error) {
	out, err := readLeases(ctx, db.read())
	return out, db.mapErr("Leases", err)
}

func readLeases(ctx context.Context, c conn) ([]store.Lease, error) {
	rows, err := c.query(ctx, `SELECT replica, host, pid, heartbeat, expires FROM kms_leases ORDER BY replica`+c.d.byteOrder())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Lease
	for rows.Next() {
		var l store.Lease
		var hb, exp int64
		if err := rows.Scan(&l.Replica, &l.Host, &l.PID, &hb, &exp); err != nil {
			return nil, err
		}
		l.Heartbeat, l.Expires = fromNanos(hb), fromNanos(exp)
		out = append(out, l)
	}
	return out, rows.Err()
}

// readMigration returns the seal_migration row, or nil.
func readMigration(ctx context.Context, c conn) (*store.SealMigration, error) {
	var m store.SealMigration
	var started int64
	err := c.queryRow(ctx, `SELECT holder, host, pid, seal_from, seal_to, started FROM seal_migration WHERE id = 1`).
		Scan(&m.Holder, &m.Host, &m.PID, &m.From, &m.To, &started)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	m.Started = fromNanos(started)
	return &m, nil
}

// BeginSealMigration implements store.Leases, under lockLeases.
func (db *DB) BeginSealMigration(ctx context.Context, m store.SealMigration, now time.Time) (*store.SealMigration, error) {
	const op = "BeginSealMigration"
	if m.Holder == "" {
		return nil, fmt.Errorf("%s: %s: an empty holder", db.d.name(), op)
	}
	var ts times
	started, at := ts.at("started", m.Started), ts.at("now", now)
	if ts.err != nil {
		return nil, fmt.Errorf("%s: %s: %w", db.d.name(), op, ts.err)
	}
	var prev *store.SealMigration
	err := db.write(ctx, op, func(c conn) error {
		if err := c.lock(ctx, lockLeases); err != nil {
			return err
		}
		leases, err := readLeases(ctx, c)
		if err != nil {
			return err
		}
		live := slices.DeleteFunc(leases, func(l store.Lease) bool { return l.Expires.UnixNano() <= at })
		if len(live) > 0 {
			return &store.LiveReplicasError{Leases: live}
		}
		if _, err := c.exec(ctx, `DELETE FROM kms_leases`); err != nil {
			return err
		}
		if prev, err = readMigration(ctx, c); err != nil {
			return err
		}
		if _, err := c.exec(ctx, `DELETE FROM seal_migration`); err != nil {
			return err
		}
		_, err = c.exec(ctx, `INSERT INTO seal_migration (id, holder, host, pid, seal_from, seal_to, started) VALUES (1, ?, ?, ?, ?, ?, ?)`,
			m.Holder, m.Host, m.PID, m.From, m.To, started)
		return err
	})
	if err != nil {
		return nil, err
	}
	return prev, nil
}

// EndSealMigration implements store.Leases.
func (db *DB) EndSealMigration(ctx context.Context, holder string) error {
	res, err := conn{d: db.d, q: db.w}.exec(ctx, `DELETE FROM seal_migration WHERE holder = ?`, holder)
	if err != nil {
		return db.mapErr("EndSealMigration", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return db.mapErr("EndSealMigration", err)
	} else if n == 0 {
		return fmt.Errorf("%s: EndSealMigration: %w: no migration held by %s", db.d.name(), store.ErrNotFound, holder)
	}
	return nil
}
