package kms

import (
	"context"
	"encoding/hex"
	"errors"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/parallel"
	"github.com/dcaas/dcaas/internal/policy"
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
	if err := k.checkBatch(len(req.EKBs)+len(req.KeyIDs), "Name at least one EKB or retained key id.", "keys"); err != nil {
		return nil, err
	}
	return k.releaseGranted(ctx, c, req.Grant, req.Recipient, "load", func(g *grant) (releasable, error) {
		return k.openGranted(ctx, c, g, &req)
	})
}

// releaseGranted serves a checked load or derive request: it checks the
// sidecar's recipient key and reads the grant token, has keys open the
// keys that g covers (a failure uses the grant up, failGrant), and
// releases them (release) in the flow named.
func (k *KMS) releaseGranted(ctx context.Context, c *call, token string, pub api.PublicKey, flow string, keys func(g *grant) (releasable, error)) (any, error) {
	to, err := k.sidecarRecipient(c.caller, pub)
	if err != nil {
		return nil, err
	}
	g, err := k.peekGrant(ctx, c, token, pub)
	if err != nil {
		return nil, err
	}
	opened, err := keys(g)
	if err != nil {
		return nil, k.failGrant(ctx, c, g, err)
	}
	defer opened.wipe()
	return k.release(ctx, c, g, to, opened, flow)
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
	c.readsKept = true // a grant's use and release records: nothing readcache.go holds
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
	if err := k.checkBatch(len(req.Seeds), "seeds must name at least one seed.", "seeds"); err != nil {
		return nil, err
	}
	owner := c.caller.Instance.CustodianDN
	seeds := make([]seedRequest, len(req.Seeds))
	for i, s := range req.Seeds {
		var err error
		if seeds[i], err = checkSeed(s, owner, !k.cfg.RefuseSeedKDFv1); err != nil {
			return nil, prefixItem(err, "seed", i, len(req.Seeds))
		}
	}
	return k.releaseGranted(ctx, c, req.Grant, req.Recipient, "derive", func(g *grant) (releasable, error) {
		keys, err := k.deriveGranted(ctx, c, g, seeds)
		if err == nil {
			c.keyID = keys[len(keys)-1].md.KeyID
		}
		return keys, err
	})
}

// seedRequest is one checked seed of a derive: its version, and for v2
// its normalized policy and that policy's canonical bytes.
type seedRequest struct {
	api.Seed
	kdf       api.SeedKDF
	policy    *api.Policy
	canonical []byte
}

// checkSeed checks one seed of a derive by a sidecar bound to owner; v1
// says whether this KMS still derives with SeedKDF v1.
func checkSeed(s api.Seed, owner string, v1 bool) (seedRequest, error) {
	r := seedRequest{Seed: s, kdf: s.KDF}
	if r.kdf == "" {
		r.kdf = api.SeedKDFv2
	}
	switch {
	case r.kdf != api.SeedKDFv1 && r.kdf != api.SeedKDFv2:
		return r, api.Errorf(api.CodeInvalidArgument, "kdf must be %q (the default) or %q, not %q.", api.SeedKDFv2, api.SeedKDFv1, s.KDF)
	case !kcrypto.SeedDerivable(s.Type):
		return r, api.Errorf(api.CodeInvalidArgument, "Keys of type %q cannot be derived from a seed: use aes-256-gcm, hmac-sha256 or ed25519.", s.Type)
	case len(s.Seed) < kcrypto.MinSeedLen || len(s.Seed) > kcrypto.MaxSeedLen:
		return r, api.Errorf(api.CodeInvalidArgument, "Seeds must be %d to %d bytes.", kcrypto.MinSeedLen, kcrypto.MaxSeedLen)
	case r.kdf == api.SeedKDFv1 && !v1:
		return r, api.Errorf(api.CodeForbidden, "SeedKDF v1 is turned off on this KMS (kms serve --seed-kdf-v1=false): derive with kdf %q.", api.SeedKDFv2)
	case r.kdf == api.SeedKDFv1 && s.Policy != nil:
		return r, api.Errorf(api.CodeInvalidArgument, "SeedKDF v1 binds no policy: derive with kdf %q to give the key a policy.", api.SeedKDFv2)
	case r.kdf == api.SeedKDFv1:
		return r, nil
	}
	var err error
	if r.policy, err = policy.Normalize(s.Policy); err != nil {
		return r, api.Errorf(api.CodeInvalidArgument, "%v", err)
	}
	if r.canonical, err = policy.Canonical(r.policy); err != nil {
		return r, api.Errorf(api.CodeInvalidArgument, "%v", err)
	}
	if !policy.Releasable(r.policy, owner, owner) {
		return r, api.Errorf(api.CodePolicyDenied, "The policy does not name %s, the custodian deriving the key.", owner)
	}
	return r, nil
}

// deriveGranted derives the keys of the seeds a derive asks for, which g
// must cover.
func (k *KMS) deriveGranted(ctx context.Context, c *call, g *grant, seeds []seedRequest) (releasable, error) {
	tenant := c.caller.Tenant
	hk, err := k.tenantHMACKey(ctx, tenant)
	if err != nil {
		return nil, err
	}
	defer hk.Wipe()
	macs := make([]string, len(seeds))
	v2 := false
	for i, s := range seeds {
		macs[i] = hex.EncodeToString(kcrypto.SeedMAC(hk, s.Seed.Seed))
		v2 = v2 || s.kdf == api.SeedKDFv2
	}
	if err := covers(g.SeedMACs, macs, "seed"); err != nil {
		return nil, err
	}
	owner := c.caller.Instance.CustodianDN
	var csk *secret.Bytes
	if v2 {
		if csk, err = k.custodianSeedKey(ctx, tenant, owner); err != nil {
			return nil, err
		}
		defer csk.Wipe()
	}
	keys := make(releasable, len(seeds))
	// PBKDF2 (v1) is the cost here: derive on every core.
	errs := make([]error, len(seeds))
	parallel.For(len(seeds), 1, func(i int) { keys[i], errs[i] = k.deriveOne(hk, csk, tenant, owner, seeds[i]) })
	if err := errors.Join(errs...); err != nil {
		keys.wipe()
		return nil, err
	}
	return keys, nil
}

// deriveOne derives the key of one seed with its metadata: under the
// tenant HMAC key hk for v1, under the custodian seed key csk for v2.
func (k *KMS) deriveOne(hk, csk *secret.Bytes, tenant, owner string, s seedRequest) (*openedKey, error) {
	var (
		dek *secret.Bytes
		id  string
		err error
	)
	if s.kdf == api.SeedKDFv1 {
		dek, err = kcrypto.DeriveSeedKey(kcrypto.SeedKDFv1, hk, s.Seed.Seed)
		id = kcrypto.SeedKeyID(hk, s.Type, s.Seed.Seed)
	} else {
		dek, id, err = kcrypto.DeriveSeedKeyV2(csk, s.Seed.Seed, s.Type, s.canonical)
	}
	if err != nil {
		return nil, err
	}
	md := api.KeyMetadata{
		KeyID: id, Version: 1, Tenant: tenant, Type: s.Type,
		Owner: owner, Purpose: "seed-derived", CreatedAt: k.now(), Policy: s.policy,
		Labels: map[string]string{"dcaas.seed_kdf": string(s.kdf)},
	}
	if s.Type.Signing() {
		if md.PublicKeyPEM, err = kcrypto.PublicKeyPEM(s.Type, dek); err != nil {
			dek.Wipe()
			return nil, err
		}
	}
	return &openedKey{md: md, material: dek}, nil
}
