package adversarial_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/ca"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/secret"
)

// TestResidualSelfWrappedImport pins a residual risk of docs/threat-model.md
// (R3) to what the code does, so the document cannot drift from it.
//
// Key transport to a sidecar is HPKE base mode: anyone holding the
// wrapping certificate (a public document) can seal a key to it, and the
// sidecar cannot tell the KMS's wrapping from anyone else's. The bound
// custodian can therefore import material of its own choosing, under
// metadata of its own choosing — even the id of a real KMS key it holds,
// whose loaded version this replaces. It gains nothing it did not have
// (it chose the bytes, and the result lives only in its own sidecar), but
// "every key in a sidecar came from the KMS" is not a property dcaas has.
// If imports become sender-authenticated (HPKE auth mode, or a KMS
// signature over each wrapped key), this test must flip to a refusal.
func TestResidualSelfWrappedImport(t *testing.T) {
	w := newWorld(t)
	s := w.sidecar(t, w.payCreds.DN, "", nil)
	real := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	s.load(t, w.pay, real)

	info, err := ca.ParseWrapping(parsePEM(t, s.cert))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kcrypto.ParseKEMPublicKey(api.PublicKey{KEM: info.KEM, PublicKey: info.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	chosen := bytes.Repeat([]byte{0x42}, 32)
	md := real.Metadata // the real key's id and version, the custodian's material
	mdJSON, err := format.MetadataAAD(&md)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	batch, err := kcrypto.SealBatch(pub, s.id, now, now.Add(time.Minute), []kcrypto.BatchItem{{Metadata: mdJSON, Key: secret.Copy(chosen)}})
	if err != nil {
		t.Fatal(err)
	}
	err = s.do(t, "POST", "/v1/keys/import", &api.WrappedKeys{Batch: batch, Keys: []api.WrappedKey{{KeyID: md.KeyID, Version: md.Version}}}, nil)
	if err != nil {
		t.Fatalf("self-wrapped import refused (%v): imports are now sender-authenticated; update docs/threat-model.md R3 and make this test expect the refusal", err)
	}
	// The sidecar now encrypts under the custodian's bytes with the real
	// key's id: the KMS (holding the real key) cannot open the result.
	var enc api.EncryptResponse
	s.must(t, "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{KeyID: md.KeyID}, Plaintext: []byte("x")}, &enc)
	err = w.pay.Do("POST", "/v1/crypto/decrypt", api.DecryptRequest{KeyRef: api.KeyRef{EKB: real.EKB}, Ciphertext: enc.Ciphertext}, nil)
	if api.CodeOf(err) != api.CodeDecryptFailed {
		t.Fatalf("central decrypt of the shadow key's ciphertext = %v, want decryption_failed", err)
	}
}
