package adversarial_test

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// TestCiphertextTampering: a network attacker (or a custodian's storage)
// rewrites a dcaas ciphertext before it reaches the sidecar's decrypt:
// another key id or version in its header, other associated data, a cut
// or altered tag. The header is bound into the AEAD's associated data
// (internal/crypto AEAD.EncryptMessage), so each one is the one opaque
// decryption_failed, or a clear not_found / invalid_ciphertext when the
// header names nothing loaded or is not a header. A flipped last byte and
// wrong AAD alone: sidecar TestSidecarEndToEnd (checkOps).
func TestCiphertextTampering(t *testing.T) {
	w := newWorld(t)
	s := w.sidecar(t, w.payCreds.DN, "", nil)
	ka := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	kb := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	if len(ka.KeyID) != len(kb.KeyID) {
		t.Fatalf("key ids %q and %q differ in length; the swap below needs equal ones", ka.KeyID, kb.KeyID)
	}
	s.load(t, w.pay, ka, kb)
	pt := []byte(strings.Repeat("pay 100 EUR to DE89 3704 0044 0532 0130 00; ", 4))
	aad := []byte("order-1")
	encrypt := func(keyID string) []byte {
		t.Helper()
		var out api.EncryptResponse
		s.must(t, "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{KeyID: keyID}, Plaintext: pt, AAD: aad}, &out)
		return out.Ciphertext
	}
	ct1 := encrypt(ka.KeyID) // key A, version 1
	var v2 api.DataKey
	w.pay.MustDo(t, "POST", "/v1/datakeys/"+ka.KeyID+"/versions", api.NewVersionRequest{EKB: ka.EKB}, &v2)
	s.load(t, w.pay, v2)
	ct2 := encrypt(ka.KeyID) // key A, version 2
	if id, ver, err := format.PeekCiphertextKey(ct2); err != nil || id != ka.KeyID || ver != 2 {
		t.Fatalf("second ciphertext names %s v%d (%v), want %s v2", id, ver, err, ka.KeyID)
	}

	n := len(ka.KeyID)
	verAt := 2 + n // offset of the u32 key version
	withID := func(ct []byte, id string) []byte {
		out := bytes.Clone(ct)
		copy(out[2:2+n], id)
		return out
	}
	withVersion := func(ct []byte, v uint32) []byte {
		out := bytes.Clone(ct)
		binary.BigEndian.PutUint32(out[verAt:], v)
		return out
	}
	flip := func(ct []byte, i int) []byte {
		out := bytes.Clone(ct)
		out[i] ^= 0x01
		return out
	}
	hdr := verAt + 4
	failed := apiErr{400, api.CodeDecryptFailed}
	notLoaded := apiErr{404, api.CodeNotFound}
	malformed := apiErr{400, api.CodeInvalidCiphertext}
	unloaded := "key_" + strings.Repeat("a", n-len("key_"))

	cases := []struct {
		name string
		ct   []byte
		aad  []byte
		ref  api.KeyRef
		want apiErr
	}{
		{"key id swapped to another loaded key", withID(ct1, kb.KeyID), aad, api.KeyRef{}, failed},
		{"key id swapped to a key not loaded", withID(ct1, unloaded), aad, api.KeyRef{}, notLoaded},
		{"version 1 relabelled 2", withVersion(ct1, 2), aad, api.KeyRef{}, failed},
		{"version 2 relabelled 1", withVersion(ct2, 1), aad, api.KeyRef{}, failed},
		{"version relabelled to one not loaded", withVersion(ct1, 3), aad, api.KeyRef{}, notLoaded},
		{"version 0", withVersion(ct1, 0), aad, api.KeyRef{}, malformed},
		{"format version changed", flip(ct1, 0), aad, api.KeyRef{}, malformed},
		{"other associated data", ct1, []byte("order-2"), api.KeyRef{}, failed},
		{"associated data dropped", ct1, nil, api.KeyRef{}, failed},
		{"nonce altered", flip(ct1, hdr), aad, api.KeyRef{}, failed},
		{"tag cut by 1 byte", ct1[:len(ct1)-1], aad, api.KeyRef{}, failed},
		{"tag cut by 4 bytes", ct1[:len(ct1)-4], aad, api.KeyRef{}, failed},
		{"tag cut off", ct1[:len(ct1)-16], aad, api.KeyRef{}, failed},
		{"cut below nonce and tag", ct1[:hdr+format.MinCiphertextSealed-1], aad, api.KeyRef{}, malformed},
		{"a byte appended", append(bytes.Clone(ct1), 0), aad, api.KeyRef{}, failed},
		{"key_id in the request disagrees", ct1, aad, api.KeyRef{KeyID: kb.KeyID}, apiErr{400, api.CodeInvalidArgument}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := s.do(t, "POST", "/v1/crypto/decrypt", api.DecryptRequest{KeyRef: tc.ref, Ciphertext: tc.ct, AAD: tc.aad}, nil)
			wantOneOf(t, err, tc.want)
		})
	}
	t.Run("batch", func(t *testing.T) {
		var ops []api.BatchItem
		for _, tc := range cases {
			ops = append(ops, api.BatchItem{Op: api.OpDecrypt, KeyID: tc.ref.KeyID, Ciphertext: tc.ct, AAD: tc.aad})
		}
		var out api.BatchResponse
		s.must(t, "POST", "/v1/crypto/batch", api.BatchRequest{Ops: ops}, &out)
		if len(out.Results) != len(cases) {
			t.Fatalf("batch answered %d results for %d ops", len(out.Results), len(cases))
		}
		for i, r := range out.Results {
			if r.Error == nil || r.Error.Code != cases[i].want.code || r.Plaintext != nil {
				t.Errorf("batch %q = %+v, want error %s", cases[i].name, r, cases[i].want.code)
			}
		}
	})
	t.Run("sealed key of another key", func(t *testing.T) {
		var sealed api.SealResponse
		s.must(t, "POST", "/v1/keys/seal", api.SealRequest{KeyIDs: []string{kb.KeyID}}, &sealed)
		err := s.do(t, "POST", "/v1/crypto/decrypt", api.DecryptRequest{KeyRef: api.KeyRef{SealedKey: sealed.Sealed[0].SealedKey}, Ciphertext: ct1, AAD: aad}, nil)
		kmstest.WantError(t, err, 400, api.CodeDecryptFailed)
	})
	// Control: the untouched ciphertexts open.
	for _, ct := range [][]byte{ct1, ct2} {
		var out api.DecryptResponse
		s.must(t, "POST", "/v1/crypto/decrypt", api.DecryptRequest{Ciphertext: ct, AAD: aad}, &out)
		if !bytes.Equal(out.Plaintext, pt) {
			t.Fatal("an untouched ciphertext does not round-trip")
		}
	}
}
