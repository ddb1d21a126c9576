package kms_test

// End-to-end test of issue 12 at the KMS: no answer about a key named by
// id tells another custodian that the key exists.

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/format"
)

// TestKeyIDsRevealNothing: a custodian that names another custodian's key
// by id, through any route, gets the answer it gets for a key that does
// not exist, word for word but the id.
func TestKeyIDsRevealNothing(t *testing.T) {
	w := newTwoCustodians(t, 0)
	retained := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true})
	plain := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	const missing = "key_doesnotexist"
	ledInstance := w.ledSide.Enrollment.InstanceID
	routes := map[string]func(id string) error{
		"grant": func(id string) error {
			return w.led.Do("POST", "/v1/grants", api.GrantRequest{InstanceID: ledInstance, KeyIDs: []string{id}}, nil)
		},
		"central encrypt": func(id string) error {
			_, err := centralEncrypt(w.led, api.KeyRef{KeyID: id}, []byte("x"))
			return err
		},
		// A ciphertext names its key: one crafted for any id and version.
		"central decrypt": func(id string) error {
			ct := (&format.Ciphertext{KeyID: id, KeyVersion: 1, Sealed: make([]byte, 64)}).Marshal()
			return w.led.Do("POST", "/v1/crypto/decrypt", api.DecryptRequest{Ciphertext: ct}, nil)
		},
		"central decrypt, a version that does not exist": func(id string) error {
			ct := (&format.Ciphertext{KeyID: id, KeyVersion: 9, Sealed: make([]byte, 64)}).Marshal()
			return w.led.Do("POST", "/v1/crypto/decrypt", api.DecryptRequest{Ciphertext: ct}, nil)
		},
		"read": func(id string) error { return w.led.Do("GET", "/v1/datakeys/"+id, nil, nil) },
		"disable": func(id string) error {
			return w.led.Do("DELETE", "/v1/datakeys/"+id, nil, nil)
		},
		"min decryption version": func(id string) error {
			return w.led.Do("POST", "/v1/datakeys/"+id+"/min-decryption-version", api.MinDecryptionVersionRequest{Version: 1}, nil)
		},
	}
	for name, call := range routes {
		for _, id := range []string{retained.KeyID, plain.KeyID} {
			t.Run(name+"/"+id, func(t *testing.T) {
				theirs, none := call(id), call(missing)
				if a, b := answer(theirs, id), answer(none, missing); a != b || none == nil {
					t.Errorf("another custodian's key: %s\nno such key:          %s\nwant the same refusal", a, b)
				}
			})
		}
	}
	t.Run("refresh", func(t *testing.T) {
		pub, err := kcrypto.MarshalKEMPublicKey(w.ledSide.KEMKey.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{retained.KeyID, missing} {
			var out api.WrappedKeys
			w.ledSide.Client(t, w.env).MustDo(t, "POST", "/v1/keys/refresh", api.RefreshRequest{Keys: []api.KeyVersionRef{{KeyID: id, Version: 1}}, Recipient: pub}, &out)
			if len(out.Keys) != 0 {
				t.Errorf("refresh of %s = %+v, want nothing", id, out.Keys)
			}
		}
	})
}

// answer renders err as the caller sees it, with id replaced, so two
// refusals compare equal when they differ in nothing else.
func answer(err error, id string) string {
	var e *api.Error
	if !errors.As(err, &e) {
		return fmt.Sprintf("not an API error: %v", err)
	}
	return strings.ReplaceAll(fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message), id, "<id>")
}

// TestRefreshNamesTheRefusedKey: a refresh of several keys that refuses one
// says which key of the request it was ("key i: …"), as a batch of EKBs
// says "EKB i: …".
func TestRefreshNamesTheRefusedKey(t *testing.T) {
	w := newTwoCustodians(t, 0)
	pub, err := kcrypto.MarshalKEMPublicKey(w.ledSide.KEMKey.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	req := api.RefreshRequest{Keys: []api.KeyVersionRef{{KeyID: "key_a", Version: 1}, {KeyID: "key_b", Version: 0}}, Recipient: pub}
	err = w.ledSide.Client(t, w.env).Do("POST", "/v1/keys/refresh", req, nil)
	var e *api.Error
	if !errors.As(err, &e) || e.Code != api.CodeInvalidArgument || !strings.HasPrefix(e.Message, "key 1: ") {
		t.Fatalf("refresh with a bad second key = %v, want invalid_argument starting %q", err, "key 1: ")
	}
}
