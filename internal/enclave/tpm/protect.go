package tpm

import (
	"errors"
	"fmt"
	"sync"

	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/secret"
)

// ErrDestroyed is what Protected.Open returns after Destroy.
var ErrDestroyed = errors.New("tpm enclave: protected material destroyed")

// Protect takes ownership of material (wiping it, on failure too) and
// keeps it AES-256-GCM-encrypted under the LMK, in process memory: a TPM
// cannot hold data keys at operation speed. Each Protected.Open decrypts a
// fresh copy. Empty material is refused. The Protected fails with
// ErrDestroyed after its Destroy and with enclave.ErrClosed after the
// enclave's Close.
func (e *Enclave) Protect(material *secret.Bytes) (enclave.Protected, error) {
	defer material.Wipe()
	if material.Len() == 0 {
		return nil, errors.New("tpm: Protect: empty data key")
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, enclave.ErrClosed
	}
	return &protected{e: e, ct: e.lmk.Seal(nil, material.Expose(), []byte(protectLabel))}, nil
}

// protected is a data key encrypted under the LMK.
type protected struct {
	e  *Enclave
	mu sync.RWMutex
	ct []byte // nil after Destroy
}

// Open decrypts a copy of the material; the caller wipes it.
func (p *protected) Open() (*secret.Bytes, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.ct == nil {
		return nil, ErrDestroyed
	}
	p.e.mu.RLock()
	defer p.e.mu.RUnlock()
	if p.e.closed {
		return nil, enclave.ErrClosed
	}
	pt, err := p.e.lmk.Open(nil, p.ct, []byte(protectLabel))
	if err != nil {
		// Only memory corruption gets here: the ciphertext never left the
		// process.
		return nil, enclave.ErrOpen
	}
	return secret.New(pt), nil
}

// Destroy wipes the ciphertext; Open fails afterwards. It is safe to call
// more than once.
func (p *protected) Destroy() {
	p.mu.Lock()
	defer p.mu.Unlock()
	secret.Zero(p.ct)
	p.ct = nil
}

// String redacts.
func (p *protected) String() string { return "tpm.Protected([REDACTED])" }

// GoString redacts.
func (p *protected) GoString() string { return p.String() }

// Format redacts for every verb.
func (p *protected) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(p.String())) }
