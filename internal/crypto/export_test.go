package crypto

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"errors"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/secret"
)

func TestWrapExportUnwrapImport(t *testing.T) {
	rsaPriv := testImportKey(t)
	kems := []api.KEM{api.KEMP256, api.KEMMLKEM768P256}
	if !FIPS() {
		kems = append(kems, api.KEMX25519, api.KEMMLKEM768X25519)
	}
	info := []byte("dcaas/v1 import tenant=acme token=imp_123")
	material := secret.New(Random(32))
	defer material.Wipe()

	t.Run(WrappingRSAAES, func(t *testing.T) {
		w, err := WrapExport(WrappingRSAAES, &rsaPriv.PublicKey, info, material)
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnwrapImport(WrappingRSAAES, rsaPriv, nil, nil, w)
		if err != nil || !got.Equal(material) {
			t.Errorf("UnwrapImport = %v, want the material", err)
		}
		if _, err := UnwrapImport(WrappingRSAAES, rsaPriv, nil, nil, w[:len(w)-1]); err != ErrUnwrap {
			t.Errorf("UnwrapImport(truncated) = %v, want ErrUnwrap", err)
		}
		if _, err := UnwrapImport(WrappingRSAAES, nil, nil, nil, w); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("UnwrapImport(no RSA key) = %v, want ErrInvalidKey", err)
		}
	})
	for _, kem := range kems {
		t.Run(WrappingHPKE+" "+string(kem), func(t *testing.T) {
			priv, err := GenerateKEMKey(kem)
			if err != nil {
				t.Fatal(err)
			}
			w, err := WrapExport(WrappingHPKE, priv.PublicKey(), info, material)
			if err != nil {
				t.Fatal(err)
			}
			got, err := UnwrapImport(WrappingHPKE, nil, priv, info, w)
			if err != nil || !got.Equal(material) {
				t.Fatalf("UnwrapImport = %v, want the material", err)
			}
			// The format is plain single-shot HPKE: crypto/hpke opens it.
			if pt, err := hpke.Open(priv, hpke.HKDFSHA256(), hpke.AES256GCM(), info, w); err != nil || !bytes.Equal(pt, material.Expose()) {
				t.Errorf("hpke.Open(WrapExport) = %v", err)
			}
			other, _ := GenerateKEMKey(kem)
			f := bytes.Clone(w)
			f[len(f)-1] ^= 1
			for name, tt := range map[string]struct {
				priv    hpke.PrivateKey
				info    []byte
				wrapped []byte
			}{
				"other info":      {priv, []byte("dcaas/v1 import tenant=acme token=imp_124"), w},
				"no info":         {priv, nil, w},
				"other recipient": {other, info, w},
				"flipped tag":     {priv, info, f},
				"truncated":       {priv, info, w[:len(w)-1]},
				"enc only":        {priv, info, w[:len(w)-48]},
				"empty":           {priv, info, nil},
			} {
				if _, err := UnwrapImport(WrappingHPKE, rsaPriv, tt.priv, tt.info, tt.wrapped); err != ErrUnwrap {
					t.Errorf("%s: UnwrapImport = %v, want ErrUnwrap", name, err)
				}
			}
		})
	}
}

func TestWrapExportErrors(t *testing.T) {
	rsaPriv := testImportKey(t)
	hpkePriv, err := GenerateKEMKey(api.KEMP256)
	if err != nil {
		t.Fatal(err)
	}
	m := secret.New(Random(32))
	tests := []struct {
		name   string
		scheme string
		pub    any
		m      *secret.Bytes
		want   error
	}{
		{"unknown scheme", "rsa-oaep", &rsaPriv.PublicKey, m, ErrUnknownWrapping},
		{"empty scheme", "", &rsaPriv.PublicKey, m, ErrUnknownWrapping},
		{"HPKE key for RSA", WrappingRSAAES, hpkePriv.PublicKey(), m, ErrInvalidKey},
		{"RSA key for HPKE", WrappingHPKE, &rsaPriv.PublicKey, m, ErrInvalidKey},
		{"nil key", WrappingHPKE, nil, m, ErrInvalidKey},
		{"empty material", WrappingHPKE, hpkePriv.PublicKey(), secret.New(nil), ErrInvalidKey},
	}
	for _, tt := range tests {
		if _, err := WrapExport(tt.scheme, tt.pub, nil, tt.m); !errors.Is(err, tt.want) {
			t.Errorf("%s: WrapExport = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := UnwrapImport("aes-kwp", rsaPriv, hpkePriv, nil, make([]byte, 600)); !errors.Is(err, ErrUnknownWrapping) {
		t.Errorf("UnwrapImport(unknown scheme) = %v, want ErrUnknownWrapping", err)
	}
	if _, err := UnwrapImport(WrappingHPKE, rsaPriv, nil, nil, make([]byte, 100)); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("UnwrapImport(no HPKE key) = %v, want ErrInvalidKey", err)
	}
	// A KEM dcaas does not offer.
	p384, err := hpke.DHKEM(ecdh.P384()).GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WrapExport(WrappingHPKE, p384.PublicKey(), nil, m); !errors.Is(err, ErrUnknownKEM) {
		t.Errorf("WrapExport(P-384 KEM) = %v, want ErrUnknownKEM", err)
	}
	if _, err := UnwrapImport(WrappingHPKE, nil, p384, nil, make([]byte, 100)); !errors.Is(err, ErrUnknownKEM) {
		t.Errorf("UnwrapImport(P-384 KEM) = %v, want ErrUnknownKEM", err)
	}
	if FIPS() {
		x, err := hpke.DHKEM(ecdh.X25519()).GenerateKey()
		if err != nil { // GODEBUG=fips140=only refuses X25519 itself
			t.Logf("X25519 key generation refused in this FIPS mode: %v", err)
			return
		}
		if _, err := WrapExport(WrappingHPKE, x.PublicKey(), nil, m); !errors.Is(err, ErrNotApproved) {
			t.Errorf("FIPS mode: WrapExport(X25519) = %v, want ErrNotApproved", err)
		}
	}
}
