package crypto

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/secret"
)

func TestEd25519PublicKeyFromPEM(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	want := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	pemText, err := PublicKeyPEM(api.KeyEd25519, secret.New(bytes.Clone(seed)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Ed25519PublicKeyFromPEM(pemText)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Ed25519PublicKeyFromPEM = %x, %v; want %x", got, err, want)
	}
	ecPEM := p256PublicKeyPEM(t)
	if _, err := Ed25519PublicKeyFromPEM(ecPEM); !errors.Is(err, ErrWrongKeyType) {
		t.Errorf("Ed25519PublicKeyFromPEM(P-256 key) = %v, want ErrWrongKeyType", err)
	}
	for _, bad := range []string{"", "not pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"} {
		if _, err := Ed25519PublicKeyFromPEM(bad); err == nil {
			t.Errorf("Ed25519PublicKeyFromPEM(%q) = nil error", bad)
		}
	}
}

// p256PublicKeyPEM is the PEM public key of a new P-256 key: a public key
// of another type, which the Ed25519 key parsers refuse.
func p256PublicKeyPEM(t *testing.T) string {
	t.Helper()
	ec, err := GenerateKey(api.KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	ecPEM, err := PublicKeyPEM(api.KeyECDSAP256, ec)
	if err != nil {
		t.Fatal(err)
	}
	return ecPEM
}
