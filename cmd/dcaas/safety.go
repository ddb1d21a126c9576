package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/dcaas/dcaas/internal/kms"
)

// safetyFlags are the shutdown and lease flags of `kms serve` and the
// shutdown flag of `sidecar serve`.
type safetyFlags struct {
	shutdownTimeout time.Duration
	leaseRenew      time.Duration
	leaseTTL        time.Duration
}

// defaultKMSListen is kms serve's --listen default (seal migrate repeats
// the address in the command it prints).
const defaultKMSListen = "127.0.0.1:8443"

// defaultShutdownTimeout is how long a SIGTERM waits for requests in flight.
const defaultShutdownTimeout = 10 * time.Second

func (f *safetyFlags) addShutdown(fl *pflag.FlagSet) {
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", defaultShutdownTimeout, "on SIGTERM or SIGINT, stop accepting and wait this long for the requests in flight before cutting them")
}

func (f *safetyFlags) addKMS(fl *pflag.FlagSet) {
	f.addShutdown(fl)
	fl.DurationVar(&f.leaseRenew, "lease-renew-interval", kms.DefaultLeaseRenew, "how often this replica renews its liveness lease in the database (seal migrate refuses while a lease is live)")
	fl.DurationVar(&f.leaseTTL, "lease-ttl", kms.DefaultLeaseTTL, "how long a lease stays live without renewal; more than --lease-renew-interval")
}

func (f *safetyFlags) validate() error {
	if f.shutdownTimeout <= 0 {
		return fmt.Errorf("--shutdown-timeout %v: want more than 0", f.shutdownTimeout)
	}
	if f.leaseRenew == 0 && f.leaseTTL == 0 { // the sidecar has no lease
		return nil
	}
	if f.leaseRenew < 10*time.Millisecond || f.leaseTTL <= f.leaseRenew {
		return fmt.Errorf("--lease-renew-interval %v, --lease-ttl %v: want an interval of at least 10ms and a longer ttl", f.leaseRenew, f.leaseTTL)
	}
	return nil
}

func (f *safetyFlags) lease() kms.LeaseConfig {
	return kms.LeaseConfig{Renew: f.leaseRenew, TTL: f.leaseTTL}
}
