package kms

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strconv"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/ca"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/parallel"
	"github.com/dcaas/dcaas/internal/policy"
	"github.com/dcaas/dcaas/internal/store"
)

// recipient is a verified sidecar a key may be released to.
type recipient struct {
	instance store.Instance
	pub      api.PublicKey
}

// wrappingRecipient verifies a wrapping certificate presented by a
// custodian (docs/design.md, "Rewrap to a wrapping certificate"): issued by this CA, valid now, not revoked,
// naming a live instance that is bound to this very custodian.
func (k *KMS) wrappingRecipient(ctx context.Context, who *caller, certPEM string) (*recipient, error) {
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil || block.Type != "CERTIFICATE" {
		// Most often the caller asked a sidecar that is not enrolled yet
		// (it answers 503 not_enrolled, with no certificate) and passed on
		// what it got: send it back to the sidecar.
		return nil, api.Errorf(api.CodeInvalidCert, "wrapping_cert_pem holds no PEM CERTIFICATE block: pass the cert_pem that the sidecar answers to GET /v1/wrapping-certificate once it is enrolled (a sidecar still waiting for its enrollment token answers 503 not_enrolled there, with no certificate).")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, api.Errorf(api.CodeInvalidCert, "The wrapping certificate does not parse.")
	}
	if err := k.authority().Verify(cert, ca.UsageWrapping, k.now()); err != nil {
		switch {
		case errors.Is(err, ca.ErrExpired):
			return nil, api.Errorf(api.CodeExpired, "The wrapping certificate has expired or is not yet valid.")
		case errors.Is(err, ca.ErrForeign):
			return nil, api.Errorf(api.CodeForbidden, "The wrapping certificate was not issued by this KMS's CA.")
		}
		return nil, api.Errorf(api.CodeInvalidCert, "The certificate is not a dcaas wrapping certificate.")
	}
	info, err := ca.ParseWrapping(cert)
	if err != nil {
		return nil, api.Errorf(api.CodeInvalidCert, "The certificate is not a dcaas wrapping certificate.")
	}
	rec, err := k.st.GetCert(ctx, info.Serial)
	if errors.Is(err, store.ErrNotFound) {
		return nil, api.Errorf(api.CodeForbidden, "The wrapping certificate is unknown to this KMS.")
	}
	if err != nil {
		return nil, storeErr(err, "certificate")
	}
	if rec.RevokedAt != nil {
		return nil, api.Errorf(api.CodeRevoked, "The wrapping certificate has been revoked.")
	}
	in, err := k.st.GetInstance(ctx, info.InstanceID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, api.Errorf(api.CodeForbidden, "The wrapping certificate names an unknown instance.")
		}
		return nil, storeErr(err, "instance")
	}
	switch {
	case in.RevokedAt != nil:
		return nil, api.Errorf(api.CodeRevoked, "Sidecar instance %s has been revoked.", in.ID)
	case !currentWrapping(in, rec, info):
		return nil, api.Errorf(api.CodeForbidden, "The certificate is not a wrapping certificate of instance %s's current key.", in.ID)
	case in.Tenant != who.Tenant:
		return nil, api.Errorf(api.CodeWrongTenant, "The sidecar belongs to another tenant.")
	case in.CustodianDN != who.DN:
		return nil, api.Errorf(api.CodeForbidden, "Sidecar instance %s is bound to another custodian.", in.ID)
	}
	return &recipient{instance: in, pub: api.PublicKey{KEM: api.KEM(in.WrappingKEM), PublicKey: in.WrappingPublic}}, nil
}

func (k *KMS) rewrap(ctx context.Context, c *call) (any, error) {
	var req api.RewrapRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := k.checkBatch(len(req.EKBs), "ekbs must name at least one EKB.", "EKBs"); err != nil {
		return nil, err
	}
	to, err := k.wrappingRecipient(ctx, c.caller, req.WrappingCertPEM)
	if err != nil {
		return nil, err
	}
	keys, err := k.openForRelease(ctx, c, req.EKBs, to.instance.CustodianDN)
	if err != nil {
		return nil, err
	}
	defer keys.wipe()
	return k.release(ctx, c, nil, to, keys, "rewrap")
}

// releasable is a batch of opened keys on their way to a sidecar.
type releasable []*openedKey

func (r releasable) wipe() {
	for _, o := range r {
		if o != nil {
			o.material.Wipe()
		}
	}
}

// openForRelease opens every EKB of a release request and checks that each
// key is live and that its policy names the sidecar's bound custodian. It
// is all or nothing: one refusal refuses the batch, and the refusal named
// is the first in the batch's order. The registry is read once for the
// whole batch (GetKeysAndVersions), not once per EKB.
func (k *KMS) openForRelease(ctx context.Context, c *call, ekbs [][]byte, boundDN string) (releasable, error) {
	out, openErr := k.openAll(ctx, c.caller.Tenant, ekbs) // refused at index len(out), unless an earlier one is
	fail := func(err error, i int) (releasable, error) {
		out.wipe()
		return nil, prefixIndex(err, i, len(ekbs))
	}
	// registryOf notes in each key the feed's position before its entry
	// was read: stillReleasable looks again only at keys named by events
	// after it.
	keys, versions, err := k.registryOf(ctx, out)
	if err != nil {
		return fail(err, 0)
	}
	for i, o := range out {
		c.keyID = o.md.KeyID
		key, v, err := k.entryOf(&o.md, keys, versions)
		if err == nil {
			err = k.releasable(o, key, v)
		}
		if err != nil {
			return fail(err, i)
		}
		if !policy.Releasable(o.md.Policy, o.md.Owner, boundDN) {
			return fail(api.Errorf(api.CodePolicyDenied, "The policy of key %s does not name %s.", o.md.KeyID, boundDN), i)
		}
	}
	if openErr != nil {
		return fail(openErr, len(out))
	}
	return out, nil
}

// openAll opens ekbs in order, on every core for a large batch, and
// returns the keys before the first that does not open, with its error.
func (k *KMS) openAll(ctx context.Context, tenant string, ekbs [][]byte) (releasable, error) {
	opened := make(releasable, len(ekbs))
	errs := make([]error, len(ekbs))
	parallel.For(len(ekbs), 64, func(i int) { opened[i], errs[i] = k.openEKB(ctx, tenant, ekbs[i]) })
	for i, err := range errs {
		if err != nil {
			opened[i:].wipe()
			return opened[:i], err
		}
	}
	return opened, nil
}

// checkReleasable checks the registry for a key about to be released: the
// key is live, the version registered, not retired, and not the current
// version past its safe limit. It notes the version's count and any
// rotation warning in o.
func (k *KMS) checkReleasable(ctx context.Context, o *openedKey) error {
	key, v, err := k.registryEntry(ctx, &o.md)
	if err != nil {
		return err
	}
	return k.releasable(o, key, v)
}

// releasable checks that a usable registry entry may leave for a sidecar
// (checkRelease) and notes the version's count and any rotation warning
// in o.
func (k *KMS) releasable(o *openedKey, key store.Key, v store.KeyVersion) error {
	var err error
	if o.warning, err = k.checkRelease(key, v); err != nil {
		return err
	}
	o.encryptions = v.Encryptions
	return nil
}

// wrapTo seals every key to the recipient as one wrapped-key batch
// (format version 2): one HPKE encapsulation, each key bound to its exact
// metadata bytes and encryption count, the batch to the recipient instance
// and to its issue time and expiry (now + Config.WrapTTL).
func (k *KMS) wrapTo(to *recipient, keys releasable, flow string) (*api.WrappedKeys, error) {
	pub, err := kcrypto.ParseKEMPublicKey(to.pub)
	if err != nil {
		return nil, api.Errorf(api.CodeInvalidArgument, "The recipient's key cannot be used: %v", err)
	}
	items := make([]kcrypto.BatchItem, len(keys))
	for i, o := range keys {
		md, err := o.metadataBytes()
		if err != nil {
			return nil, err
		}
		items[i] = kcrypto.BatchItem{Metadata: md, Encryptions: o.encryptions, Key: o.material}
	}
	issued := k.now()
	notAfter := issued.Add(k.cfg.WrapTTL)
	batch, err := kcrypto.SealBatch(pub, to.instance.ID, issued, notAfter, items)
	if err != nil {
		return nil, err
	}
	k.mx.released.WithLabelValues(flow).Add(float64(len(keys)))
	exp := time.UnixMilli(notAfter.UnixMilli()).UTC()
	out := &api.WrappedKeys{Batch: batch, ExpiresAt: &exp, Keys: make([]api.WrappedKey, len(keys))}
	for i, o := range keys {
		out.Keys[i] = api.WrappedKey{KeyID: o.md.KeyID, Version: o.md.Version}
		if o.warning != "" {
			out.Warnings = append(out.Warnings, o.warning)
		}
	}
	return out, nil
}

// checkBatch bounds a batch request of n items: none is refused with the
// message none, more than Config.MaxBatch with "At most … <items> per
// request."
func (k *KMS) checkBatch(n int, none, items string) error {
	switch {
	case n == 0:
		return api.Errorf(api.CodeInvalidArgument, "%s", none)
	case n > k.cfg.MaxBatch:
		return api.Errorf(api.CodeTooLarge, "At most %d %s per request.", k.cfg.MaxBatch, items)
	}
	return nil
}

// prefixIndex adds "EKB i: " to an API error's message in a batch of more
// than one, so the caller knows which item was refused.
func prefixIndex(err error, i, n int) error { return prefixItem(err, "EKB", i, n) }

// prefixItem adds "<item> i: " to an API error's message in a batch of
// more than one (prefixIndex for EKBs; "seed" for the seeds of a derive,
// "key" for the keys of a refresh).
func prefixItem(err error, item string, i, n int) error {
	var e *api.Error
	if n <= 1 || !errors.As(err, &e) {
		return err
	}
	return &api.Error{Code: e.Code, Message: item + " " + strconv.Itoa(i) + ": " + e.Message}
}
