package kmstest

import (
	"testing"

	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/secret"
)

// KeyComponents are the parts of an AES-256 key entered by a key-component
// ceremony, each with the CMAC KCV an admin presents with it, and the key
// they XOR to with its KCV (what the ceremony's expected KCV is).
type KeyComponents struct {
	Parts [][]byte
	KCVs  []string      // KCVs[i] is the KCV of Parts[i]
	Key   *secret.Bytes // the XOR of Parts, wiped when the test ends
	KCV   string        // the KCV of Key
}

// NewKeyComponents makes n random 32-byte components.
func NewKeyComponents(t testing.TB, n int) KeyComponents {
	t.Helper()
	kcv := func(b []byte) string {
		t.Helper()
		s, err := kcrypto.KCVCMAC(secret.Copy(b))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var c KeyComponents
	key := make([]byte, 32)
	for range n {
		p := kcrypto.Random(32)
		c.Parts = append(c.Parts, p)
		c.KCVs = append(c.KCVs, kcv(p))
		for i := range p {
			key[i] ^= p[i]
		}
	}
	c.KCV = kcv(key)
	c.Key = secret.New(key)
	t.Cleanup(c.Key.Wipe)
	return c
}
