package kms

import (
	"errors"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/policy"
	"github.com/dcaas/dcaas/internal/store"
)

// Attestation-bound release (issue 16): a key policy's release conditions
// (api.ReleaseConditions) are checked against the sidecar instance a key
// is about to be sealed to — its enclave kind, the attestation profiles
// its last verified TPM quote satisfied and that quote's age — by every
// path that hands a key to a sidecar: rewrap, load, derive (all through
// release) and refresh (newerVersions, which skips such a version). A
// grant is refused at once when an EKB or retained key it names could not
// be released to its instance now. The central path hands no key out:
// the KMS uses the key itself, so release conditions do not apply to it.

// recipientOf is what the release conditions are checked against.
func recipientOf(in *store.Instance) policy.Recipient {
	r := policy.Recipient{Enclave: api.Enclave(in.Enclave), Profiles: in.AttestationProfiles}
	if in.AttestedAt != nil {
		r.AttestedAt = *in.AttestedAt
	}
	return r
}

// releaseAllowed checks the release conditions of key keyID's policy p
// for instance in, now, under the attestation policy in force.
func (k *KMS) releaseAllowed(keyID string, p *api.Policy, in *store.Instance) error {
	r := policy.Release(p)
	if r == nil {
		return nil
	}
	a := k.attestation()
	err := policy.CheckRelease(r, recipientOf(in), k.now(), a.hasProfile)
	if errors.Is(err, policy.ErrReleaseRefused) {
		return api.Errorf(api.CodeAttestationRequired, "Key %s cannot be released to sidecar instance %s: %s.", keyID, in.ID, reasonOf(err))
	}
	return err
}

// reasonOf is the sentence after ErrReleaseRefused's text.
func reasonOf(err error) string {
	s, prefix := err.Error(), policy.ErrReleaseRefused.Error()+": "
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):]
	}
	return s
}

// checkReleaseConditions checks every key of a release for instance in;
// a refusal names the key's index in a batch.
func (k *KMS) checkReleaseConditions(in *store.Instance, keys releasable) error {
	for i, o := range keys {
		if err := k.releaseAllowed(o.md.KeyID, o.md.Policy, in); err != nil {
			return prefixIndex(err, i, len(keys))
		}
	}
	return nil
}

// grantReleasable checks, when a grant is made, the release conditions of
// the keys an EKB names (its metadata, read without opening it: this
// only refuses early; load checks the opened key again).
func (k *KMS) grantReleasable(raw []byte, in *store.Instance) error {
	e, err := format.ParseEKB(raw)
	if err != nil {
		return nil // refused by the caller's own parse, or at load
	}
	var md api.KeyMetadata
	if !decodeMetadata(e.Metadata, &md) {
		return nil
	}
	return k.releaseAllowed(e.KeyID, md.Policy, in)
}
