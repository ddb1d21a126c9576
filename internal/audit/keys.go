package audit

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/store"
)

// Rotating the audit key. The key that made the log (its creation record,
// the first signed) is the verifier's anchor, pinned outside the database.
// A rotation is a record, ActionKeyRotated, that carries the new public key
// in full and is signed as it is written by a key the verifier trusts at
// that point: from the next record on the verifier trusts the new key too.
// The old key stays trusted (replicas still signing with it until they
// re-read the key) until a record ActionKeyRetired names it, signed as it
// is written by a trusted key; a signature by a retired key after that is
// a break. So whoever holds no trusted key cannot introduce one, and a key
// retired after a suspected leak can sign nothing that verifies after its
// retirement (its signatures before stay good).

const (
	// ActionKeyRotated: the KMS's audit key changed; KeyID is the new
	// public key (RotatedKeyID).
	ActionKeyRotated = "audit.key_rotated"
	// ActionKeyRetired: a key the log trusted no longer signs; KeyID is its
	// id (kcrypto.LogVerifyKey.ID).
	ActionKeyRetired = "audit.key_retired"
)

// rotatedPrefix starts the KeyID of a rotation record.
const rotatedPrefix = "ed25519-public:"

// RotatedKeyID is how a rotation record names the new key in full:
// "ed25519-public:" and the 32-byte public key in lowercase hex.
func RotatedKeyID(k kcrypto.LogVerifyKey) string {
	return rotatedPrefix + hex.EncodeToString(k.Bytes())
}

// parseRotatedKey reads RotatedKeyID's form.
func parseRotatedKey(s string) (kcrypto.LogVerifyKey, error) {
	h, ok := strings.CutPrefix(s, rotatedPrefix)
	if !ok {
		return kcrypto.LogVerifyKey{}, fmt.Errorf("it names the new key %q, not %s and 64 hex digits", s, rotatedPrefix)
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 32 || strings.ToLower(h) != h {
		return kcrypto.LogVerifyKey{}, fmt.Errorf("it names the new key %q, not %s and 64 lowercase hex digits", s, rotatedPrefix)
	}
	return kcrypto.LogVerifyKeyFromBytes(b)
}

// isKeyRecord reports whether r changes which keys sign the log.
func isKeyRecord(r store.AuditRecord) bool {
	return r.Outcome == "ok" && (r.Action == ActionKeyRotated || r.Action == ActionKeyRetired)
}

// keySet is which keys a verifier trusts: trusted now (a record signature
// must be by one of them), and every key trusted at some point (a
// checkpoint may be by any of them: a forged checkpoint can only make a
// verification fail, never pass).
type keySet struct {
	trusted []kcrypto.LogVerifyKey
	known   []kcrypto.LogVerifyKey
	changes []KeyChange
}

// KeyChange is a rotation or retirement the log records.
type KeyChange struct {
	Seq     int64  // its record
	KeyID   string // the key it brings in or retires
	Retired bool   // a retirement; else a rotation
}

func newKeySet(anchor kcrypto.LogVerifyKey) keySet {
	return keySet{trusted: []kcrypto.LogVerifyKey{anchor}, known: []kcrypto.LogVerifyKey{anchor}}
}

// signer returns the trusted key that signed record seq with hash, or
// false.
func (ks *keySet) signer(seq int64, hash, sig []byte) (kcrypto.LogVerifyKey, bool) {
	for _, k := range ks.trusted {
		if k.Verify(recordSigInput(seq, hash), sig) {
			return k, true
		}
	}
	return kcrypto.LogVerifyKey{}, false
}

// checkpointSigned reports whether a key ever trusted signed cp.
func (ks *keySet) checkpointSigned(cp store.AuditCheckpoint) bool {
	return cp.Seq >= 0 && slices.ContainsFunc(ks.known, func(k kcrypto.LogVerifyKey) bool { return k.Verify(checkpointSigInput(cp), cp.Sig) })
}

// ids names the trusted keys, for messages.
func (ks *keySet) ids() string {
	ids := make([]string, len(ks.trusted))
	for i, k := range ks.trusted {
		ids[i] = k.ID()
	}
	return strings.Join(ids, ", ")
}

// apply applies a key record r, which has passed every other check (its
// hash, its chain, its signature by a trusted key), and returns why it
// breaks the log, or nil. A key record must be signed itself (the KMS
// signs it as it writes it): one covered only by a later signature could
// have been added by someone holding no trusted key.
func (ks *keySet) apply(r store.AuditRecord) error {
	if r.Sig == nil {
		return &BrokenError{Seq: r.Seq, Reason: "it changes the audit key (" + r.Action + ") but is not signed itself"}
	}
	if r.Action == ActionKeyRotated {
		k, err := parseRotatedKey(r.KeyID)
		if err != nil {
			return &BrokenError{Seq: r.Seq, Reason: "a key rotation: " + err.Error()}
		}
		if !slices.ContainsFunc(ks.trusted, k.Equal) {
			ks.trusted = append(ks.trusted, k)
		}
		if !slices.ContainsFunc(ks.known, k.Equal) {
			ks.known = append(ks.known, k)
		}
		ks.changes = append(ks.changes, KeyChange{Seq: r.Seq, KeyID: k.ID()})
		return nil
	}
	i := slices.IndexFunc(ks.trusted, func(k kcrypto.LogVerifyKey) bool { return k.ID() == r.KeyID })
	switch {
	case i < 0:
		return &BrokenError{Seq: r.Seq, Reason: fmt.Sprintf("it retires audit key %q, which the log does not trust (it trusts %s)", r.KeyID, ks.ids())}
	case len(ks.trusted) == 1:
		return &BrokenError{Seq: r.Seq, Reason: fmt.Sprintf("it retires audit key %s, the only one the log trusts", r.KeyID)}
	}
	ks.trusted = slices.Delete(ks.trusted, i, i+1)
	ks.changes = append(ks.changes, KeyChange{Seq: r.Seq, KeyID: r.KeyID, Retired: true})
	return nil
}
