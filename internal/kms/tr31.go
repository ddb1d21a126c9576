package kms

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/policy"
	"github.com/dcaas/dcaas/internal/tr31"
)

// TR-31 / ANSI X9.143 key blocks (version D) under a key-block protection
// key (KBPK): a tenant data key of type aes-256-kbpk that the partner holds
// too (made by POST /v1/datakeys and shared, or brought in by import). The
// KMS wraps a key into a block for the partner (export, wrapping "tr31")
// and unwraps the partner's blocks into new keys (import, wrapping "tr31").
// The header's key usage, algorithm, mode of use and exportability carry
// the key's dcaas type, policy actions and exportability across; an import
// refuses what dcaas cannot honour. docs/import-export.md has the mapping.
//
// Using a KBPK to wrap counts as its "encrypt" action and to unwrap as its
// "decrypt" action: its owner may do both, others what its policy allows.

// tr31Profile is how a dcaas key type appears in a key block.
type tr31Profile struct {
	usage     string // key usage
	algorithm byte
	actions   []api.Action // the dcaas actions its modes of use cover
	hmac      bool         // an HMAC key: optional block HM names SHA-256
}

var tr31Profiles = map[api.KeyType]tr31Profile{
	api.KeyAES256GCM:  {usage: "D0", algorithm: 'A', actions: []api.Action{api.ActionEncrypt, api.ActionDecrypt}},
	api.KeyHMACSHA256: {usage: "M7", algorithm: 'H', actions: []api.Action{api.ActionMAC}, hmac: true},
	api.KeyAES256KBPK: {usage: "K1", algorithm: 'A', actions: []api.Action{api.ActionEncrypt, api.ActionDecrypt}},
}

// hmSHA256 is the HM optional block's value for SHA-256 (ANSI X9.143:
// HM names the hash of an HMAC key; 10 SHA-1, 20 SHA-224, 21 SHA-256, ...).
const hmSHA256 = "21"

// tr31Type is the dcaas key type a block's key usage and algorithm import
// as: D0/A a data key, M7/H an HMAC key, K0 or K1 with A a KBPK.
func tr31Type(h *tr31.Header) (api.KeyType, error) {
	switch {
	case h.KeyUsage == "D0" && h.Algorithm == 'A':
		return api.KeyAES256GCM, nil
	case h.KeyUsage == "M7" && h.Algorithm == 'H':
		return api.KeyHMACSHA256, nil
	case (h.KeyUsage == "K0" || h.KeyUsage == "K1") && h.Algorithm == 'A':
		return api.KeyAES256KBPK, nil
	}
	return "", api.Errorf(api.CodeUnsupportedKeyBlock,
		"The key block holds key usage %s with algorithm %c; dcaas imports D0 with A (aes-256-gcm), M7 with H (hmac-sha256) and K0 or K1 with A (aes-256-kbpk).",
		h.KeyUsage, h.Algorithm)
}

// modeActions is the dcaas actions a block's mode of use allows a key of
// type t; a mode dcaas cannot enforce for t is refused.
func modeActions(t api.KeyType, mode byte) ([]api.Action, error) {
	switch t {
	case api.KeyAES256GCM, api.KeyAES256KBPK:
		switch mode {
		case 'B', 'N':
			return []api.Action{api.ActionEncrypt, api.ActionDecrypt}, nil
		case 'E':
			return []api.Action{api.ActionEncrypt}, nil
		case 'D':
			return []api.Action{api.ActionDecrypt}, nil
		}
	case api.KeyHMACSHA256:
		switch mode {
		case 'C', 'N':
			return []api.Action{api.ActionMAC}, nil
		case 'G', 'V':
			return nil, api.Errorf(api.CodeUnsupportedKeyBlock, "The key block limits the HMAC key to MAC %s only (mode of use %c); a dcaas key policy allows MAC generation and verification together, so it cannot honour that.",
				map[byte]string{'G': "generation", 'V': "verification"}[mode], mode)
		}
	}
	return nil, api.Errorf(api.CodeUnsupportedKeyBlock, "Mode of use %c does not apply to a %s key.", mode, t)
}

// tr31Mode is the mode of use for a key of type t whose policy allows
// actions (nil: every action, no policy).
func tr31Mode(t api.KeyType, p *api.Policy) (byte, error) {
	allowed := func(a api.Action) bool {
		if p == nil {
			return true
		}
		for _, r := range p.Rules {
			if slices.Contains(r.Actions, a) {
				return true
			}
		}
		return false
	}
	enc, dec, mac := allowed(api.ActionEncrypt), allowed(api.ActionDecrypt), allowed(api.ActionMAC)
	switch {
	case t == api.KeyHMACSHA256 && mac:
		return 'C', nil
	case t != api.KeyHMACSHA256 && enc && dec:
		return 'B', nil
	case t != api.KeyHMACSHA256 && enc:
		return 'E', nil
	case t != api.KeyHMACSHA256 && dec:
		return 'D', nil
	}
	return 0, api.Errorf(api.CodeUnsupportedKeyBlock, "The key's policy allows none of the actions a %s key block can carry.", t)
}

// keyBlockErr maps an error of internal/tr31 to the API.
func keyBlockErr(err error) error {
	var fe *tr31.FieldError
	switch {
	case errors.Is(err, tr31.ErrAuth):
		return api.Errorf(api.CodeDecryptFailed, "The key block does not authenticate under this key-block protection key: the key is not the one it was made with, or the block was changed.")
	case errors.As(err, &fe) && errors.Is(err, tr31.ErrUnsupported):
		return api.Errorf(api.CodeUnsupportedKeyBlock, "The key block's %s is not supported: %s.", fe.Field, fe.Reason)
	case errors.As(err, &fe):
		return api.Errorf(api.CodeInvalidKeyBlock, "The key block's %s is invalid: %s.", fe.Field, describe(fe))
	}
	return err
}

func describe(fe *tr31.FieldError) string {
	if fe.Value == "" {
		return fe.Reason
	}
	return fmt.Sprintf("%q %s", fe.Value, fe.Reason)
}

// openKBPK opens the current version of the key-block protection key id
// for the caller, to use it for action (encrypt: wrap, decrypt: unwrap).
// The caller wipes the returned material.
func (k *KMS) openKBPK(ctx context.Context, c *call, id string, action api.Action) (*openedKey, error) {
	if id == "" {
		return nil, api.Errorf(api.CodeInvalidArgument, "kbpk_id is required for wrapping tr31: the id of an aes-256-kbpk key.")
	}
	key, err := k.namedKey(ctx, c.caller.Tenant, c.caller.DN, id, false)
	if err != nil {
		return nil, err
	}
	if key.Type != string(api.KeyAES256KBPK) {
		return nil, api.Errorf(api.CodeWrongKeyType, "Key %s is a %s key, not a key-block protection key (aes-256-kbpk).", id, key.Type)
	}
	v, err := k.st.GetKeyVersion(ctx, id, key.CurrentVersion)
	if err != nil {
		return nil, storeErr(err, "key version")
	}
	o, err := k.openEKB(ctx, c.caller.Tenant, v.EKB)
	if err != nil {
		return nil, err
	}
	if _, _, err := k.registryEntry(ctx, &o.md); err != nil {
		o.material.Wipe()
		return nil, err
	}
	if !policy.Allows(o.md.Policy, o.md.Owner, c.caller.DN, action) {
		o.material.Wipe()
		return nil, api.Errorf(api.CodePolicyDenied, "The policy of key-block protection key %s does not allow %s (%s key blocks) for %s.", id, action,
			map[api.Action]string{api.ActionEncrypt: "making", api.ActionDecrypt: "opening"}[action], c.caller.DN)
	}
	return o, nil
}

// tr31Wrapping is an export's wrapping "tr31" (exportKey, byok.go): the
// key in a version D key block under the KBPK req names.
func (k *KMS) tr31Wrapping(c *call, req *api.ExportRequest) (exportWrapping, error) {
	if req.PublicKeyPEM != "" || req.PublicKey != nil {
		return exportWrapping{}, api.Errorf(api.CodeInvalidArgument, "A tr31 export is wrapped under kbpk_id, not to a public key.")
	}
	exportability := byte('E')
	switch req.TR31Exportability {
	case "", "E":
	case "N", "S":
		exportability = req.TR31Exportability[0]
	default:
		return exportWrapping{}, api.Errorf(api.CodeInvalidArgument, "tr31_exportability must be E (exportable under a trusted key, the default), S (sensitive) or N (not exportable).")
	}
	var (
		h    tr31.Header
		kbpk *openedKey
	)
	w := exportWrapping{
		check: func(ctx context.Context, o *openedKey) error {
			if o.md.KeyID == req.KBPKID {
				return api.Errorf(api.CodeInvalidArgument, "A key-block protection key cannot wrap itself.")
			}
			prof, ok := tr31Profiles[o.md.Type]
			if !ok {
				return api.Errorf(api.CodeUnsupportedKeyBlock, "A %s key has no TR-31 key usage dcaas exports: tr31 takes aes-256-gcm (D0), hmac-sha256 (M7) and aes-256-kbpk (K1) keys.", o.md.Type)
			}
			mode, err := tr31Mode(o.md.Type, o.md.Policy)
			if err != nil {
				return err
			}
			h = tr31.Header{
				Version: 'D', KeyUsage: prof.usage, Algorithm: prof.algorithm, ModeOfUse: mode,
				KeyVersion: "00", Exportability: exportability, KeyContext: '0',
			}
			if o.md.Version <= 99 {
				h.KeyVersion = fmt.Sprintf("%02d", o.md.Version)
			}
			if prof.hmac {
				h.Blocks = []tr31.Block{{ID: "HM", Data: hmSHA256}}
			}
			kbpk, err = k.openKBPK(ctx, c, req.KBPKID, api.ActionEncrypt)
			return err
		},
		done: func() {
			if kbpk != nil {
				kbpk.material.Wipe()
			}
		},
	}
	w.wrap = func(o *openedKey) (api.ExportResponse, []any, error) {
		block, err := tr31.Wrap(kbpk.material, h, o.material)
		if err != nil {
			return api.ExportResponse{}, nil, err
		}
		return api.ExportResponse{KeyBlock: string(block)}, []any{"kbpk", kbpk.md.KeyID, "header", string(block[:16])}, nil
	}
	return w, nil
}

// importTR31 answers POST /v1/datakeys/import with wrapping tr31: the key
// of a version D key block under the KBPK becomes version 1 of a new key.
func (k *KMS) importTR31(ctx context.Context, c *call, req *api.ImportKeyRequest) (any, error) {
	switch {
	case req.ImportToken != "" || len(req.WrappedMaterial) > 0:
		return nil, api.Errorf(api.CodeInvalidArgument, "A tr31 import takes key_block and kbpk_id, not import_token or wrapped_material.")
	case req.KeyBlock == "":
		return nil, api.Errorf(api.CodeInvalidArgument, "key_block is required for wrapping tr31.")
	}
	kb, err := tr31.Parse([]byte(req.KeyBlock))
	if err != nil {
		return nil, keyBlockErr(err)
	}
	h := &kb.Header
	typ, err := tr31Type(h)
	if err != nil {
		return nil, err
	}
	if req.Type != "" && req.Type != typ {
		return nil, api.Errorf(api.CodeUnsupportedKeyBlock, "The key block holds a %s%c key, which imports as %s, not %s.", h.KeyUsage, h.Algorithm, typ, req.Type)
	}
	actions, err := modeActions(typ, h.ModeOfUse)
	if err != nil {
		return nil, err
	}
	switch {
	case h.KeyVersion[0] == 'c':
		return nil, api.Errorf(api.CodeUnsupportedKeyBlock, "The key block holds key component %s, not a key.", h.KeyVersion[1:])
	case h.KeyContext == '1':
		return nil, api.Errorf(api.CodeUnsupportedKeyBlock, "The key block is marked for storage only (key context 1), not for exchange with dcaas.")
	case h.Exportability == 'N' && req.Exportable:
		return nil, api.Errorf(api.CodeUnsupportedKeyBlock, "The key block marks the key not exportable (exportability N); it cannot be imported with \"exportable\": true.")
	}
	if hm, ok := h.Find("HM"); typ == api.KeyHMACSHA256 && (!ok || hm != hmSHA256) {
		return nil, api.Errorf(api.CodeUnsupportedKeyBlock, "An HMAC key block must name SHA-256 in optional block HM (HM0621); this one names %q.", hm)
	}
	pol, err := importPolicy(req.Policy, actions, c.caller.DN)
	if err != nil {
		return nil, err
	}
	now := k.now()
	md, err := k.newMetadata(c.caller, api.CreateDataKeyRequest{
		Type: typ, Policy: pol, ExpiresAt: req.ExpiresAt, Purpose: req.Purpose,
		Labels: req.Labels, Retain: req.Retain, Exportable: req.Exportable,
	}, now)
	if err != nil {
		return nil, err
	}
	c.keyID = md.KeyID
	kbpk, err := k.openKBPK(ctx, c, req.KBPKID, api.ActionDecrypt)
	if err != nil {
		return nil, err
	}
	defer kbpk.material.Wipe()
	_, material, err := tr31.Unwrap(kbpk.material, []byte(req.KeyBlock))
	if err != nil {
		return nil, keyBlockErr(err)
	}
	defer material.Wipe()
	if err := kcrypto.CheckMaterial(typ, material); err != nil {
		return nil, api.Errorf(api.CodeUnsupportedKeyBlock, "The key block holds a %d-bit key; a dcaas %s key is 256 bits.", material.Len()*8, typ)
	}
	md.Labels = withLabel(md.Labels, "dcaas.origin", "tr31")
	dk, err := k.storeNewKey(ctx, c, md, material, req.Retain)
	if err != nil {
		return nil, err
	}
	k.log.Info("key imported", "key", md.KeyID, "by", c.caller.DN, "wrapping", api.WrappingTR31, "kbpk", kbpk.md.KeyID, "header", req.KeyBlock[:16])
	return dk, nil
}

// importPolicy is the policy of a key imported from a block whose mode of
// use allows actions: the requested one if it stays within them, else
// (none requested) the owner with exactly those actions, or no policy when
// they are all the type has.
func importPolicy(p *api.Policy, actions []api.Action, owner string) (*api.Policy, error) {
	if p != nil {
		for _, r := range p.Rules {
			for _, a := range r.Actions {
				if !slices.Contains(actions, a) {
					return nil, api.Errorf(api.CodeUnsupportedKeyBlock, "The policy allows %s, which the key block's mode of use does not.", a)
				}
			}
		}
		return p, nil
	}
	if len(actions) == 2 || slices.Contains(actions, api.ActionMAC) {
		return nil, nil // every action of the type
	}
	return &api.Policy{Rules: []api.PolicyRule{{Principals: []string{owner}, Actions: actions}}}, nil
}
