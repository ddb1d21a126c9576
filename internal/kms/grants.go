package kms

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/store"
)

const (
	grantPrefix     = "dcgr_"
	defaultGrantTTL = 5 * time.Minute
	maxGrantTTL     = time.Hour
)

// grantPayload is what a grant binds, stored next to its hash. It holds
// no secret: EKBs by digest, seeds by keyed MAC.
type grantPayload struct {
	InstanceID string   `json:"instance_id"`
	EKBDigests []string `json:"ekb_digests,omitempty"`
	KeyIDs     []string `json:"key_ids,omitempty"`
	SeedMACs   []string `json:"seed_macs,omitempty"`
}

func ekbDigest(raw []byte) string {
	e, err := format.ParseEKB(raw)
	if err != nil {
		return ""
	}
	d := e.Digest()
	return hex.EncodeToString(d[:])
}

// boundInstance loads an instance the caller (a custodian) may direct:
// live, of its tenant, bound to it.
func (k *KMS) boundInstance(ctx context.Context, who *caller, id string) (store.Instance, error) {
	in, err := k.st.GetInstance(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return in, api.Errorf(api.CodeNotFound, "There is no instance %q.", id)
	}
	if err != nil {
		return in, storeErr(err, "instance")
	}
	switch {
	case in.Tenant != who.Tenant:
		return in, api.Errorf(api.CodeWrongTenant, "Instance %s belongs to another tenant.", id)
	case in.CustodianDN != who.DN:
		return in, api.Errorf(api.CodeForbidden, "Instance %s is bound to another custodian.", id)
	case in.RevokedAt != nil:
		return in, api.Errorf(api.CodeRevoked, "Instance %s has been revoked.", id)
	}
	return in, nil
}

func (k *KMS) createGrant(ctx context.Context, c *call) (any, error) {
	var req api.GrantRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	n := len(req.EKBs) + len(req.KeyIDs) + len(req.Seeds)
	switch {
	case req.InstanceID == "":
		return nil, api.Errorf(api.CodeInvalidArgument, "instance_id is required.")
	case n == 0:
		return nil, api.Errorf(api.CodeInvalidArgument, "A grant must name at least one EKB, key id or seed.")
	case n > k.cfg.MaxBatch:
		return nil, api.Errorf(api.CodeTooLarge, "A grant may name at most %d keys.", k.cfg.MaxBatch)
	case req.TTLSeconds < 0 || int64(req.TTLSeconds) > int64(maxGrantTTL/time.Second): // in seconds: no overflow
		return nil, api.Errorf(api.CodeInvalidArgument, "ttl_seconds must be between 1 and %d.", int(maxGrantTTL/time.Second))
	}
	in, err := k.boundInstance(ctx, c.caller, req.InstanceID)
	if err != nil {
		return nil, err
	}
	p := grantPayload{InstanceID: in.ID}
	for i, raw := range req.EKBs {
		e, err := format.ParseEKB(raw)
		if err != nil {
			return nil, prefixIndex(api.Errorf(api.CodeInvalidEKB, "The EKB is malformed."), i, len(req.EKBs))
		}
		if e.Tenant != c.caller.Tenant {
			return nil, prefixIndex(api.Errorf(api.CodeWrongTenant, "The EKB belongs to another tenant."), i, len(req.EKBs))
		}
		if err := k.grantReleasable(raw, &in); err != nil {
			return nil, prefixIndex(err, i, len(req.EKBs))
		}
		d := e.Digest()
		p.EKBDigests = append(p.EKBDigests, hex.EncodeToString(d[:]))
	}
	for _, id := range req.KeyIDs {
		key, err := k.namedKey(ctx, c.caller.Tenant, c.caller.DN, id, false)
		if err != nil {
			return nil, err
		}
		if !key.Retained {
			return nil, api.Errorf(api.CodeInvalidArgument, "Key %s is not retained by the KMS; grant its EKB instead.", id)
		}
		if v, err := k.st.GetKeyVersion(ctx, id, key.CurrentVersion); err == nil {
			if err := k.grantReleasable(v.EKB, &in); err != nil { // release conditions: release_attest.go
				return nil, err
			}
		}
		p.KeyIDs = append(p.KeyIDs, id)
	}
	if len(req.Seeds) > 0 {
		hk, err := k.tenantHMACKey(ctx, c.caller.Tenant)
		if err != nil {
			return nil, err
		}
		defer hk.Wipe()
		for _, seed := range req.Seeds {
			if len(seed) < kcrypto.MinSeedLen || len(seed) > kcrypto.MaxSeedLen {
				return nil, api.Errorf(api.CodeInvalidArgument, "Seeds must be %d to %d bytes.", kcrypto.MinSeedLen, kcrypto.MaxSeedLen)
			}
			p.SeedMACs = append(p.SeedMACs, hex.EncodeToString(kcrypto.SeedMAC(hk, seed)))
		}
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	ttl := defaultGrantTTL
	if req.TTLSeconds > 0 {
		ttl = time.Duration(req.TTLSeconds) * time.Second
	}
	grant, hash := kcrypto.NewToken(grantPrefix)
	now := k.now()
	exp := now.Add(ttl)
	err = c.commit(ctx, func(tx store.Tx) error {
		return putOneTime(ctx, tx, store.OneTimeSecret{
			Hash: hash, Kind: store.OneTimeGrant, Tenant: c.caller.Tenant, Subject: in.ID,
			Payload: payload, CreatedBy: c.caller.DN, CreatedAt: now, ExpiresAt: exp,
		}, "grant")
	})
	if err != nil {
		return nil, err
	}
	return api.Grant{Grant: grant, ExpiresAt: exp}, nil
}

// grant is a grant a sidecar presented with one request: read and checked
// but not yet used.
type grant struct {
	grantPayload
	hash       []byte // the grant's (kcrypto.HashToken)
	redemption []byte // the request's: redemptionHash(hash, recipient)
	raw        []byte // the payload as stored
	tenant     string
	instance   string // the sidecar instance it names, which presents it
	expires    time.Time
	// again: the grant was used by this very request, presented again
	// (its answer was lost), so there is nothing left to use.
	again bool
}

// peekGrant reads the grant the calling sidecar presents with the request
// whose recipient key is to, without using it: the call uses it in the
// transaction that records the call (release, or failGrant for a call
// that fails after the grant was checked: a grant is used by its first
// presentation whatever the outcome). A grant is used once; the request
// that used it may be presented again until the grant expires (a KMS
// replica died, a connection was cut) and gets the same keys, sealed to
// the same recipient. Any other request is told the grant is used. A
// grant named for another instance is refused without being used.
func (k *KMS) peekGrant(ctx context.Context, c *call, token string, to api.PublicKey) (*grant, error) {
	if token == "" {
		return nil, api.Errorf(api.CodeInvalidArgument, "grant is required.")
	}
	hash, now := kcrypto.HashToken(token), k.now()
	g := &grant{hash: hash, redemption: redemptionHash(hash, to)}
	s, err := k.st.PeekOneTime(ctx, store.OneTimeGrant, hash, now)
	if errors.Is(err, store.ErrUsed) && g.redeemed(ctx, k.st, c.caller, now) {
		k.log.Info("grant request presented again (a retry)", "instance", c.caller.Name)
		return g, nil
	}
	if err != nil {
		return nil, consumeErr(err, "grant")
	}
	if err := g.read(s, c.caller); err != nil {
		return nil, err
	}
	return g, nil
}

// read fills g from the stored grant (or redemption) s and checks that it
// names who.
func (g *grant) read(s store.OneTimeSecret, who *caller) error {
	if err := json.Unmarshal(s.Payload, &g.grantPayload); err != nil {
		return err
	}
	if s.Tenant != who.Tenant || g.InstanceID != who.Name {
		return api.Errorf(api.CodeForbidden, "The grant was issued for another sidecar instance.")
	}
	g.raw, g.tenant, g.instance, g.expires = s.Payload, s.Tenant, who.Name, s.ExpiresAt
	return nil
}

// redeemed reports whether g was used by this very request (of who, to
// the same recipient), before the grant expires; if so g is that use's.
func (g *grant) redeemed(ctx context.Context, st reader, who *caller, now time.Time) bool {
	r, err := st.GetOneTime(ctx, store.OneTimeGrantRedemption, g.redemption)
	if err != nil || !now.Before(r.ExpiresAt) || g.read(r, who) != nil {
		return false
	}
	g.again = true
	return true
}

// use uses the grant through tx, exactly once across all callers and
// replicas, and records which request used it (its redemption), so that
// request may be presented again. A request presented again uses
// nothing. Nor does a copy of this request that lost the race to another
// copy (the sidecar resent it while the first was still running).
func (g *grant) use(ctx context.Context, tx store.Tx, who *caller, now time.Time) error {
	if g.again {
		return nil
	}
	_, err := tx.ConsumeOneTime(ctx, store.OneTimeGrant, g.hash, now)
	if errors.Is(err, store.ErrUsed) && g.redeemed(ctx, tx, who, now) {
		return nil
	}
	if err != nil {
		return consumeErr(err, "grant")
	}
	return putOneTime(ctx, tx, store.OneTimeSecret{
		Hash: g.redemption, Kind: store.OneTimeGrantRedemption, Tenant: g.tenant, Subject: g.instance,
		Payload: g.raw, CreatedBy: g.instance, CreatedAt: now, ExpiresAt: g.expires,
	}, "grant")
}

// failGrant answers call c, which presented grant g (nil: none) and fails
// with cause after g was checked: the grant is used up all the same, with
// the call's audit record, so the same request presented again gets the
// same answer and any other is told the grant is used.
func (k *KMS) failGrant(ctx context.Context, c *call, g *grant, cause error) error {
	if g == nil {
		return cause
	}
	return c.fail(ctx, func(tx store.Tx) error { return g.use(ctx, tx, c.caller, k.now()) }, cause)
}

// redemptionHash names the request that used the grant of hash: the grant
// and the recipient key its answer is sealed to.
func redemptionHash(grantHash []byte, to api.PublicKey) []byte {
	h := sha256.New()
	h.Write([]byte("dcaas grant redemption\x00"))
	h.Write(grantHash)
	h.Write([]byte(to.KEM))
	h.Write([]byte{0})
	h.Write(to.PublicKey)
	return h.Sum(nil)
}

// covers checks that every requested item is bound by the grant: a set
// of the bound items, since a grant binds up to MaxBatch of them (a scan
// per item cost 10 ms for a batch of 1,000).
func covers(bound []string, asked []string, what string) error {
	set := make(map[string]struct{}, len(bound))
	for _, b := range bound {
		set[b] = struct{}{}
	}
	for i, a := range asked {
		if _, ok := set[a]; a == "" || !ok {
			return prefixIndex(api.Errorf(api.CodeForbidden, "The grant does not cover this %s.", what), i, len(asked))
		}
	}
	return nil
}
