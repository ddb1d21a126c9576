package enclavetest

import (
	"bytes"
	"crypto/fips140"
	"errors"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/enclave"
)

// kems are the transport KEMs of the API with their HPKE KEM identifiers.
var kems = []struct {
	kem    api.KEM
	id     uint16
	x25519 bool // not FIPS 140-3 approved
}{
	{api.KEMX25519, 0x0020, true},
	{api.KEMP256, 0x0010, false},
	{api.KEMMLKEM768X25519, 0x647a, true},
	{api.KEMMLKEM768P256, 0x0050, false},
}

func testTransportKey(t *testing.T, fresh opener) {
	e := fresh(t)
	for _, tc := range kems {
		t.Run(string(tc.kem), func(t *testing.T) {
			sk, err := e.TransportKey(t.Context(), tc.kem)
			if fips140.Enabled() && tc.x25519 {
				if !errors.Is(err, enclave.ErrUnsupportedKEM) {
					t.Fatalf("TransportKey(%s) in FIPS mode = %v, want ErrUnsupportedKEM", tc.kem, err)
				}
				return
			}
			if errors.Is(err, enclave.ErrUnsupportedKEM) {
				t.Skipf("enclave does not support %s: %v", tc.kem, err)
			}
			if err != nil {
				t.Fatalf("TransportKey(%s) = %v", tc.kem, err)
			}
			if id := sk.KEM().ID(); id != tc.id {
				t.Errorf("KEM().ID() = %#04x, want %#04x", id, tc.id)
			}
			if _, err := sk.Bytes(); err == nil {
				t.Error("Bytes() exported the private key, want an error")
			}

			// Seal to the serialized public key, as the KMS does.
			pk, err := sk.KEM().NewPublicKey(sk.PublicKey().Bytes())
			if err != nil {
				t.Fatalf("NewPublicKey(PublicKey().Bytes()) = %v", err)
			}
			info, msg := []byte("enclavetest info"), []byte("a data key, 32 bytes long......")
			ct, err := kcrypto.HPKESeal(pk, info, msg)
			if err != nil {
				t.Fatalf("HPKESeal() = %v", err)
			}
			got, err := kcrypto.HPKEOpen(sk, info, ct)
			if err != nil || !bytes.Equal(got.Expose(), msg) {
				t.Fatalf("HPKEOpen() = %v; want %q", err, msg)
			}
			got.Wipe()
			if _, err := kcrypto.HPKEOpen(sk, []byte("other info"), ct); err == nil {
				t.Error("HPKEOpen() with other info succeeded")
			}
			bad := bytes.Clone(ct)
			bad[0] ^= 1 // in the encapsulated key
			if _, err := kcrypto.HPKEOpen(sk, info, bad); err == nil {
				t.Error("HPKEOpen() of an altered encapsulation succeeded")
			}

			again, err := e.TransportKey(t.Context(), tc.kem)
			if err != nil {
				t.Fatalf("TransportKey(%s) again = %v", tc.kem, err)
			}
			if !bytes.Equal(again.PublicKey().Bytes(), sk.PublicKey().Bytes()) {
				t.Error("TransportKey() returned a different key the second time")
			}
			if got, err := kcrypto.HPKEOpen(again, info, ct); err != nil || !bytes.Equal(got.Expose(), msg) {
				t.Errorf("HPKEOpen() with the key asked again = %v; want %q", err, msg)
			} else {
				got.Wipe()
			}
		})
	}

	for _, kem := range []api.KEM{"", "x448", "P256", "mlkem1024-p384"} {
		if _, err := e.TransportKey(t.Context(), kem); !errors.Is(err, enclave.ErrUnsupportedKEM) {
			t.Errorf("TransportKey(%q) = %v, want ErrUnsupportedKEM", kem, err)
		}
	}
}
