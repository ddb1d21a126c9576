//go:build cgo

package pkcs11

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"

	p11 "github.com/miekg/pkcs11"
)

// rootKey returns the handle of the one secret key labeled label, after
// checking that it is fit to be the root key, generating it first when
// there is none and create is set. It runs on a read-write session of its
// own (creating a token object needs one), under registry.mu.
func (t *token) rootKey(label string, create bool) (p11.ObjectHandle, error) {
	c := t.mod.ctx
	sh, err := c.OpenSession(t.slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		return 0, fmt.Errorf("seal/pkcs11: opening a session: %w", err)
	}
	defer c.CloseSession(sh)
	keys, err := findKeys(c, sh, label)
	if err != nil {
		return 0, err
	}
	switch {
	case len(keys) > 1:
		return 0, fmt.Errorf("%w: %d secret keys are labeled %q", ErrKey, len(keys), label)
	case len(keys) == 0 && !create:
		return 0, fmt.Errorf("%w: the token holds no secret key labeled %q", ErrNoKey, label)
	case len(keys) == 0:
		key, err := generateKey(c, sh, label)
		if err != nil {
			return 0, err
		}
		keys = append(keys, key)
	}
	if err := checkKey(c, sh, keys[0]); err != nil {
		return 0, fmt.Errorf("%w: key %q: %w", ErrKey, label, err)
	}
	return keys[0], nil
}

// findKeys returns the token's secret keys labeled label (at most two:
// more than one is an error anyway).
func findKeys(c *p11.Ctx, sh p11.SessionHandle, label string) ([]p11.ObjectHandle, error) {
	tmpl := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_LABEL, label),
	}
	if err := c.FindObjectsInit(sh, tmpl); err != nil {
		return nil, fmt.Errorf("seal/pkcs11: finding key %q: %w", label, err)
	}
	keys, _, err := c.FindObjects(sh, 2)
	if ferr := c.FindObjectsFinal(sh); err == nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("seal/pkcs11: finding key %q: %w", label, err)
	}
	return keys, nil
}

// keyTemplate is the root key: a private token object, AES-256, sensitive
// and never extractable, usable only to encrypt and decrypt.
func keyTemplate(label string, id []byte) []*p11.Attribute {
	return []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
		p11.NewAttribute(p11.CKA_VALUE_LEN, keySize),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_ENCRYPT, true),
		p11.NewAttribute(p11.CKA_DECRYPT, true),
		p11.NewAttribute(p11.CKA_WRAP, false),
		p11.NewAttribute(p11.CKA_UNWRAP, false),
		p11.NewAttribute(p11.CKA_SIGN, false),
		p11.NewAttribute(p11.CKA_VERIFY, false),
		p11.NewAttribute(p11.CKA_DERIVE, false),
		p11.NewAttribute(p11.CKA_LABEL, label),
		p11.NewAttribute(p11.CKA_ID, id),
	}
}

// generateKey makes the root key inside the token (CKM_AES_KEY_GEN).
func generateKey(c *p11.Ctx, sh p11.SessionHandle, label string) (p11.ObjectHandle, error) {
	id := make([]byte, 16)
	rand.Read(id)
	mech := []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}
	key, err := c.GenerateKey(sh, mech, keyTemplate(label, id))
	if err != nil {
		return 0, fmt.Errorf("seal/pkcs11: generating key %q: %w", label, err)
	}
	return key, nil
}

// checkKey refuses a key that is not a sensitive, non-extractable AES-256
// token key allowed to encrypt and decrypt.
func checkKey(c *p11.Ctx, sh p11.SessionHandle, key p11.ObjectHandle) error {
	attrs, err := c.GetAttributeValue(sh, key, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_KEY_TYPE, nil),
		p11.NewAttribute(p11.CKA_VALUE_LEN, nil),
		p11.NewAttribute(p11.CKA_TOKEN, nil),
		p11.NewAttribute(p11.CKA_SENSITIVE, nil),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, nil),
		p11.NewAttribute(p11.CKA_ENCRYPT, nil),
		p11.NewAttribute(p11.CKA_DECRYPT, nil),
	})
	if err != nil {
		return fmt.Errorf("reading its attributes: %w", err)
	}
	v := map[uint][]byte{}
	for _, a := range attrs {
		v[a.Type] = a.Value
	}
	switch {
	case ulong(v[p11.CKA_KEY_TYPE]) != p11.CKK_AES:
		return fmt.Errorf("not an AES key")
	case ulong(v[p11.CKA_VALUE_LEN]) != keySize:
		return fmt.Errorf("not %d bytes long", keySize)
	case !boolean(v[p11.CKA_TOKEN]):
		return fmt.Errorf("not a token object")
	case !boolean(v[p11.CKA_SENSITIVE]):
		return fmt.Errorf("not sensitive (CKA_SENSITIVE is false)")
	case boolean(v[p11.CKA_EXTRACTABLE]):
		return fmt.Errorf("extractable (CKA_EXTRACTABLE is true)")
	case !boolean(v[p11.CKA_ENCRYPT]) || !boolean(v[p11.CKA_DECRYPT]):
		return fmt.Errorf("not allowed to encrypt and decrypt")
	}
	return nil
}

// boolean decodes a CK_BBOOL; anything else is false.
func boolean(b []byte) bool { return len(b) == 1 && b[0] != 0 }

// ulong decodes a CK_ULONG (native byte order, 4 or 8 bytes); anything
// else is ^0, which matches no valid value.
func ulong(b []byte) uint {
	switch len(b) {
	case 4:
		return uint(binary.NativeEndian.Uint32(b))
	case 8:
		return uint(binary.NativeEndian.Uint64(b))
	}
	return ^uint(0)
}
