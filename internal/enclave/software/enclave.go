package software

import (
	"context"
	"crypto/hpke"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/enclave"
)

// Errors specific to the software enclave, beside those of package enclave.
var (
	// ErrPurged: the memguard session key was purged (memguard.Purge,
	// SafePanic, SafeExit) and the secrets sealed under it are lost for
	// good. The sidecar must start over and re-enroll.
	ErrPurged = errors.New("software enclave: memguard session purged, secrets lost")
	// ErrDestroyed: Open on a Protected after its Destroy.
	ErrDestroyed = errors.New("software enclave: protected material destroyed")
)

// Enclave is the software enclave. It is safe for concurrent use. Make one
// with New; the zero value is not usable. It never prints its secrets.
type Enclave struct {
	redacted

	// mu guards everything below. Operations that open a secret hold it
	// for reading for their whole duration, so Close waits for them.
	mu        sync.RWMutex
	closed    bool
	lmk       *sealed
	lmkSeals  atomic.Uint64
	pk        *sealed       // the protection key of data keys (protect.go)
	protects  atomic.Uint64 // data keys sealed under pk
	identity  *identityKey
	transport map[api.KEM]hpke.PrivateKey
	owned     []*sealed // long-lived secrets, dropped by Close
}

var _ enclave.Enclave = (*Enclave)(nil)

// New hardens the process (once: see the package documentation) and
// returns an enclave with a fresh random local master key. The identity and
// transport keys are created on first use.
func New() (*Enclave, error) {
	if err := harden(); err != nil {
		return nil, err
	}
	e := &Enclave{transport: make(map[api.KEM]hpke.PrivateKey)}
	e.lmk = newRandomSealed(e, lmkSize)
	e.pk = newRandomSealed(e, kcrypto.AEADKeySize)
	e.owned = append(e.owned, e.lmk, e.pk)
	return e, nil
}

// Kind returns api.EnclaveSoftware.
func (e *Enclave) Kind() api.Enclave { return api.EnclaveSoftware }

// Close drops every secret the enclave holds; every later call, on the
// enclave or on a key, Protected or Signer it returned, fails with
// enclave.ErrClosed. Close waits for operations in flight and is
// idempotent.
func (e *Enclave) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	for _, s := range e.owned {
		s.destroy()
	}
	e.owned, e.lmk, e.pk, e.identity, e.transport = nil, nil, nil, nil, nil
	return nil
}

// sealLocked seals b (wiping it) as a long-lived secret of e, dropped by
// Close. e.mu must be held for writing.
func (e *Enclave) sealLocked(b []byte) (*sealed, error) {
	s, err := newSealed(e, b)
	if err != nil {
		return nil, err
	}
	e.owned = append(e.owned, s)
	return s, nil
}

// ready reports ctx's error, or ErrClosed. e.mu must be held.
func (e *Enclave) ready(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if e.closed {
		return enclave.ErrClosed
	}
	return nil
}

func wrapf(format string, args ...any) error {
	return fmt.Errorf("software enclave: "+format, args...)
}
