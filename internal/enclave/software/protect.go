package software

import (
	"sync"

	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/secret"
)

// Data keys are sealed under the enclave's protection key: AES-256-GCM
// with a random nonce, the key itself in a memguard.Enclave like every
// other secret here. Sealing a batch opens the protection key once, so
// importing thousands of keys costs one memguard open (about 80 µs of
// system calls) instead of one per key; opening a key costs one, as it
// did when each key had its own memguard.Enclave.

// protectAAD is the associated data of a sealed data key.
var protectAAD = []byte("dcaas software enclave: protected data key v1")

// maxProtects keeps random 96-bit nonces under one protection key within
// the NIST bound of 2^32 messages.
const maxProtects = 1 << 32

// Protect takes ownership of material, seals it under the protection key
// and wipes the caller's copy, on failure too. Empty material is refused.
// The Protected fails with enclave.ErrClosed once the enclave is closed.
func (e *Enclave) Protect(material *secret.Bytes) (enclave.Protected, error) {
	ps, err := e.ProtectAll([]*secret.Bytes{material})
	if err != nil {
		return nil, err
	}
	return ps[0], nil
}

// ProtectAll implements enclave.BatchProtector: Protect for each of
// materials, with one open of the protection key for them all. It takes
// ownership of every material and wipes them, on failure too.
func (e *Enclave) ProtectAll(materials []*secret.Bytes) ([]enclave.Protected, error) {
	defer func() {
		for _, m := range materials {
			m.Wipe()
		}
	}()
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, enclave.ErrClosed
	}
	for _, m := range materials {
		if m.Len() == 0 {
			return nil, wrapf("empty secret")
		}
	}
	if e.protects.Add(uint64(len(materials))) > maxProtects {
		return nil, wrapf("protection key exhausted (%d keys sealed); restart the sidecar", uint64(maxProtects))
	}
	out := make([]enclave.Protected, len(materials))
	err := e.withProtectionKey(func(aead *kcrypto.AEAD) error {
		for i, m := range materials {
			out[i] = &protected{owner: e, ct: aead.Seal(make([]byte, 0, kcrypto.AEADOverhead+m.Len()), m.Expose(), protectAAD)}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// withProtectionKey opens the protection key (one memguard open) and calls
// fn with it; e.mu must be held.
func (e *Enclave) withProtectionKey(fn func(*kcrypto.AEAD) error) error {
	return e.pk.withLocked(func(key []byte) error {
		k := secret.Copy(key)
		defer k.Wipe()
		aead, err := kcrypto.NewAEAD(k)
		if err != nil {
			return err
		}
		return fn(aead)
	})
}

// protected is a data key sealed under its enclave's protection key.
type protected struct {
	redacted
	owner *Enclave

	mu sync.Mutex
	ct []byte // nil once destroyed
}

// Open returns a copy of the material in clear; the caller owns it and
// wipes it. It fails with ErrDestroyed after Destroy and with
// enclave.ErrClosed after the enclave's Close.
func (p *protected) Open() (*secret.Bytes, error) {
	e := p.owner
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, enclave.ErrClosed
	}
	var out *secret.Bytes
	err := e.withProtectionKey(func(aead *kcrypto.AEAD) error {
		var err error
		out, err = p.openWith(aead)
		return err
	})
	return out, err
}

// OpenAll implements enclave.BatchOpener: Open for each of ps, with one
// open of the protection key for them all (seal for the stateless mode
// opens every loaded key). Each of ps must be this enclave's.
func (e *Enclave) OpenAll(ps []enclave.Protected) ([]*secret.Bytes, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, enclave.ErrClosed
	}
	out := make([]*secret.Bytes, len(ps))
	err := e.withProtectionKey(func(aead *kcrypto.AEAD) error {
		for i, p := range ps {
			sp, ok := p.(*protected)
			if !ok || sp.owner != e {
				return wrapf("protected key %d is not this enclave's", i)
			}
			var err error
			if out[i], err = sp.openWith(aead); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for _, b := range out {
			b.Wipe()
		}
		return nil, err
	}
	return out, nil
}

// openWith opens p with the protection key; p.mu is held throughout, so
// Destroy cannot wipe the sealed bytes under the decryption.
func (p *protected) openWith(aead *kcrypto.AEAD) (*secret.Bytes, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ct == nil {
		return nil, ErrDestroyed
	}
	b, err := aead.Open(nil, p.ct, protectAAD)
	if err != nil {
		return nil, wrapf("a protected key does not open") // the sealed bytes were changed in memory
	}
	return secret.New(b), nil // the caller wipes it
}

// Destroy drops the sealed material; Open fails afterwards. It is safe to
// call more than once.
func (p *protected) Destroy() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.ct)
	p.ct = nil
}
