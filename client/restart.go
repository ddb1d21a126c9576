package client

import (
	"context"
	"errors"
	"fmt"
)

// EnsureEnrolled makes sure the sidecar behind sc is enrolled. A sidecar
// that restarted without a token (a software enclave keeps no key across
// restarts) reports "enrolled": false and waits; the custodian behind kms
// then mints a one-time enrollment token for itself and hands it to the
// sidecar over its bound connection, so no person is involved, and revokes
// the instance the sidecar's data dir held before the restart (its keys
// died with the old process). It reports whether it enrolled the sidecar
// now (then reload its keys, e.g. with LoadStore). A revoked sidecar is
// ErrRevoked: it will not serve again.
func EnsureEnrolled(ctx context.Context, kms *KMS, sc *Sidecar) (bool, error) {
	r, err := (&Agent{KMS: kms, Sidecar: sc}).Reconcile(ctx)
	return r.Enrolled != "", err
}

// Skipped is a stored EKB that LoadStore did not load, and why: the KMS
// refused to release it (disabled, retired, expired, policy).
type Skipped struct {
	KeyID   string
	Version int
	Err     error
}

// LoadStore loads every key version kept in store into sc by rewrap (see
// LoadByRewrap), so a restarted sidecar gets back what it held: every
// version, so old ciphertexts still decrypt, and the newest encrypts.
// Versions the KMS refuses to release (a disabled key, a retired version,
// an expired key) are skipped and listed, not fatal; any other failure
// stops the load and is returned with what was loaded so far.
func LoadStore(ctx context.Context, kms *KMS, sc *Sidecar, store EKBStore, opts ...FlowOption) ([]string, []Skipped, error) {
	list, err := store.List()
	if err != nil {
		return nil, nil, err
	}
	return loadVersions(ctx, kms, sc, store, list, opts...)
}

// loadVersions loads the versions list of store into sc, as LoadStore.
func loadVersions(ctx context.Context, kms *KMS, sc *Sidecar, store EKBStore, list []EKBVersion, opts ...FlowOption) ([]string, []Skipped, error) {
	var err error
	ekbs := make([][]byte, len(list))
	for i, v := range list {
		if ekbs[i], err = store.Get(v.KeyID, v.Version); err != nil {
			return nil, nil, err
		}
	}
	if len(ekbs) == 0 {
		return nil, nil, nil
	}
	o := flowOpts(opts)
	cert, err := sc.WrappingCertificate(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("client: the sidecar's wrapping certificate: %w", err)
	}
	var loaded idSet
	var skipped []Skipped
	load := func(batch [][]byte) error {
		wrapped, err := kms.Rewrap(ctx, cert, batch)
		if err != nil {
			return err
		}
		ids, err := sc.Import(ctx, wrapped)
		if err != nil {
			return err
		}
		loaded.add(ids)
		return nil
	}
	err = o.batches(len(ekbs), func(lo, hi int) error {
		err := load(ekbs[lo:hi])
		if err == nil || !refusedRelease(err) {
			return err
		}
		// One refusal refuses the whole batch: load its EKBs one by one
		// to skip only the refused ones.
		for i := lo; i < hi; i++ {
			err := load(ekbs[i : i+1])
			switch {
			case err == nil:
			case refusedRelease(err):
				skipped = append(skipped, Skipped{KeyID: list[i].KeyID, Version: list[i].Version, Err: err})
			default:
				return err
			}
		}
		return nil
	})
	return loaded.ids, skipped, err
}

// refusedRelease reports whether err is the KMS refusing to release a key
// for a reason that concerns that key alone.
func refusedRelease(err error) bool {
	for _, s := range []error{ErrRevoked, ErrExpired, ErrPolicyDenied, ErrInvalidEKB, ErrUsageLimitExceeded} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}
