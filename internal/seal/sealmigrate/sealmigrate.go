// Package sealmigrate moves a KMS store to another root of trust (from the
// file seal to a PKCS#11 HSM) without losing a key. Start with Migrate.
//
// Every sealed item (each tenant's master key versions and HMAC key, the
// CA keys, the audit key, the BYOK import keys) is opened with the old
// seal, sealed with the new one and checked by opening it again with the
// new one, all inside one store transaction (store.Sealed): the store
// holds the old blobs until every new one is made and verified, and then
// holds only new ones. Any failure leaves the store as it was.
//
// An item already sealed under the new seal (a store an earlier run
// migrated, into which something then wrote under the old seal) is kept
// as it is and counted in Report.Already, so running Migrate again
// finishes a store left half under each seal. Census says, without
// changing anything, how many items each seal opens.
package sealmigrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/seal"
	"github.com/dcaas/dcaas/internal/store"
)

// ErrVerify: the new seal returned a blob that does not open back to the
// same plaintext.
var ErrVerify = errors.New("sealmigrate: the new seal does not give back what it sealed")

// Report says what Migrate re-sealed.
type Report struct {
	From, To   string // the seals' names
	MasterKeys int    // tenant master key versions
	HMACKeys   int    // tenant HMAC keys
	CAKeys     int    // the CA keys: 1 once the KMS has made its CA, one more per CA rotation
	AuditKeys  int    // the audit log's signing key: 1 once the KMS has made it, 2 once rotated (its first key is kept for verifiers)
	ImportKeys int    // BYOK import private keys: 2 per tenant that asked for import parameters
	SeedKeys   int    // custodian seed keys (SeedKDF v2): 1 per custodian
	Already    int    // items found already sealed under the new seal, kept as they were
}

// Items is the number of items re-sealed (Already not included).
func (r Report) Items() int {
	return r.MasterKeys + r.HMACKeys + r.CAKeys + r.AuditKeys + r.ImportKeys + r.SeedKeys
}

// ItemError is the failure of one item; nothing was changed.
type ItemError struct {
	Item string // e.g. `master key v2 of tenant "acme"`
	Step string // "open" (old seal), "seal" or "verify" (new seal)
	Err  error
}

func (e *ItemError) Error() string {
	return fmt.Sprintf("sealmigrate: %s: %s: %v", e.Item, e.Step, e.Err)
}

func (e *ItemError) Unwrap() error { return e.Err }

// Migrate re-seals every sealed item of st from from to to, in one store
// transaction, and returns what it did; items already under to are kept.
// On error nothing changed (the Report is then zero). No KMS may be
// serving st meanwhile: one that is would go on sealing new items with the
// old seal (the caller holds store.Leases' migration lock). Migrate does
// not close the sealers or the store.
func Migrate(ctx context.Context, st store.Store, from, to seal.Sealer) (Report, error) {
	if from == to {
		return Report{}, errors.New("sealmigrate: the old and the new seal are the same")
	}
	r := Report{From: from.Name(), To: to.Name()}
	err := kms.Reseal(ctx, st, func(it kms.SealedItem) ([]byte, error) {
		out, already, err := reseal(ctx, it, from, to)
		if err != nil {
			return nil, err
		}
		if already {
			r.Already++
			return it.Sealed, nil
		}
		switch it.Kind {
		case kms.SealedMasterKey:
			r.MasterKeys++
		case kms.SealedHMACKey:
			r.HMACKeys++
		case kms.SealedCAKey:
			r.CAKeys++
		case kms.SealedAuditKey:
			r.AuditKeys++
		case kms.SealedImportKey:
			r.ImportKeys++
		case kms.SealedSeedKey:
			r.SeedKeys++
		}
		return out, nil
	})
	if err != nil {
		return Report{}, err
	}
	return r, nil
}

// Census counts a store's sealed items by the seal that opens them.
type Census struct {
	Old     int      // open under the old seal: still to migrate
	New     int      // open under the new seal: migrated
	Neither []string // open under neither (named as in ItemError)
	Total   int
}

// TakeCensus opens every sealed item of st with from, else with to, and counts
// them; it changes nothing.
func TakeCensus(ctx context.Context, st store.Store, from, to seal.Sealer) (Census, error) {
	var c Census
	err := kms.ListSealed(ctx, st, func(it kms.SealedItem) error {
		c.Total++
		if pt, err := from.Open(ctx, it.Sealed, it.AAD); err == nil {
			pt.Wipe()
			c.Old++
			return nil
		}
		if pt, err := to.Open(ctx, it.Sealed, it.AAD); err == nil {
			pt.Wipe()
			c.New++
			return nil
		}
		c.Neither = append(c.Neither, it.String())
		return nil
	})
	return c, err
}

// reseal opens it with from, seals it with to and checks that the result
// opens with to to the same plaintext. An item that does not open with
// from but does with to is already migrated: reseal reports it so.
func reseal(ctx context.Context, it kms.SealedItem, from, to seal.Sealer) (out []byte, already bool, err error) {
	pt, err := from.Open(ctx, it.Sealed, it.AAD)
	if err != nil {
		if again, aerr := to.Open(ctx, it.Sealed, it.AAD); aerr == nil {
			again.Wipe()
			return nil, true, nil
		}
		return nil, false, &ItemError{Item: it.String(), Step: "open", Err: err}
	}
	defer pt.Wipe()
	out, err = to.Seal(ctx, pt, it.AAD)
	if err != nil {
		return nil, false, &ItemError{Item: it.String(), Step: "seal", Err: err}
	}
	check, err := to.Open(ctx, out, it.AAD)
	if err != nil {
		return nil, false, &ItemError{Item: it.String(), Step: "verify", Err: err}
	}
	defer check.Wipe()
	if !check.Equal(pt) {
		return nil, false, &ItemError{Item: it.String(), Step: "verify", Err: ErrVerify}
	}
	return out, false, nil
}
