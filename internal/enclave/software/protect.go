package software

import (
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/secret"
)

// Protect takes ownership of material, seals it into a memguard.Enclave
// and wipes the caller's copy, on failure too. Empty material is refused.
// The Protected fails with enclave.ErrClosed once the enclave is closed.
func (e *Enclave) Protect(material *secret.Bytes) (enclave.Protected, error) {
	defer material.Wipe()
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, enclave.ErrClosed
	}
	s, err := newSealed(e, material.Expose()) // wipes the bytes
	if err != nil {
		return nil, err
	}
	return &protected{s: s}, nil
}

// protected is a data key sealed while idle.
type protected struct {
	redacted
	s *sealed
}

// Open returns a copy of the material in clear; the caller owns it and
// wipes it. It fails with ErrDestroyed after Destroy and with
// enclave.ErrClosed after the enclave's Close.
func (p *protected) Open() (*secret.Bytes, error) {
	var out *secret.Bytes
	err := p.s.with(func(material []byte) error {
		out = secret.Copy(material)
		return nil
	})
	return out, err
}

// Destroy drops the sealed material; Open fails afterwards. It is safe to
// call more than once.
func (p *protected) Destroy() { p.s.destroy() }
