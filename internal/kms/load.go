package kms

import (
	"context"
	"encoding/hex"
	"errors"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/parallel"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store"
)

// sidecarRecipient is the ephemeral HPKE key a sidecar sent with a load or
// derive: the DEKs are sealed to it on top of the mTLS channel, so a
// TLS-terminating proxy still sees nothing.
func (k *KMS) sidecarRecipient(who *caller, pub api.PublicKey) (*recipient, error) {
	if _, err := kcrypto.ParseKEMPublicKey(pub); err != nil {
		return nil, api.Errorf(api.CodeInvalidArgument, "recipient is not a usable HPKE public key: %v", err)
	}
	return &recipient{instance: *who.Instance, pub: pub}, nil
}

// loadKeys serves the grant flow (docs/design.md, "Grant and secure channel") and retained keys: the
// sidecar presents the grant its custodian obtained, the EKBs (or retained
// key ids) and a fresh ephemeral public key.
func (k *KMS) loadKeys(ctx context.Context, c *call) (any, error) {
	var req api.LoadRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	n := len(req.EKBs) + len(req.KeyIDs)
	if n == 0 {
		return nil, api.Errorf(api.CodeInvalidArgument, "Name at least one EKB or retained key id.")
	}
	if n > k.cfg.MaxBatch {
		return nil, api.Errorf(api.CodeTooLarge, "At most %d keys per request.", k.cfg.MaxBatch)
	}
	to, err := k.sidecarRecipient(c.caller, req.Recipient)
	if err != nil {
		return nil, err
	}
	g, err := k.peekGrant(ctx, c, req.Grant, req.Recipient)
	if err != nil {
		return nil, err
	}
	keys, err := k.openGranted(ctx, c, g, &req)
	if err != nil {
		return nil, k.failGrant(ctx, c, g, err)
	}
	defer keys.wipe()
	return k.release(ctx, c, g, to, keys, "load")
}

// openGranted opens the keys a load asks for, which g must cover.
func (k *KMS) openGranted(ctx context.Context, c *call, g *grant, req *api.LoadRequest) (releasable, error) {
	digests := make([]string, len(req.EKBs))
	for i, raw := range req.EKBs {
		digests[i] = ekbDigest(raw)
	}
	if err := covers(g.EKBDigests, digests, "EKB"); err != nil {
		return nil, err
	}
	if err := covers(g.KeyIDs, req.KeyIDs, "key id"); err != nil {
		return nil, err
	}
	ekbs := append([][]byte(nil), req.EKBs...)
	for _, id := range req.KeyIDs {
		vs, err := k.retainedEKBs(ctx, c.caller.Instance, id)
		if err != nil {
			return nil, err
		}
		ekbs = append(ekbs, vs...)
	}
	return k.openForRelease(ctx, c, ekbs, c.caller.Instance.CustodianDN)
}

// release seals keys to the sidecar to and answers with them once the
// grant g (if any) is used and the release recorded, with the call's
// audit record. Then, in the same transaction, it checks that the keys
// are still releasable (stillReleasable): if a revocation committed in
// between, nothing is stored but the grant's use and the refusal.
func (k *KMS) release(ctx context.Context, c *call, g *grant, to *recipient, keys releasable, flow string) (*api.WrappedKeys, error) {
	if err := k.checkReleaseConditions(&to.instance, keys); err != nil {
		return nil, k.failGrant(ctx, c, g, err)
	}
	out, err := k.wrapTo(to, keys, flow)
	if err != nil {
		return nil, k.failGrant(ctx, c, g, err)
	}
	var refused error
	err = c.commitChecked(ctx, func(tx store.Tx) error {
		if g != nil {
			if err := g.use(ctx, tx, c.caller, k.now()); err != nil {
				return err
			}
		}
		return k.recordRelease(ctx, tx, to.instance.ID, keys)
	}, func(tx store.Tx) error {
		refused = stillReleasable(ctx, tx, keys)
		return refused
	})
	if refused != nil {
		return nil, k.failGrant(ctx, c, g, refused)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// retainedEKBs returns every version that is not retired of a retained
// key that the instance's custodian may name (namedKey), rotating the key
// first if its rotation is due.
func (k *KMS) retainedEKBs(ctx context.Context, in *store.Instance, keyID string) ([][]byte, error) {
	key, err := k.namedKey(ctx, in.Tenant, in.CustodianDN, keyID, true)
	if err != nil {
		return nil, err
	}
	if key, err = k.rotateIfDue(ctx, key); err != nil {
		return nil, err
	}
	vs, err := k.st.ListKeyVersions(ctx, keyID)
	if err != nil {
		return nil, storeErr(err, "key")
	}
	out := make([][]byte, 0, len(vs))
	for _, v := range vs {
		if len(v.EKB) > 0 && v.Version >= key.MinDecryptionVersion {
			out = append(out, v.EKB)
		}
	}
	return out, nil
}

// deriveKeys serves seed derivation (docs/design.md, "Seed derivation").
func (k *KMS) deriveKeys(ctx context.Context, c *call) (any, error) {
	var req api.DeriveRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if len(req.Seeds) == 0 {
		return nil, api.Errorf(api.CodeInvalidArgument, "seeds must name at least one seed.")
	}
	if len(req.Seeds) > k.cfg.MaxBatch {
		return nil, api.Errorf(api.CodeTooLarge, "At most %d seeds per request.", k.cfg.MaxBatch)
	}
	for i, s := range req.Seeds {
		if !kcrypto.SeedDerivable(s.Type) {
			return nil, prefixIndex(api.Errorf(api.CodeInvalidArgument, "Keys of type %q cannot be derived from a seed: use aes-256-gcm, hmac-sha256 or ed25519.", s.Type), i, len(req.Seeds))
		}
		if len(s.Seed) < kcrypto.MinSeedLen || len(s.Seed) > kcrypto.MaxSeedLen {
			return nil, prefixIndex(api.Errorf(api.CodeInvalidArgument, "Seeds must be %d to %d bytes.", kcrypto.MinSeedLen, kcrypto.MaxSeedLen), i, len(req.Seeds))
		}
	}
	to, err := k.sidecarRecipient(c.caller, req.Recipient)
	if err != nil {
		return nil, err
	}
	g, err := k.peekGrant(ctx, c, req.Grant, req.Recipient)
	if err != nil {
		return nil, err
	}
	keys, err := k.deriveGranted(ctx, c, g, &req)
	if err != nil {
		return nil, k.failGrant(ctx, c, g, err)
	}
	defer keys.wipe()
	c.keyID = keys[len(keys)-1].md.KeyID
	return k.release(ctx, c, g, to, keys, "derive")
}

// deriveGranted derives the keys of the seeds a derive asks for, which g
// must cover.
func (k *KMS) deriveGranted(ctx context.Context, c *call, g *grant, req *api.DeriveRequest) (releasable, error) {
	t, err := k.st.GetTenant(ctx, c.caller.Tenant)
	if err != nil {
		return nil, storeErr(err, "tenant")
	}
	hk, err := k.tenantHMACKey(ctx, t)
	if err != nil {
		return nil, err
	}
	defer hk.Wipe()
	macs := make([]string, len(req.Seeds))
	for i, s := range req.Seeds {
		macs[i] = hex.EncodeToString(kcrypto.SeedMAC(hk, s.Seed))
	}
	if err := covers(g.SeedMACs, macs, "seed"); err != nil {
		return nil, err
	}
	owner := c.caller.Instance.CustodianDN
	keys := make(releasable, len(req.Seeds))
	// PBKDF2 is the cost here: derive on every core.
	errs := make([]error, len(req.Seeds))
	parallel.For(len(req.Seeds), 1, func(i int) { keys[i], errs[i] = k.deriveOne(hk, t.Name, owner, req.Seeds[i]) })
	if err := errors.Join(errs...); err != nil {
		keys.wipe()
		return nil, err
	}
	return keys, nil
}

// deriveOne derives the key of one seed with its metadata.
func (k *KMS) deriveOne(hk *secret.Bytes, tenant, owner string, s api.Seed) (*openedKey, error) {
	dek, err := kcrypto.DeriveSeedKey(kcrypto.SeedKDFv1, hk, s.Seed)
	if err != nil {
		return nil, err
	}
	md := api.KeyMetadata{
		KeyID: kcrypto.SeedKeyID(hk, s.Type, s.Seed), Version: 1, Tenant: tenant, Type: s.Type,
		Owner: owner, Purpose: "seed-derived", CreatedAt: k.now(),
		Labels: map[string]string{"dcaas.seed_kdf": "v1"},
	}
	if s.Type.Signing() {
		if md.PublicKeyPEM, err = kcrypto.PublicKeyPEM(s.Type, dek); err != nil {
			dek.Wipe()
			return nil, err
		}
	}
	return &openedKey{md: md, material: dek}, nil
}
