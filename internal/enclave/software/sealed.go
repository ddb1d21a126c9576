package software

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/awnumar/memguard"

	"github.com/dcaas/dcaas/internal/enclave"
)

// session counts the memguard session keys this package has seen: it
// moves on when an open fails because memguard.Purge replaced the key.
// Secrets sealed under an earlier session are lost, and are reported so
// without asking memguard again: memguard leaks two locked pages on every
// failed open, and runs out of mlock (then deadlocks) if asked often.
// Secrets sealed after a purge but before it is noticed are reported lost
// too; a purge is the end of the enclave anyway.
var session atomic.Uint64

// sealed is one secret held in a memguard.Enclave, usable only while its
// owning Enclave is open.
type sealed struct {
	redacted
	owner   *Enclave
	session uint64 // the session it was sealed in

	mu sync.Mutex
	e  *memguard.Enclave // nil once destroyed
}

// newSealed seals b into a memguard.Enclave and wipes b.
func newSealed(owner *Enclave, b []byte) (*sealed, error) {
	if len(b) == 0 {
		return nil, wrapf("empty secret")
	}
	defer acquireLockSlot()()
	return &sealed{owner: owner, session: session.Load(), e: memguard.NewEnclave(b)}, nil
}

// newRandomSealed seals size random bytes.
func newRandomSealed(owner *Enclave, size int) *sealed {
	defer acquireLockSlot()()
	return &sealed{owner: owner, session: session.Load(), e: memguard.NewEnclaveRandom(size)}
}

// with opens the secret into a LockedBuffer, calls fn with its bytes and
// destroys the buffer. fn must not retain or modify the bytes. The owner's
// lock is held for reading throughout, so Close waits for fn.
func (s *sealed) with(fn func(secret []byte) error) error {
	s.owner.mu.RLock()
	defer s.owner.mu.RUnlock()
	if s.owner.closed {
		return enclave.ErrClosed
	}
	return s.withLocked(fn)
}

// withLocked is with for callers already holding the owner's lock.
func (s *sealed) withLocked(fn func(secret []byte) error) error {
	s.mu.Lock()
	e := s.e
	s.mu.Unlock()
	switch {
	case e == nil:
		return ErrDestroyed
	case s.session != session.Load():
		return ErrPurged
	}

	release := acquireLockSlot()
	defer release()
	buf, err := e.Open()
	if err != nil {
		// The only error memguard returns here is a failed decryption:
		// a purge replaced the session key.
		session.CompareAndSwap(s.session, s.session+1)
		return ErrPurged
	}
	defer buf.Destroy()
	return fn(buf.Bytes())
}

// destroy drops the sealed secret; later opens fail with ErrDestroyed.
func (s *sealed) destroy() {
	s.mu.Lock()
	s.e = nil
	s.mu.Unlock()
}

// redacted gives the types that hold key material a String, GoString,
// Format and MarshalJSON that reveal nothing.
type redacted struct{}

const redactedText = "[REDACTED]"

// String redacts.
func (redacted) String() string { return redactedText }

// GoString redacts.
func (redacted) GoString() string { return redactedText }

// Format redacts for every verb.
func (redacted) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redactedText) }

// MarshalJSON redacts.
func (redacted) MarshalJSON() ([]byte, error) { return []byte(`"` + redactedText + `"`), nil }
