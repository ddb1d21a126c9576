package crypto

import (
	"bytes"
	"errors"
	"testing"

	"github.com/dcaas/dcaas/api"
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
