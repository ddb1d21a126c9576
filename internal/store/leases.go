package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrLeaseLost: the replica's lease row is gone (a seal migration removed
// it once it had expired). The replica must stop: it can no longer commit
// anything through the store handle that acquired the lease.
var ErrLeaseLost = errors.New("store: this KMS replica's lease is gone")

// Lease is one running KMS replica's liveness record. Not secret.
type Lease struct {
	Replica   string    // random per process start
	Host      string    // the host name
	PID       int       // the process id on Host
	Heartbeat time.Time // the last renewal
	Expires   time.Time // the lease is live until then
}

// SealMigration is the record `dcaas seal migrate` holds in the store
// while it runs, and leaves there if it stops before it finished.
type SealMigration struct {
	Holder   string // random per run
	Host     string
	PID      int
	From, To string // the seals' names
	Started  time.Time
}

// MigratingError: a KMS replica may not start while a seal migration
// holds the store (running, or stopped before it finished).
type MigratingError struct{ Migration SealMigration }

func (e *MigratingError) Error() string {
	m := e.Migration
	return fmt.Sprintf("store: a seal migration from %s to %s (started %s on %s, pid %d) holds the database and has not finished: a KMS may not start until it has (re-run dcaas seal migrate to finish it)",
		m.From, m.To, m.Started.UTC().Format(time.RFC3339), m.Host, m.PID)
}

// LiveReplicasError: a seal migration may not begin while KMS replicas
// hold live leases on the store.
type LiveReplicasError struct{ Leases []Lease }

func (e *LiveReplicasError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "store: %d KMS replica(s) are running on this database; stop every one first:", len(e.Leases))
	for _, l := range e.Leases {
		fmt.Fprintf(&b, "\n  replica %s on %s (pid %d), last heartbeat %s, lease valid until %s",
			l.Replica, l.Host, l.PID, l.Heartbeat.UTC().Format(time.RFC3339), l.Expires.UTC().Format(time.RFC3339))
	}
	return b.String()
}

// Leases orders KMS replicas and seal migrations on one database: a
// migration begins only while no replica holds a live lease, and a
// replica starts only while no migration holds the database. Both checks
// run under one lock, so of a replica starting and a migration beginning
// at once exactly one wins.
type Leases interface {
	// AcquireLease inserts l, unless a seal migration holds the database
	// (*MigratingError). From then on every write transaction through this
	// handle first checks that the lease row still exists and fails with
	// ErrLeaseLost (wrapped in ErrUnavailable) when it does not.
	AcquireLease(ctx context.Context, l Lease) error
	// RenewLease moves the lease's heartbeat and expiry; ErrLeaseLost when
	// the row is gone.
	RenewLease(ctx context.Context, replica string, heartbeat, expires time.Time) error
	// ReleaseLease deletes the lease (a clean stop). No error when it is
	// already gone.
	ReleaseLease(ctx context.Context, replica string) error
	// Leases returns every lease row, live and expired, by replica.
	Leases(ctx context.Context) ([]Lease, error)
	// BeginSealMigration records m as holding the database, unless a lease
	// expiring after now exists (*LiveReplicasError). It deletes the
	// expired leases, so that a replica that was only paused can never
	// commit again. It returns the record of an earlier migration that did
	// not finish, which m replaces, or nil.
	BeginSealMigration(ctx context.Context, m SealMigration, now time.Time) (*SealMigration, error)
	// EndSealMigration removes the record of the migration holder, letting
	// replicas start again. ErrNotFound when holder does not hold it.
	EndSealMigration(ctx context.Context, holder string) error
}
