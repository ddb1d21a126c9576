package kms

import (
	"context"
	"errors"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/policy"
	"github.com/dcaas/dcaas/internal/store"
)

// Keys named by id (issue 12). A custodian names a retained key by id on
// the central path and in a grant, and its sidecar names it in a load. To
// anyone but the key's owner and the custodians its policy names, the key
// does not exist: the answer is errNoKey, word for word, whether the id is
// another custodian's key, another tenant's, or nobody's. (The key's own
// routes, GET and DELETE /v1/datakeys/{key_id}, answer the same way for
// anyone but the owner: ownedKey.) Sidecars never learn a key id they
// were not given: usage reports, refresh and the revocation feed skip
// keys not released to the instance without a word.

// errNoKey is the answer for a key id the caller may not name.
func errNoKey(id string) error {
	return api.Errorf(api.CodeNotFound, "There is no retained key %q in this tenant that you may use; a key that is not retained is named by its EKB.", id)
}

// namedKey returns the key that id names for a caller of tenant bound to
// dn (a custodian, or the custodian a sidecar is bound to): one of the
// tenant's keys that dn owns or that its policy names. With retained set
// the key must also be retained. Anything else is errNoKey.
func (k *KMS) namedKey(ctx context.Context, tenant, dn, id string, retained bool) (store.Key, error) {
	key, err := k.st.GetKey(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Key{}, errNoKey(id)
	case err != nil:
		return store.Key{}, storeErr(err, "key")
	case key.Tenant != tenant || (retained && !key.Retained):
		return store.Key{}, errNoKey(id)
	case key.Owner == dn:
		return key, nil
	}
	named, err := k.policyNames(ctx, key, dn)
	if err != nil {
		return store.Key{}, err
	}
	if !named {
		return store.Key{}, errNoKey(id)
	}
	return key, nil
}

// policyNames reports whether key's policy, as its current version's EKB
// binds it, names dn for at least one action (policy.Releasable). A key
// whose current EKB the KMS does not hold (registered before it kept
// them) names nobody but its owner.
func (k *KMS) policyNames(ctx context.Context, key store.Key, dn string) (bool, error) {
	v, err := k.st.GetKeyVersion(ctx, key.KeyID, key.CurrentVersion)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, storeErr(err, "key version")
	}
	if len(v.EKB) == 0 {
		return false, nil
	}
	o, err := k.openEKB(ctx, key.Tenant, v.EKB)
	if err != nil {
		k.log.Error("a stored EKB does not open", "key", key.KeyID, "version", key.CurrentVersion, "err", err)
		return false, nil
	}
	o.material.Wipe()
	return policy.Releasable(o.md.Policy, o.md.Owner, dn), nil
}
