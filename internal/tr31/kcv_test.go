package tr31

import (
	"errors"
	"fmt"
	"testing"

	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/secret"
)

// TestCheckValueBlocks: Unwrap checks the KC (wrapped key) and KP (KBPK)
// optional blocks a sender added, by either method of ANSI X9.24-1 Annex
// A, and refuses a block whose check value is another key's or which
// names no method it defines. (TestPublishedVectors checks the KP blocks
// of the ANSI X9.143 examples.)
func TestCheckValueBlocks(t *testing.T) {
	kbpk := secret.New(testvectorBytes(32, 0x11))
	key := secret.New(testvectorBytes(32, 0x22))
	cmacKCV := func(k *secret.Bytes, n int) string {
		m, err := kcrypto.NewCMAC(k)
		if err != nil {
			t.Fatal(err)
		}
		tag := m.Sum(make([]byte, 16))
		return fmt.Sprintf("%X", tag[:n])
	}
	legacyKCV := func(k *secret.Bytes) string {
		// The legacy method is the zero block encrypted under the key:
		// one AES block, which CBC with a zero IV computes too.
		ct, err := kcrypto.EncryptAESCBC(k, make([]byte, 16), make([]byte, 16))
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%X", ct[:3])
	}
	for _, c := range []struct {
		name   string
		blocks []Block
		field  string // "" = accepted
	}{
		{"KC by CMAC, 5 bytes", []Block{{ID: "KC", Data: "01" + cmacKCV(key, 5)}}, ""},
		{"KC by CMAC, 3 bytes", []Block{{ID: "KC", Data: "01" + cmacKCV(key, 3)}}, ""},
		{"KC by the legacy method", []Block{{ID: "KC", Data: "00" + legacyKCV(key)}}, ""},
		{"KC and KP", []Block{{ID: "KC", Data: "01" + cmacKCV(key, 5)}, {ID: "KP", Data: "01" + cmacKCV(kbpk, 5)}}, ""},
		{"KC of another key", []Block{{ID: "KC", Data: "01" + cmacKCV(kbpk, 5)}}, "optional block KC"},
		{"KC value under the other method", []Block{{ID: "KC", Data: "00" + cmacKCV(key, 3)}}, "optional block KC"},
		{"KP of another KBPK", []Block{{ID: "KP", Data: "01" + cmacKCV(key, 5)}}, "optional block KP"},
		{"KC naming method 02", []Block{{ID: "KC", Data: "02" + cmacKCV(key, 3)}}, "optional block KC"},
		{"KC legacy value of 4 bytes", []Block{{ID: "KC", Data: "00" + cmacKCV(key, 4)}}, "optional block KC"},
		{"KC CMAC value of 6 bytes", []Block{{ID: "KC", Data: "01" + cmacKCV(key, 6)}}, "optional block KC"},
		{"KC with a method only", []Block{{ID: "KC", Data: "01"}}, "optional block KC"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := Header{Version: 'D', KeyUsage: "D0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E', KeyContext: '0', Blocks: c.blocks}
			block, err := Wrap(kbpk, h, key)
			if err != nil {
				t.Fatalf("Wrap: %v", err)
			}
			_, got, err := Unwrap(kbpk, block)
			var fe *FieldError
			switch {
			case c.field == "" && err != nil:
				t.Fatalf("Unwrap = %v, want the key", err)
			case c.field == "" && !got.Equal(key):
				t.Fatal("Unwrap returned another key")
			case c.field != "" && (!errors.As(err, &fe) || fe.Field != c.field || !errors.Is(err, ErrFormat)):
				t.Fatalf("Unwrap = %v, want %s refused", err, c.field)
			}
		})
	}
}

func testvectorBytes(n int, b byte) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b + byte(i)
	}
	return out
}
