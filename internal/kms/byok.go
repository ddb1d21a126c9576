package kms

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store"
)

// Bring your own key (import) and secure export.
//
// Each tenant has two import key pairs, made on first use and kept sealed
// under the root key in the settings store: RSA-4096 for
// rsa-aes-key-wrap-sha256 (CKM_RSA_AES_KEY_WRAP, what other KMSs and HSMs
// export with) and an HPKE key. A custodian asks for the import
// parameters (public keys and a single-use import token), wraps its
// material, and sends it; the KMS unwraps it, checks it and seals it into an
// ordinary EKB.

const (
	importTokenPrefix = "dcit_"
	importTokenTTL    = 15 * time.Minute
)

// importKeys is a tenant's sealed import key pair record.
type importKeys struct {
	RSA  []byte  `json:"rsa"`  // PKCS#8, sealed
	KEM  api.KEM `json:"kem"`  // HPKE KEM
	HPKE []byte  `json:"hpke"` // RFC 9180 private key, sealed
}

// importSettingPrefix prefixes the setting that holds a tenant's import
// keys.
const importSettingPrefix = "import-keys:"

func importSetting(tenant string) string { return importSettingPrefix + tenant }

func importAAD(tenant, which string) []byte {
	return []byte("dcaas/v1 import-key\x00" + tenant + "\x00" + which)
}

// importInfo is the HPKE info of imported material: it binds the wrap to
// the tenant.
func importInfo(tenant string) []byte { return []byte("dcaas/v1 import\x00" + tenant) }

// exportInfo is the HPKE info of exported material: it binds the wrap to
// the key version.
func exportInfo(md *api.KeyMetadata) []byte {
	b, _ := json.Marshal([]any{md.Tenant, md.KeyID, md.Version})
	return append([]byte("dcaas/v1 export\x00"), b...)
}

// tenantImportKeys returns the tenant's import key pairs. When the tenant
// has none yet it makes them, and returns in created the record to store
// with storeImportKeys.
func (k *KMS) tenantImportKeys(ctx context.Context, tenant string) (_ *rsa.PrivateKey, _ kcrypto.KEMPrivateKey, created []byte, _ error) {
	raw, err := k.st.GetSetting(ctx, importSetting(tenant))
	if errors.Is(err, store.ErrNotFound) {
		if raw, err = k.newImportKeys(ctx, tenant); err != nil {
			return nil, nil, nil, err
		}
		created = raw
	} else if err != nil {
		return nil, nil, nil, storeErr(err, "import keys")
	}
	rsaKey, hk, err := k.openImportKeys(ctx, tenant, raw)
	return rsaKey, hk, created, err
}

// storeImportKeys stores import keys tenantImportKeys made through tx. If
// another request or replica stored the tenant's first, it is a conflict
// (the keys made here were not stored).
func storeImportKeys(ctx context.Context, tx store.Settings, tenant string, created []byte) error {
	stored, err := tx.PutSettingIfAbsent(ctx, importSetting(tenant), created)
	if err != nil {
		return storeErr(err, "import keys")
	}
	if !bytes.Equal(stored, created) {
		return api.Errorf(api.CodeConflict, "The import keys of tenant %q were made concurrently; retry.", tenant)
	}
	return nil
}

// openImportKeys unseals a stored import key record.
func (k *KMS) openImportKeys(ctx context.Context, tenant string, raw []byte) (*rsa.PrivateKey, kcrypto.KEMPrivateKey, error) {
	var rec importKeys
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, nil, err
	}
	rsaDER, err := k.sealer.Open(ctx, rec.RSA, importAAD(tenant, "rsa"))
	if err != nil {
		return nil, nil, sealErr(err)
	}
	defer rsaDER.Wipe()
	rsaKey, err := kcrypto.ParseRSAPrivateKey(rsaDER)
	if err != nil {
		return nil, nil, err
	}
	hb, err := k.sealer.Open(ctx, rec.HPKE, importAAD(tenant, "hpke"))
	if err != nil {
		return nil, nil, sealErr(err)
	}
	defer hb.Wipe()
	kem, err := kcrypto.KEMOf(rec.KEM)
	if err != nil {
		return nil, nil, err
	}
	hk, err := kem.NewPrivateKey(hb.Expose())
	if err != nil {
		return nil, nil, err
	}
	return rsaKey, hk, nil
}

func (k *KMS) newImportKeys(ctx context.Context, tenant string) ([]byte, error) {
	rsaKey, err := kcrypto.GenerateImportRSAKey()
	if err != nil {
		return nil, err
	}
	der, err := kcrypto.MarshalRSAPrivateKey(rsaKey)
	if err != nil {
		return nil, err
	}
	defer der.Wipe()
	kemName := kcrypto.DefaultKEM()
	hk, err := kcrypto.GenerateKEMKey(kemName)
	if err != nil {
		return nil, err
	}
	hb, err := hk.Bytes()
	if err != nil {
		return nil, err
	}
	hs := secret.New(hb)
	defer hs.Wipe()
	rec := importKeys{KEM: kemName}
	if rec.RSA, err = k.sealer.Seal(ctx, der, importAAD(tenant, "rsa")); err != nil {
		return nil, sealErr(err)
	}
	if rec.HPKE, err = k.sealer.Seal(ctx, hs, importAAD(tenant, "hpke")); err != nil {
		return nil, sealErr(err)
	}
	return json.Marshal(rec)
}

func (k *KMS) importParameters(ctx context.Context, c *call) (any, error) {
	tenant := c.r.PathValue("tenant")
	if tenant != c.caller.Tenant {
		return nil, api.Errorf(api.CodeWrongTenant, "A custodian may import keys only into its own tenant.")
	}
	rsaKey, hk, created, err := k.tenantImportKeys(ctx, tenant)
	if err != nil {
		return nil, err
	}
	pem, err := kcrypto.RSAPublicKeyPEM(&rsaKey.PublicKey)
	if err != nil {
		return nil, err
	}
	pub, err := kcrypto.MarshalKEMPublicKey(hk.PublicKey())
	if err != nil {
		return nil, err
	}
	token, hash := kcrypto.NewToken(importTokenPrefix)
	now := k.now()
	exp := now.Add(importTokenTTL)
	err = c.commit(ctx, func(tx store.Tx) error {
		if created != nil {
			if err := storeImportKeys(ctx, tx, tenant, created); err != nil {
				return err
			}
		}
		return putOneTime(ctx, tx, store.OneTimeSecret{
			Hash: hash, Kind: store.OneTimeImport, Tenant: tenant, Subject: c.caller.DN,
			CreatedBy: c.caller.DN, CreatedAt: now, ExpiresAt: exp,
		}, "import token")
	})
	if err != nil {
		return nil, err
	}
	return api.ImportParameters{RSAPublicKeyPEM: pem, HPKEPublicKey: pub, ImportToken: token, ExpiresAt: exp}, nil
}

func (k *KMS) importKey(ctx context.Context, c *call) (any, error) {
	var req api.ImportKeyRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if req.Wrapping == api.WrappingTR31 {
		return k.importTR31(ctx, c, &req) // tr31.go
	}
	if req.Wrapping != api.WrappingRSAAES && req.Wrapping != api.WrappingHPKE {
		return nil, api.Errorf(api.CodeInvalidArgument, "wrapping must be %q, %q or %q.", api.WrappingRSAAES, api.WrappingHPKE, api.WrappingTR31)
	}
	if len(req.WrappedMaterial) == 0 || req.ImportToken == "" {
		return nil, api.Errorf(api.CodeInvalidArgument, "import_token and wrapped_material are required.")
	}
	now := k.now()
	md, err := k.newMetadata(c.caller, api.CreateDataKeyRequest{
		Type: req.Type, Policy: req.Policy, ExpiresAt: req.ExpiresAt, Purpose: req.Purpose,
		Labels: req.Labels, Retain: req.Retain, Exportable: req.Exportable,
	}, now)
	if err != nil {
		return nil, err
	}
	// The token is consumed in the transaction that registers the key,
	// or, if the import fails from here on, with the record of the failure.
	hash := kcrypto.HashToken(req.ImportToken)
	tok, err := k.st.PeekOneTime(ctx, store.OneTimeImport, hash, now)
	if err != nil {
		return nil, consumeErr(err, "import token")
	}
	consume := func(tx store.Tx) error {
		if _, err := tx.ConsumeOneTime(ctx, store.OneTimeImport, hash, now); err != nil {
			return consumeErr(err, "import token")
		}
		return nil
	}
	dk, key, v, err := k.unwrapImport(ctx, c, &req, tok, md)
	if err != nil {
		return nil, c.fail(ctx, consume, err)
	}
	err = c.commit(ctx, func(tx store.Tx) error {
		if err := consume(tx); err != nil {
			return err
		}
		return createKey(ctx, tx, key, v)
	})
	if err != nil {
		return nil, err
	}
	k.mx.created.WithLabelValues(key.Type).Inc()
	return dk, nil
}

// unwrapImport checks an import token read for req, unwraps and checks
// the material and seals it into version 1 of a new key, which it returns
// with the registry entries to store.
func (k *KMS) unwrapImport(ctx context.Context, c *call, req *api.ImportKeyRequest, tok store.OneTimeSecret, md *api.KeyMetadata) (*api.DataKey, store.Key, store.KeyVersion, error) {
	fail := func(err error) (*api.DataKey, store.Key, store.KeyVersion, error) {
		return nil, store.Key{}, store.KeyVersion{}, err
	}
	if tok.Tenant != c.caller.Tenant || tok.Subject != c.caller.DN {
		return fail(api.Errorf(api.CodeForbidden, "The import token was issued to another custodian."))
	}
	rsaKey, hk, created, err := k.tenantImportKeys(ctx, c.caller.Tenant)
	if err != nil {
		return fail(err)
	}
	if created != nil { // no import parameters were ever given out
		return fail(api.Errorf(api.CodeInvalidToken, "The import token is not valid."))
	}
	material, err := kcrypto.UnwrapImport(string(req.Wrapping), rsaKey, hk, importInfo(c.caller.Tenant), req.WrappedMaterial)
	if err != nil {
		return fail(api.Errorf(api.CodeDecryptFailed, "The wrapped material does not unwrap with this tenant's %s import key.", req.Wrapping))
	}
	defer material.Wipe()
	if err := kcrypto.CheckMaterial(req.Type, material); err != nil {
		return fail(api.Errorf(api.CodeInvalidArgument, "The material is not a valid %s key: %v", req.Type, err))
	}
	md.Labels = withLabel(md.Labels, "dcaas.origin", "imported")
	c.keyID = md.KeyID
	return k.newKey(ctx, c.caller.Tenant, md, material, req.Retain)
}

func withLabel(l map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range l {
		out[a] = b
	}
	return out
}

// exportWrapping is how an export wraps the key: check refuses a key it
// cannot wrap (before any approval is spent), wrap wraps the material
// (and names what the log line should add), done releases what check
// took.
type exportWrapping struct {
	check func(ctx context.Context, o *openedKey) error
	wrap  func(o *openedKey) (resp api.ExportResponse, logAttrs []any, err error)
	done  func()
}

// exportKey serves POST /v1/datakeys/export, whatever the wrapping: to a
// public key (rsa-aes-kwp, hpke; below) or in a TR-31 key block (tr31.go).
// Every export takes the same checks in the same order (the owner, an
// exportable key, a usable version, the tenant's quorum), spends its
// approval with its audit record and reports the key's KCV.
func (k *KMS) exportKey(ctx context.Context, c *call) (any, error) {
	var req api.ExportRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	var w exportWrapping
	var err error
	if req.Wrapping == api.WrappingTR31 {
		w, err = k.tr31Wrapping(c, &req)
	} else {
		w, err = publicKeyWrapping(&req)
	}
	if err != nil {
		return nil, err
	}
	if w.done != nil {
		defer w.done()
	}
	o, err := k.openEKB(ctx, c.caller.Tenant, req.EKB)
	if err != nil {
		return nil, err
	}
	defer o.material.Wipe()
	c.keyID = o.md.KeyID
	switch {
	case o.md.Owner != c.caller.DN:
		return nil, api.Errorf(api.CodeForbidden, "Only the key's owner may export it.")
	case !o.md.Exportable:
		return nil, api.Errorf(api.CodeForbidden, "Key %s is not exportable: it was created without \"exportable\": true, which is bound into its EKB.", o.md.KeyID)
	}
	if w.check != nil {
		if err := w.check(ctx, o); err != nil {
			return nil, err
		}
	}
	if _, _, err := k.registryEntry(ctx, &o.md); err != nil {
		return nil, err // a disabled key or a retired version does not leave
	}
	use, err := k.approvalFor(ctx, c, api.ApprovalExport, o.md.Tenant, o.md.KeyID, req)
	if err != nil {
		return nil, err
	}
	resp, attrs, err := w.wrap(o)
	if err != nil {
		return nil, err
	}
	if resp.KCV, err = kcvOf(o.md.Type, o.material); err != nil {
		return nil, err
	}
	if use != nil {
		// The approval closes with the export's audit record: one export.
		if err := c.commit(ctx, func(tx store.Tx) error { return use.consume(ctx, tx) }); err != nil {
			return nil, err
		}
	}
	k.log.Info("key exported", append([]any{"key", o.md.KeyID, "version", o.md.Version, "by", c.caller.DN, "wrapping", req.Wrapping}, attrs...)...)
	return resp, nil
}

// publicKeyWrapping wraps an export to the public key of req: RSA-OAEP +
// AES key wrap (rsa-aes-kwp) or HPKE.
func publicKeyWrapping(req *api.ExportRequest) (exportWrapping, error) {
	var pub any
	switch req.Wrapping {
	case api.WrappingRSAAES:
		p, err := kcrypto.ParseRSAPublicKeyPEM(req.PublicKeyPEM)
		if err != nil {
			return exportWrapping{}, api.Errorf(api.CodeInvalidArgument, "public_key_pem must be an RSA public key of at least 3072 bits: %v", err)
		}
		pub = p
	case api.WrappingHPKE:
		if req.PublicKey == nil {
			return exportWrapping{}, api.Errorf(api.CodeInvalidArgument, "public_key is required for hpke.")
		}
		p, err := kcrypto.ParseKEMPublicKey(*req.PublicKey)
		if err != nil {
			return exportWrapping{}, api.Errorf(api.CodeInvalidArgument, "public_key is not usable: %v", err)
		}
		pub = p
	default:
		return exportWrapping{}, api.Errorf(api.CodeInvalidArgument, "wrapping must be %q, %q or %q.", api.WrappingRSAAES, api.WrappingHPKE, api.WrappingTR31)
	}
	return exportWrapping{wrap: func(o *openedKey) (api.ExportResponse, []any, error) {
		wrapped, err := kcrypto.WrapExport(string(req.Wrapping), pub, exportInfo(&o.md), o.material)
		return api.ExportResponse{WrappedMaterial: wrapped}, nil, err
	}}, nil
}
