package kms

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
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
		p.KeyIDs = append(p.KeyIDs, id)
	}
	if len(req.Seeds) > 0 {
		t, err := k.st.GetTenant(ctx, c.caller.Tenant)
		if err != nil {
			return nil, storeErr(err, "tenant")
		}
		hk, err := k.tenantHMACKey(ctx, t)
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
	err = k.st.PutOneTime(ctx, store.OneTimeSecret{
		Hash: hash, Kind: store.OneTimeGrant, Tenant: c.caller.Tenant, Subject: in.ID,
		Payload: payload, CreatedBy: c.caller.DN, CreatedAt: now, ExpiresAt: exp,
	})
	if err != nil {
		return nil, storeErr(err, "grant")
	}
	return api.Grant{Grant: grant, ExpiresAt: exp}, nil
}

// consumeGrant uses grant for the request of who whose recipient key is
// to. A grant is used once; the request that used it may be presented
// again until the grant expires (its answer was lost: a KMS replica died,
// a connection was cut) and gets the same keys, sealed to the same
// recipient. Any other request is told the grant is used. A grant named
// for another instance is refused without being used.
func (k *KMS) consumeGrant(ctx context.Context, who *caller, grant string, to api.PublicKey) (*grantPayload, error) {
	if grant == "" {
		return nil, api.Errorf(api.CodeInvalidArgument, "grant is required.")
	}
	hash, now := kcrypto.HashToken(grant), k.now()
	redemption := redemptionHash(hash, to)
	var p *grantPayload
	err := k.st.InTx(ctx, func(tx store.Tx) error {
		g, err := tx.PeekOneTime(ctx, store.OneTimeGrant, hash, now)
		if err != nil {
			return err
		}
		if p, err = grantFor(g, who); err != nil {
			return err
		}
		if _, err := tx.ConsumeOneTime(ctx, store.OneTimeGrant, hash, now); err != nil {
			return err
		}
		return tx.PutOneTime(ctx, store.OneTimeSecret{
			Hash: redemption, Kind: store.OneTimeGrantRedemption, Tenant: g.Tenant, Subject: who.Name,
			Payload: g.Payload, CreatedBy: who.Name, CreatedAt: now, ExpiresAt: g.ExpiresAt,
		})
	})
	if errors.Is(err, store.ErrUsed) {
		if r, gerr := k.st.GetOneTime(ctx, store.OneTimeGrantRedemption, redemption); gerr == nil && now.Before(r.ExpiresAt) {
			if p, perr := grantFor(r, who); perr == nil {
				k.log.Info("grant request presented again (a retry)", "instance", who.Name)
				return p, nil
			}
		}
	}
	var ae *api.Error
	switch {
	case errors.As(err, &ae):
		return nil, err // the grant names another instance
	case err != nil:
		return nil, consumeErr(err, "grant")
	}
	return p, nil
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

// grantFor decodes grant g's payload and checks that it names who.
func grantFor(g store.OneTimeSecret, who *caller) (*grantPayload, error) {
	var p grantPayload
	if err := json.Unmarshal(g.Payload, &p); err != nil {
		return nil, err
	}
	if g.Tenant != who.Tenant || p.InstanceID != who.Name {
		return nil, api.Errorf(api.CodeForbidden, "The grant was issued for another sidecar instance.")
	}
	return &p, nil
}

// covers checks that every requested item is bound by the grant.
func covers(bound []string, asked []string, what string) error {
	for i, a := range asked {
		if a == "" || !slices.Contains(bound, a) {
			return prefixIndex(api.Errorf(api.CodeForbidden, "The grant does not cover this %s.", what), i, len(asked))
		}
	}
	return nil
}
