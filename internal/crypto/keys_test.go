package crypto

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/secret"
)

var implementedTypes = []api.KeyType{api.KeyAES256GCM, api.KeyHMACSHA256, api.KeyEd25519, api.KeyECDSAP256}

func TestGenerateKey(t *testing.T) {
	for _, typ := range implementedTypes {
		t.Run(string(typ), func(t *testing.T) {
			a, err := GenerateKey(typ)
			if err != nil {
				t.Fatalf("GenerateKey = %v", err)
			}
			b, _ := GenerateKey(typ)
			if a.Len() != DataKeySize {
				t.Errorf("GenerateKey: %d bytes, want %d", a.Len(), DataKeySize)
			}
			if a.Equal(b) {
				t.Errorf("two GenerateKey calls gave the same key")
			}
			if err := CheckMaterial(typ, a); err != nil {
				t.Errorf("CheckMaterial(GenerateKey) = %v", err)
			}
		})
	}
	for _, typ := range []api.KeyType{"", "rsa-2048"} {
		if _, err := GenerateKey(typ); !errors.Is(err, ErrUnsupported) {
			t.Errorf("GenerateKey(%q) = %v, want ErrUnsupported", typ, err)
		}
	}
}

func TestCheckMaterial(t *testing.T) {
	order := elliptic.P256().Params().N.FillBytes(make([]byte, 32))
	orderMinus1 := new(big.Int).Sub(elliptic.P256().Params().N, big.NewInt(1)).FillBytes(make([]byte, 32))
	tests := []struct {
		typ  api.KeyType
		m    []byte
		want error
	}{
		{api.KeyAES256GCM, make([]byte, 32), nil},
		{api.KeyAES256GCM, make([]byte, 16), ErrInvalidKey},
		{api.KeyHMACSHA256, make([]byte, 33), ErrInvalidKey},
		{api.KeyEd25519, make([]byte, 32), nil},
		{api.KeyEd25519, make([]byte, 64), ErrInvalidKey},
		{api.KeyECDSAP256, orderMinus1, nil},
		{api.KeyECDSAP256, make([]byte, 32), ErrInvalidKey}, // zero scalar
		{api.KeyECDSAP256, order, ErrInvalidKey},            // not reduced
		{api.KeyECDSAP256, make([]byte, 31), ErrInvalidKey},
		{"rsa-2048", make([]byte, 32), ErrUnsupported},
		{"", nil, ErrUnsupported},
	}
	for _, tt := range tests {
		if err := CheckMaterial(tt.typ, secret.Copy(tt.m)); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
			t.Errorf("CheckMaterial(%s, %d bytes) = %v, want %v", tt.typ, len(tt.m), err, tt.want)
		}
	}
}

func TestPublicKeyPEM(t *testing.T) {
	for _, typ := range []api.KeyType{api.KeyEd25519, api.KeyECDSAP256} {
		t.Run(string(typ), func(t *testing.T) {
			m, _ := GenerateKey(typ)
			s, err := PublicKeyPEM(typ, m)
			if err != nil {
				t.Fatalf("PublicKeyPEM = %v", err)
			}
			blk, rest := pem.Decode([]byte(s))
			if blk == nil || blk.Type != "PUBLIC KEY" || len(rest) != 0 {
				t.Fatalf("PublicKeyPEM = %q, want one PUBLIC KEY block", s)
			}
			pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			k, _ := NewKey(typ, "k", 1, m)
			msg := []byte("message")
			sig, _ := k.Sign(msg)
			switch p := pub.(type) {
			case ed25519.PublicKey:
				if !ed25519.Verify(p, msg, sig) {
					t.Error("public key does not verify the key's signature")
				}
			case *ecdsa.PublicKey:
				if !ecdsa.VerifyASN1(p, sha256Sum(msg), sig) {
					t.Error("public key does not verify the key's signature")
				}
			default:
				t.Fatalf("public key is %T", pub)
			}
		})
	}
	for _, typ := range []api.KeyType{api.KeyAES256GCM, api.KeyHMACSHA256} {
		if _, err := PublicKeyPEM(typ, secret.New(make([]byte, 32))); !errors.Is(err, ErrWrongKeyType) {
			t.Errorf("PublicKeyPEM(%s) = %v, want ErrWrongKeyType", typ, err)
		}
	}
	if _, err := PublicKeyPEM(api.KeyEd25519, secret.New(make([]byte, 5))); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("PublicKeyPEM(short) = %v, want ErrInvalidKey", err)
	}
}
