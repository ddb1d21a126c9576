package kms

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// Default lease timings: a replica renews its lease every 5 s and a lease
// not renewed for 15 s no longer holds back a seal migration.
const (
	DefaultLeaseRenew = 5 * time.Second
	DefaultLeaseTTL   = 15 * time.Second
)

// LeaseConfig sets how a KMS opened with Open holds its liveness lease in
// the store (store.Leases): a row naming the replica, renewed every Renew
// and valid for TTL, deleted at a clean Close. While any replica's lease
// is live, `dcaas seal migrate` refuses to begin; while a migration holds
// the store, Open refuses to start. The zero value means the defaults.
type LeaseConfig struct {
	Renew time.Duration // default DefaultLeaseRenew
	TTL   time.Duration // default DefaultLeaseTTL; must be more than Renew
}

// lease is the liveness lease of one Open.
type lease struct {
	st      store.Store
	replica string
	cfg     LeaseConfig
	now     func() time.Time
	log     *slog.Logger
	lost    chan struct{} // closed when the store no longer holds the lease
	stop    func()
}

// acquireLease inserts this process's lease (refused while a seal
// migration holds st) and starts renewing it.
func acquireLease(ctx context.Context, st store.Store, opts Options) (*lease, error) {
	cfg := opts.Lease
	if cfg.Renew == 0 {
		cfg.Renew = DefaultLeaseRenew
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultLeaseTTL
	}
	if cfg.Renew <= 0 || cfg.TTL <= cfg.Renew {
		return nil, fmt.Errorf("kms: lease renewal every %v with a %v lifetime: the lifetime must be longer than the renewal interval", cfg.Renew, cfg.TTL)
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	now := opts.Now()
	l := &lease{st: st, replica: hex.EncodeToString(id[:]), cfg: cfg, now: opts.Now, log: opts.Logger, lost: make(chan struct{})}
	err := st.AcquireLease(ctx, store.Lease{Replica: l.replica, Host: host, PID: os.Getpid(), Heartbeat: now, Expires: now.Add(cfg.TTL)})
	if err != nil {
		var mig *store.MigratingError
		if errors.As(err, &mig) {
			return nil, fmt.Errorf("kms: refusing to start: %w", mig)
		}
		return nil, fmt.Errorf("kms: taking this replica's lease in the store: %w", err)
	}
	l.stop = l.renewLoop()
	l.log.Info("kms lease taken", "replica", l.replica, "renew", cfg.Renew, "ttl", cfg.TTL)
	return l, nil
}

// renewLoop renews the lease every Renew until stopped, or until the store
// says it is gone: then it closes lost and stops.
func (l *lease) renewLoop() (stop func()) {
	return background(func(ctx context.Context) {
		t := time.NewTicker(l.cfg.Renew)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			now := l.now()
			err := l.st.RenewLease(ctx, l.replica, now, now.Add(l.cfg.TTL))
			switch {
			case err == nil:
			case errors.Is(err, store.ErrLeaseLost):
				l.log.Error("this KMS replica's lease is gone from the store (a seal migration began after it expired): it can no longer write and stops", "replica", l.replica)
				close(l.lost)
				return
			case ctx.Err() == nil:
				l.log.Warn("renewing this KMS replica's lease failed; retrying", "replica", l.replica, "err", err)
			}
		}
	})
}

// release stops renewing and deletes the lease (a clean stop).
func (l *lease) release() {
	l.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.st.ReleaseLease(ctx, l.replica); err != nil {
		l.log.Warn("releasing this KMS replica's lease failed; it expires by itself", "replica", l.replica, "err", err, "ttl", l.cfg.TTL)
	}
}

// LeaseLost is closed when the store no longer holds this KMS's lease: a
// seal migration began after the lease expired (the process was paused,
// or its database unreachable, for longer than the lease's lifetime).
// Nothing the KMS writes commits any more; the caller should stop it.
func (s *Server) LeaseLost() <-chan struct{} { return s.lease.lost }
