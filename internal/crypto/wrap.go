package crypto

import (
	"bytes"
	"crypto/hpke"
	"fmt"
	"math"
	"sync"

	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/secret"
)

// batchKEKContext is the HPKE exporter context of a batch's
// key-encryption key.
const batchKEKContext = "dcaas/v1 batch-wrap kek"

// WrapItem is one key of a WrapBatch: the key material (the caller's; not
// retained) and the associated data it is bound to (typically the key's
// metadata), which the recipient must present to unwrap it.
type WrapItem struct {
	AAD []byte
	Key *secret.Bytes
}

// WrapBatch seals every item's key to pub with a single HPKE encapsulation
// (RFC 9180, base mode, HKDF-SHA-256, AES-256-GCM, info). The batch kek is
// the HPKE export "dcaas/v1 batch-wrap kek" (32 bytes); item i is
// AES-256-GCM(kek, random nonce, key, associated data = the
// format.WrappedKey header (KEM id, enc, index i) || item.AAD). It returns
// the marshaled format.WrappedKey of each item, in order, in new slices the
// caller owns (not secret). The kek is wiped.
//
// A KEM that dcaas does not offer is ErrUnknownKEM; a non-approved one in
// FIPS mode ErrNotApproved; key material that is empty or over MaxDEKSize
// bytes ErrInvalidKey.
func WrapBatch(pub hpke.PublicKey, info []byte, items []WrapItem) ([][]byte, error) {
	kemID := pub.KEM().ID()
	if _, err := kemOfID(kemID); err != nil {
		return nil, err
	}
	if uint64(len(items)) > math.MaxUint32 {
		return nil, fmt.Errorf("%w: %d items in one batch", ErrTooLarge, len(items))
	}
	for i, it := range items {
		if n := it.Key.Len(); n < 1 || n > MaxDEKSize {
			return nil, fmt.Errorf("%w: item %d: key material of %d bytes not in 1..%d", ErrInvalidKey, i, n, MaxDEKSize)
		}
	}
	if len(items) == 0 {
		return [][]byte{}, nil
	}
	enc, sender, err := hpke.NewSender(pub, hpke.HKDFSHA256(), hpke.AES256GCM(), info)
	if err != nil {
		return nil, fmt.Errorf("crypto: HPKE encapsulation: %w", err)
	}
	a, err := batchAEAD(sender.Export)
	if err != nil {
		return nil, err
	}
	// Every header is prefix || u32 index; the marshaled wrapped key is the
	// header followed by the sealing, built in place.
	prefix := (&format.WrappedKey{KEMID: kemID, Enc: enc}).Header()
	prefix = prefix[:len(prefix)-4]
	hl := len(prefix) + 4
	var aad []byte
	out := make([][]byte, len(items))
	for i, it := range items {
		b := make([]byte, hl, hl+it.Key.Len()+AEADOverhead)
		copy(b, prefix)
		b[hl-4], b[hl-3], b[hl-2], b[hl-1] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		aad = append(append(aad[:0], b...), it.AAD...)
		out[i] = a.Seal(b, it.Key.Expose(), aad)
	}
	return out, nil
}

// batchAEAD derives a version-1 batch's kek with export and returns its
// AEAD. The kek bytes are wiped before batchAEAD returns.
func batchAEAD(export func(string, int) ([]byte, error)) (*AEAD, error) {
	return batchAEADContext(export, batchKEKContext)
}

// Unwrapper opens wrapped keys sealed to one HPKE private key by WrapBatch.
// It caches the key-encryption key of the last encapsulation it saw, so
// unwrapping a whole batch costs one decapsulation. It is safe for
// concurrent use. Close wipes the cached kek and drops its AEAD (whose AES
// key schedule the standard library cannot wipe).
type Unwrapper struct {
	priv  hpke.PrivateKey
	kemID uint16
	info  []byte
	err   error // set if priv's KEM is unknown or not approved

	mu     sync.Mutex
	closed bool
	enc    []byte        // enc of the cached kek
	kek    *secret.Bytes // cached kek, owned by the Unwrapper
	aead   *AEAD         // AEAD of kek
}

// NewUnwrapper returns an Unwrapper for priv (secret, kept by reference; the
// caller keeps it alive and owns it) and the HPKE info the batches were
// sealed with (copied).
func NewUnwrapper(priv hpke.PrivateKey, info []byte) *Unwrapper {
	id := priv.KEM().ID()
	_, err := kemOfID(id)
	return &Unwrapper{priv: priv, kemID: id, info: bytes.Clone(info), err: err}
}

// Unwrap opens wrapped (a marshaled format.WrappedKey) with the associated
// data aad it was wrapped with, and returns the key, a new secret the caller
// owns and wipes. A malformed wrapped key is an error wrapping
// format.ErrMalformed; every other failure (another recipient, info, aad,
// index, enc or KEM) is ErrDecrypt. If priv's KEM is unknown or not approved
// in FIPS mode, every call fails with ErrUnknownKEM or ErrNotApproved; after
// Close, with ErrClosed.
func (u *Unwrapper) Unwrap(wrapped, aad []byte) (*secret.Bytes, error) {
	if u.err != nil {
		return nil, u.err
	}
	w, err := format.ParseWrappedKey(wrapped)
	if err != nil {
		return nil, err
	}
	if w.KEMID != u.kemID {
		return nil, ErrDecrypt
	}
	a, err := u.aeadFor(w.Enc)
	if err != nil {
		return nil, err
	}
	header := wrapped[:len(wrapped)-len(w.Ciphertext)]
	key, err := a.Open(nil, w.Ciphertext, append(header[:len(header):len(header)], aad...))
	if err != nil {
		return nil, ErrDecrypt
	}
	return secret.New(key), nil
}

// aeadFor returns the AEAD of the kek of enc, from the cache or by
// decapsulating (and then caching it).
func (u *Unwrapper) aeadFor(enc []byte) (*AEAD, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil, ErrClosed
	}
	if u.kek == nil || !bytes.Equal(enc, u.enc) {
		r, err := hpke.NewRecipient(enc, u.priv, hpke.HKDFSHA256(), hpke.AES256GCM(), u.info)
		if err != nil {
			return nil, ErrDecrypt
		}
		b, err := r.Export(batchKEKContext, AEADKeySize)
		if err != nil {
			return nil, ErrDecrypt
		}
		kek := secret.New(b)
		a, err := NewAEAD(kek)
		if err != nil {
			kek.Wipe()
			return nil, ErrDecrypt
		}
		u.kek.Wipe()
		u.kek, u.enc, u.aead = kek, bytes.Clone(enc), a
	}
	return u.aead, nil
}

// Close wipes the cached key-encryption key; later Unwrap calls fail with
// ErrClosed. It does not wipe the private key, which is the caller's.
// Close is idempotent and always returns nil.
func (u *Unwrapper) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.kek.Wipe()
	u.kek, u.enc, u.aead, u.closed = nil, nil, nil, true
	return nil
}

// String, GoString and Format redact: an Unwrapper caches a key-encryption
// key.
func (u *Unwrapper) String() string { return "crypto.Unwrapper{[REDACTED]}" }

// GoString redacts.
func (u *Unwrapper) GoString() string { return u.String() }

// Format redacts for every verb.
func (u *Unwrapper) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(u.String())) }
