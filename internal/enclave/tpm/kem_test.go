package tpm

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/enclave"
)

var hpkeInfo = []byte("dcaas tpm test")

func hpkeSeal(t *testing.T, pk hpke.PublicKey, msg []byte) []byte {
	t.Helper()
	ct, err := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), hpkeInfo, msg)
	if err != nil {
		t.Fatalf("hpke.Seal() = %v", err)
	}
	return ct
}

func hpkeOpenErr(k hpke.PrivateKey, ct []byte) ([]byte, error) {
	return hpke.Open(k, hpke.HKDFSHA256(), hpke.AES256GCM(), hpkeInfo, ct)
}

func hpkeOpen(t *testing.T, k hpke.PrivateKey, ct []byte) []byte {
	t.Helper()
	pt, err := hpkeOpenErr(k, ct)
	if err != nil {
		t.Fatalf("hpke.Open() = %v", err)
	}
	return pt
}

func TestTransportKeyHPKE(t *testing.T) {
	e := openEnclave(t, "")
	k, err := e.TransportKey(t.Context(), api.KEMP256)
	if err != nil {
		t.Fatalf("TransportKey() = %v", err)
	}
	if got, want := k.KEM().ID(), hpke.DHKEM(ecdh.P256()).ID(); got != want {
		t.Errorf("KEM().ID() = %#x, want DHKEM(P-256) %#x", got, want)
	}
	if _, err := k.Bytes(); err == nil {
		t.Error("Bytes() = nil error: the private key left the TPM")
	}
	msg := []byte("a data key, wrapped by the KMS")
	ct := hpkeSeal(t, k.PublicKey(), msg)
	if got := hpkeOpen(t, k, ct); !bytes.Equal(got, msg) {
		t.Errorf("hpke.Open() = %q, want %q", got, msg)
	}
	ct[len(ct)-1] ^= 1
	if _, err := hpkeOpenErr(k, ct); err == nil {
		t.Error("hpke.Open(tampered) = nil error")
	}

	again, err := e.TransportKey(t.Context(), api.KEMP256)
	if err != nil {
		t.Fatalf("TransportKey() again = %v", err)
	}
	if !bytes.Equal(again.PublicKey().Bytes(), k.PublicKey().Bytes()) {
		t.Error("second TransportKey() returned another key")
	}
}

// TestECDHMatchesSoftware checks the TPM's ECDH against crypto/ecdh on the
// same points, in both directions.
func TestECDHMatchesSoftware(t *testing.T) {
	e := openEnclave(t, "")
	if _, err := e.TransportKey(t.Context(), api.KEMP256); err != nil {
		t.Fatalf("TransportKey() = %v", err)
	}
	kx := e.transportKX(t)
	for range 4 {
		peer, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		got, err := kx.ECDH(peer.PublicKey())
		if err != nil {
			t.Fatalf("ECDH() = %v", err)
		}
		want, err := peer.ECDH(kx.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("TPM ECDH = %x, software = %x", got, want)
		}
	}
	p384, err := ecdh.P384().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kx.ECDH(p384.PublicKey()); err == nil {
		t.Error("ECDH(P-384 key) = nil error")
	}
}

// transportKX is the enclave's keyExchanger (TransportKey must have run).
func (e *Enclave) transportKX(t *testing.T) *keyExchanger {
	t.Helper()
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.transport == nil {
		t.Fatal("no transport key")
	}
	// The hpke key keeps the exchanger; rebuild it from the same blob.
	o, err := e.readObject(transportFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ecdh.P256().NewPublicKey(e.transport.PublicKey().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return &keyExchanger{e: e, obj: o, pub: pub}
}

func TestTransportKeyUnsupportedKEMs(t *testing.T) {
	e := openEnclave(t, "")
	for _, kem := range []api.KEM{api.KEMX25519, api.KEMMLKEM768X25519, api.KEMMLKEM768P256, "", "p384"} {
		if _, err := e.TransportKey(t.Context(), kem); !errors.Is(err, enclave.ErrUnsupportedKEM) {
			t.Errorf("TransportKey(%q) = %v, want ErrUnsupportedKEM", kem, err)
		}
	}
}
