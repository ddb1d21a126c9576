package software

import (
	"crypto"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/awnumar/memguard"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/secret"
)

// BenchmarkMemguardOpen is the floor every operation pays: one
// memguard.Enclave.Open and Destroy of a 32-byte secret.
func BenchmarkMemguardOpen(b *testing.B) {
	open(b)
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	e := memguard.NewEnclave(k)
	for b.Loop() {
		buf, err := e.Open()
		if err != nil {
			b.Fatal(err)
		}
		buf.Destroy()
	}
}

func BenchmarkProtectedOpen(b *testing.B) {
	p, err := open(b).Protect(secret.Copy(make([]byte, 32)))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		m, err := p.Open()
		if err != nil {
			b.Fatal(err)
		}
		m.Wipe()
	}
}

func BenchmarkLocalOpen(b *testing.B) {
	e := open(b)
	pt := secret.Copy(make([]byte, 32))
	blob, err := e.LocalSeal(b.Context(), pt, nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		m, err := e.LocalOpen(b.Context(), blob, nil)
		if err != nil {
			b.Fatal(err)
		}
		m.Wipe()
	}
}

func BenchmarkSign(b *testing.B) {
	signer, err := open(b).IdentityKey(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("x"))
	for b.Loop() {
		if _, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTransportOpen(b *testing.B) {
	e := open(b)
	for _, kem := range []api.KEM{api.KEMP256, api.KEMMLKEM768P256} {
		b.Run(string(kem), func(b *testing.B) {
			sk, err := e.TransportKey(b.Context(), kem)
			if err != nil {
				b.Fatal(err)
			}
			ct, err := hpke.Seal(sk.PublicKey(), hpke.HKDFSHA256(), hpke.AES256GCM(), nil, make([]byte, 32))
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := hpke.Open(sk, hpke.HKDFSHA256(), hpke.AES256GCM(), nil, ct); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
