package format

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"os"
	"testing"

	"github.com/dcaas/dcaas/internal/testvectors"
)

// golden is one entry of testdata/golden.json: bytes laid out by an
// independent encoder (a script following docs/formats.md) and the fields
// they must parse to. These bytes must keep parsing, forever.
type golden struct {
	Name      string         `json:"name"`
	Kind      string         `json:"kind"`
	Hex       string         `json:"hex"`
	HeaderLen int            `json:"header_len"`
	Fields    map[string]any `json:"fields"`
}

func loadGolden(t testing.TB) []golden {
	t.Helper()
	b, err := os.ReadFile("testdata/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g []golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGolden(t *testing.T) {
	for _, g := range loadGolden(t) {
		if g.Kind == "batch" {
			continue // TestGoldenBatch: its fields need exact 64-bit integers
		}
		t.Run(g.Name, func(t *testing.T) {
			raw := testvectors.Hex(t, g.Hex)
			str := func(k string) string { return g.Fields[k].(string) }
			num := func(k string) uint32 { return uint32(g.Fields[k].(float64)) }
			var header, marshaled []byte
			switch g.Kind {
			case "ekb":
				e, err := ParseEKB(raw)
				if err != nil {
					t.Fatalf("ParseEKB = %v", err)
				}
				want := EKB{Tenant: str("tenant"), TMKVersion: num("tmk_version"), KeyID: str("key_id"),
					KeyVersion: num("key_version"), Metadata: testvectors.Hex(t, str("metadata")), Sealed: testvectors.Hex(t, str("sealed"))}
				copy(want.Salt[:], testvectors.Hex(t, str("salt")))
				if e.Tenant != want.Tenant || e.TMKVersion != want.TMKVersion || e.KeyID != want.KeyID ||
					e.KeyVersion != want.KeyVersion || !bytes.Equal(e.Metadata, want.Metadata) ||
					e.Salt != want.Salt || !bytes.Equal(e.Sealed, want.Sealed) {
					t.Fatalf("ParseEKB = %+v, want %+v", e, want)
				}
				if d := e.Digest(); d != sha256.Sum256(raw) {
					t.Errorf("Digest = %x, want %x", d, sha256.Sum256(raw))
				}
				header, marshaled = e.Header(), want.Marshal()
			case "wrapped":
				w, err := ParseWrappedKey(raw)
				if err != nil {
					t.Fatalf("ParseWrappedKey = %v", err)
				}
				want := WrappedKey{KEMID: uint16(num("kem_id")), Enc: testvectors.Hex(t, str("enc")), Index: num("index"), Ciphertext: testvectors.Hex(t, str("ciphertext"))}
				if w.KEMID != want.KEMID || !bytes.Equal(w.Enc, want.Enc) || w.Index != want.Index || !bytes.Equal(w.Ciphertext, want.Ciphertext) {
					t.Fatalf("ParseWrappedKey = %+v, want %+v", w, want)
				}
				header, marshaled = w.Header(), want.Marshal()
			case "ciphertext":
				c, err := ParseCiphertext(raw)
				if err != nil {
					t.Fatalf("ParseCiphertext = %v", err)
				}
				want := Ciphertext{KeyID: str("key_id"), KeyVersion: num("key_version"), Sealed: testvectors.Hex(t, str("sealed"))}
				if c.KeyID != want.KeyID || c.KeyVersion != want.KeyVersion || !bytes.Equal(c.Sealed, want.Sealed) {
					t.Fatalf("ParseCiphertext = %+v, want %+v", c, want)
				}
				id, v, err := PeekCiphertextKey(raw)
				if err != nil || id != want.KeyID || v != want.KeyVersion {
					t.Errorf("PeekCiphertextKey = %q, %d, %v; want %q, %d, nil", id, v, err, want.KeyID, want.KeyVersion)
				}
				h, sealed, err := SplitCiphertext(raw)
				if err != nil || !bytes.Equal(h, raw[:g.HeaderLen]) || !bytes.Equal(sealed, want.Sealed) {
					t.Errorf("SplitCiphertext = %x, %x, %v", h, sealed, err)
				}
				header, marshaled = c.Header(), want.AppendMarshal([]byte("prefix"))[len("prefix"):]
			default:
				t.Fatalf("unknown kind %q", g.Kind)
			}
			if !bytes.Equal(marshaled, raw) {
				t.Errorf("Marshal = %x, want %x", marshaled, raw)
			}
			if !bytes.Equal(header, raw[:g.HeaderLen]) {
				t.Errorf("Header = %x, want %x", header, raw[:g.HeaderLen])
			}
		})
	}
}

// TestParseCopies checks that ParseEKB and ParseWrappedKey do not alias
// their input, and that ParseCiphertext does (as documented).
func TestParseCopies(t *testing.T) {
	for _, g := range loadGolden(t) {
		raw := testvectors.Hex(t, g.Hex)
		orig := bytes.Clone(raw)
		var remarshal func() []byte
		switch g.Kind {
		case "ekb":
			e, err := ParseEKB(raw)
			if err != nil {
				t.Fatal(err)
			}
			remarshal = e.Marshal
		case "wrapped":
			w, err := ParseWrappedKey(raw)
			if err != nil {
				t.Fatal(err)
			}
			remarshal = w.Marshal
		case "batch":
			w, err := ParseWrappedBatch(raw)
			if err != nil {
				t.Fatal(err)
			}
			remarshal = w.Marshal
		case "ciphertext":
			c, err := ParseCiphertext(raw)
			if err != nil {
				t.Fatal(err)
			}
			raw[len(raw)-1] ^= 1
			if c.Sealed[len(c.Sealed)-1] != raw[len(raw)-1] {
				t.Errorf("%s: ParseCiphertext result does not alias its input", g.Name)
			}
			continue
		}
		for i := range raw {
			raw[i] ^= 0xff
		}
		if got := remarshal(); !bytes.Equal(got, orig) {
			t.Errorf("%s: parsed value changed with its input", g.Name)
		}
	}
}
