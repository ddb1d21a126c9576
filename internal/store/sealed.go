package store

import "context"

// Kinds of SealedValue.
const (
	SealedHMACKey   = "hmac_key"   // a tenant's Tenant.SealedHMACKey
	SealedMasterKey = "master_key" // one version's MasterKey.Sealed
	SealedSetting   = "setting"    // a setting whose value holds sealed material
)

// SealedValue is one stored value that is, or holds, material sealed under
// the KMS root key, and where it is stored.
type SealedValue struct {
	Kind    string // SealedHMACKey, SealedMasterKey or SealedSetting
	Tenant  string // SealedHMACKey, SealedMasterKey
	Version int    // SealedMasterKey
	Name    string // SealedSetting
	Value   []byte
}

// Sealed is how the root of trust changes (seal migration): every sealed
// value is replaced at once or not at all.
type Sealed interface {
	// Reseal runs one transaction that no other write interleaves with
	// (a concurrent write waits for it, or is done before it reads). It
	// reads every tenant's sealed HMAC key, every version of every master
	// key and each setting named in settings that is set, in no particular
	// order, and calls reseal with them. reseal sets a new Value on each
	// element (changes to the other fields are ignored); it must not call
	// the store. Then Reseal writes each Value back where it was read
	// from, changing nothing else, and commits. If reseal returns an error
	// (returned wrapped), leaves a Value empty, or a write fails, nothing
	// changes.
	Reseal(ctx context.Context, settings []string, reseal func(values []SealedValue) error) error
}
