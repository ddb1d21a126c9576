package crypto

import (
	"bytes"
	"errors"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/secret"
)

var allKEMs = []api.KEM{api.KEMX25519, api.KEMP256, api.KEMMLKEM768X25519, api.KEMMLKEM768P256}

// approved reports whether k is usable in this process's mode.
func approved(k api.KEM) bool {
	return !FIPS() || k == api.KEMP256 || k == api.KEMMLKEM768P256
}

func TestKEMOf(t *testing.T) {
	for _, s := range kemSuites {
		t.Run(string(s.name), func(t *testing.T) {
			if id := s.kem().ID(); id != s.id {
				t.Fatalf("%s: table id 0x%04x, crypto/hpke id 0x%04x", s.name, s.id, id)
			}
			if name, err := KEMName(s.id); err != nil || name != s.name {
				t.Errorf("KEMName(0x%04x) = %q, %v; want %q", s.id, name, err, s.name)
			}
			kem, err := KEMOf(s.name)
			if !approved(s.name) {
				if !errors.Is(err, ErrNotApproved) {
					t.Errorf("KEMOf(%s) in FIPS mode = %v, want ErrNotApproved", s.name, err)
				}
				if _, err := GenerateKEMKey(s.name); !errors.Is(err, ErrNotApproved) {
					t.Errorf("GenerateKEMKey(%s) in FIPS mode = %v, want ErrNotApproved", s.name, err)
				}
				return
			}
			if err != nil || kem.ID() != s.id {
				t.Fatalf("KEMOf(%s) = %v, %v", s.name, kem, err)
			}
			priv, err := GenerateKEMKey(s.name)
			if err != nil {
				t.Fatalf("GenerateKEMKey = %v", err)
			}
			pk, err := MarshalKEMPublicKey(priv.PublicKey())
			if err != nil || pk.KEM != s.name {
				t.Fatalf("MarshalKEMPublicKey = %+v, %v", pk, err)
			}
			pub, err := ParseKEMPublicKey(pk)
			if err != nil || !bytes.Equal(pub.Bytes(), pk.PublicKey) {
				t.Fatalf("ParseKEMPublicKey = %v", err)
			}
			for _, bad := range [][]byte{nil, pk.PublicKey[:len(pk.PublicKey)-1], append(bytes.Clone(pk.PublicKey), 0)} {
				if _, err := ParseKEMPublicKey(api.PublicKey{KEM: s.name, PublicKey: bad}); !errors.Is(err, ErrInvalidKey) {
					t.Errorf("ParseKEMPublicKey(%d bytes) = %v, want ErrInvalidKey", len(bad), err)
				}
			}
		})
	}
	for _, k := range []api.KEM{"", "X25519", "mlkem1024", "rsa"} {
		if _, err := KEMOf(k); !errors.Is(err, ErrUnknownKEM) {
			t.Errorf("KEMOf(%q) = %v, want ErrUnknownKEM", k, err)
		}
		if _, err := ParseKEMPublicKey(api.PublicKey{KEM: k, PublicKey: make([]byte, 32)}); !errors.Is(err, ErrUnknownKEM) {
			t.Errorf("ParseKEMPublicKey(%q) = %v, want ErrUnknownKEM", k, err)
		}
	}
	for _, id := range []uint16{0, 0x0011, 0x0041} {
		if _, err := KEMName(id); !errors.Is(err, ErrUnknownKEM) {
			t.Errorf("KEMName(0x%04x) = %v, want ErrUnknownKEM", id, err)
		}
	}
}

func TestDefaultKEM(t *testing.T) {
	want := api.KEMX25519
	if FIPS() {
		want = api.KEMP256
	}
	if got := DefaultKEM(); got != want {
		t.Errorf("DefaultKEM() = %s, want %s", got, want)
	}
	if _, err := KEMOf(DefaultKEM()); err != nil {
		t.Errorf("KEMOf(DefaultKEM()) = %v", err)
	}
}

// TestHPKESealOpen: HPKESeal is the construction of WrappingHPKE (what
// UnwrapImport opens), HPKEOpen reverses it, and every way of getting it
// wrong is the one ErrDecrypt.
func TestHPKESealOpen(t *testing.T) {
	for _, k := range allKEMs {
		if !approved(k) {
			continue
		}
		t.Run(string(k), func(t *testing.T) {
			priv, err := GenerateKEMKey(k)
			if err != nil {
				t.Fatal(err)
			}
			info, msg := []byte("test info"), []byte("a 32-byte data key, in clear....")
			ct, err := HPKESeal(priv.PublicKey(), info, msg)
			if err != nil {
				t.Fatalf("HPKESeal() = %v", err)
			}
			got, err := HPKEOpen(priv, info, ct)
			if err != nil || !bytes.Equal(got.Expose(), msg) {
				t.Fatalf("HPKEOpen() = %v, want the message", err)
			}
			got.Wipe()
			imported, err := UnwrapImport(WrappingHPKE, nil, priv, info, ct)
			if err != nil || !bytes.Equal(imported.Expose(), msg) {
				t.Errorf("UnwrapImport(hpke, HPKESeal's output) = %v, want the message", err)
			}
			other, err := GenerateKEMKey(k)
			if err != nil {
				t.Fatal(err)
			}
			bad := bytes.Clone(ct)
			bad[len(bad)-1] ^= 1
			for name, open := range map[string]func() (*secret.Bytes, error){
				"other info":      func() (*secret.Bytes, error) { return HPKEOpen(priv, []byte("other info"), ct) },
				"other recipient": func() (*secret.Bytes, error) { return HPKEOpen(other, info, ct) },
				"altered":         func() (*secret.Bytes, error) { return HPKEOpen(priv, info, bad) },
				"truncated":       func() (*secret.Bytes, error) { return HPKEOpen(priv, info, ct[:10]) },
			} {
				if _, err := open(); err != ErrDecrypt {
					t.Errorf("HPKEOpen(%s) = %v, want exactly ErrDecrypt", name, err)
				}
			}
		})
	}
}

// TestCheckKEMPublicKey: every KEM dcaas names is checked, approved in
// FIPS mode or not (a wrapping certificate may carry any).
func TestCheckKEMPublicKey(t *testing.T) {
	for _, s := range kemSuites {
		t.Run(string(s.name), func(t *testing.T) {
			priv, err := s.kem().GenerateKey()
			if err != nil {
				t.Fatal(err)
			}
			pub := priv.PublicKey().Bytes()
			if err := CheckKEMPublicKey(s.name, pub); err != nil {
				t.Errorf("CheckKEMPublicKey(%s, its key) = %v", s.name, err)
			}
			if err := CheckKEMPublicKey(s.name, pub[:len(pub)-1]); err == nil {
				t.Errorf("CheckKEMPublicKey(%s, a truncated key) = nil", s.name)
			}
		})
	}
	if err := CheckKEMPublicKey("x448", make([]byte, 56)); !errors.Is(err, ErrUnknownKEM) {
		t.Errorf("CheckKEMPublicKey(x448) = %v, want ErrUnknownKEM", err)
	}
}
