package kms

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/policy"
	"github.com/dcaas/dcaas/internal/store"
)

func apiInstance(in store.Instance) api.Instance {
	return api.Instance{
		InstanceID: in.ID, CustodianDN: in.CustodianDN, Enclave: api.Enclave(in.Enclave),
		EnrolledAt: in.EnrolledAt, Revoked: in.RevokedAt != nil,
		AttestedAt: in.AttestedAt, AttestationProfiles: in.AttestationProfiles, AKFingerprint: in.AKFingerprint,
		Manufacturer: manufacturerOf(in),
	}
}

// manufacturerOf is the manufacturer whose EK certificate vouched for in's
// attestation key at enrollment; "" when none did.
func manufacturerOf(in store.Instance) string {
	name, ok := strings.CutPrefix(in.AKTrust, trustEKPrefix)
	if !ok {
		return ""
	}
	return name
}

func (k *KMS) listInstances(ctx context.Context, c *call) (any, error) {
	tenant, dn := "", ""
	if c.caller.Role == api.RoleCustodian {
		tenant, dn = c.caller.Tenant, c.caller.DN
	}
	list, err := k.st.ListInstances(ctx, tenant, dn)
	if err != nil {
		return nil, storeErr(err, "instances")
	}
	out := api.Instances{Instances: make([]api.Instance, 0, len(list))}
	for _, in := range list {
		out.Instances = append(out.Instances, apiInstance(in))
	}
	return out, nil
}

func (k *KMS) revokeInstance(ctx context.Context, c *call) (any, error) {
	id := c.r.PathValue("id")
	in, err := k.st.GetInstance(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, api.Errorf(api.CodeNotFound, "There is no instance %q.", id)
	}
	if err != nil {
		return nil, storeErr(err, "instance")
	}
	c.tenant, c.keyID = in.Tenant, id
	if c.caller.Role == api.RoleCustodian && (in.Tenant != c.caller.Tenant || in.CustodianDN != c.caller.DN) {
		// Same answer as an unknown id: a custodian learns nothing about
		// instances it is not bound to.
		return nil, api.Errorf(api.CodeNotFound, "There is no instance %q.", id)
	}
	return k.revokeInstanceID(ctx, c, id)
}

// retireInstance serves DELETE /v1/instances/self: a sidecar that stops
// for good (a software enclave's identity dies with its process) revokes
// its own instance, so a deleted pod or a stopped unit leaves no live
// instance behind.
func (k *KMS) retireInstance(ctx context.Context, c *call) (any, error) {
	c.keyID = c.caller.Instance.ID
	return k.revokeInstanceID(ctx, c, c.caller.Instance.ID)
}

// revokeInstanceID revokes instance id and its certificates, with the
// audit record of call c. Revoking a revoked instance changes nothing.
func (k *KMS) revokeInstanceID(ctx context.Context, c *call, id string) (any, error) {
	if err := c.commit(ctx, func(tx store.Tx) error { return revokeInstances(ctx, tx, []string{id}, k.now()) }); err != nil {
		return nil, err
	}
	k.log.Info("sidecar instance revoked", "instance", id, "by", c.caller.DN)
	return api.Revoked{Revoked: true}, nil
}

// revokeInstances revokes the instances ids and their certificates in tx.
func revokeInstances(ctx context.Context, tx store.Tx, ids []string, now time.Time) error {
	for _, id := range ids {
		if err := tx.RevokeInstance(ctx, id, now); err != nil {
			return storeErr(err, "instance")
		}
		for _, kind := range []string{store.CertInstance, store.CertWrapping} {
			if err := tx.RevokeCertsOf(ctx, kind, id, now); err != nil {
				return storeErr(err, "certificate")
			}
		}
	}
	return nil
}

// revokePlatform serves POST /v1/instances/revoke-platform (admin):
// every live instance enrolled with the TPM attestation key named, or
// vouched for by the TPM manufacturer named, is revoked, with its
// certificates, in one transaction; each stops serving at its next poll.
// Removing the AK or the manufacturer from the attestation policy only
// stops new enrollments and re-attestations: a platform taken out of
// service (or no longer trusted) keeps what it holds until its leases end
// unless its instances are revoked, and a compromised one would not
// re-attest.
func (k *KMS) revokePlatform(ctx context.Context, c *call) (any, error) {
	var req api.RevokePlatformRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var match func(store.Instance) bool
	var logAttr []any
	switch {
	case (req.AKFingerprint == "") == (req.Manufacturer == ""):
		return nil, api.Errorf(api.CodeInvalidArgument, "Name exactly one of ak_fingerprint and manufacturer.")
	case req.Manufacturer != "":
		name := req.Manufacturer
		if !policy.ValidProfileName(name) {
			return nil, api.Errorf(api.CodeInvalidArgument, "manufacturer must be a manufacturer's name as the attestation policy gives it (a-z, 0-9, '.', '_', '-'; at most 63).")
		}
		c.keyID = "manufacturer:" + name
		match = func(in store.Instance) bool { return manufacturerOf(in) == name }
		logAttr = []any{"manufacturer", name}
	default:
		fp := strings.ToLower(req.AKFingerprint)
		if b, err := hex.DecodeString(fp); err != nil || len(b) != sha256.Size {
			return nil, api.Errorf(api.CodeInvalidArgument, "ak_fingerprint must be a hex SHA-256 (64 digits), as GET /v1/instances and the attestation policy give it.")
		}
		c.keyID = "ak:" + fp
		match = func(in store.Instance) bool { return in.AKFingerprint == fp }
		logAttr = []any{"ak_fingerprint", fp}
	}
	all, err := k.st.ListInstances(ctx, "", "")
	if err != nil {
		return nil, storeErr(err, "instances")
	}
	out := api.RevokedInstances{Revoked: []string{}}
	for _, in := range all {
		if in.RevokedAt == nil && match(in) {
			out.Revoked = append(out.Revoked, in.ID)
		}
	}
	if err := c.commit(ctx, func(tx store.Tx) error { return revokeInstances(ctx, tx, out.Revoked, k.now()) }); err != nil {
		return nil, err
	}
	if len(out.Revoked) > 0 {
		k.log.Info("sidecar instances of a TPM platform or manufacturer revoked", append(logAttr, "instances", len(out.Revoked), "by", c.caller.DN)...)
	}
	return out, nil
}

const auditPageSize = 1000

func (k *KMS) readAudit(ctx context.Context, c *call) (any, error) {
	after, err := c.cursor("after", "after must be a non-negative record number.")
	if err != nil {
		return nil, err
	}
	// Records at or below the start are pruned, perhaps not deleted yet.
	start, err := k.AuditStart(ctx)
	if err != nil {
		return nil, storeErr(err, "audit log start")
	}
	after = max(after, start.Seq)
	recs, err := k.st.AuditAfter(ctx, after, auditPageSize)
	if err != nil {
		return nil, storeErr(err, "audit log")
	}
	page := api.AuditPage{Records: make([]api.AuditRecord, 0, len(recs)), Next: after}
	for _, r := range recs {
		page.Records = append(page.Records, api.AuditRecord{
			Seq: r.Seq, Time: r.Time, Caller: r.Caller, Role: r.Role, Action: r.Action, Tenant: r.Tenant,
			KeyID: r.KeyID, Outcome: r.Outcome, Code: r.Code, PrevHash: r.PrevHash, Hash: r.Hash, Signature: r.Sig,
		})
		page.Next = r.Seq
	}
	return page, nil
}
