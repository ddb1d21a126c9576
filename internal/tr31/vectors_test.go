package tr31

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/testvectors"
)

type vector struct {
	Name     string            `json:"name"`
	KBPK     string            `json:"kbpk"`
	Key      string            `json:"key"`
	KeyBlock string            `json:"key_block"`
	Blocks   map[string]string `json:"blocks"`
}

func loadVectors(t testing.TB, file string) []vector {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Vectors []vector `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Vectors) == 0 {
		t.Fatalf("%s holds no vectors", file)
	}
	return f.Vectors
}

// TestPublishedVectors unwraps every published version D block to its
// published key, then rebuilds it from the same header, key and padding
// (the padding recovered from the block) and wants the published block
// back byte for byte: derivation, MAC, encryption and encoding all agree
// with the standards' examples and the HSMs that made the others.
func TestPublishedVectors(t *testing.T) {
	for _, v := range loadVectors(t, "testdata/vectors.json") {
		t.Run(v.Name+"/"+v.KeyBlock[:16], func(t *testing.T) { checkVector(t, v) })
	}
}

// TestDcaasExportVectors: blocks a dcaas KMS exported, with the keys
// moov-io/tr31 unwrapped them to (testdata/README.md).
func TestDcaasExportVectors(t *testing.T) {
	for _, v := range loadVectors(t, "testdata/dcaas_vectors.json") {
		t.Run(v.Name, func(t *testing.T) { checkVector(t, v) })
	}
}

func checkVector(t *testing.T, v vector) {
	kbpk, block, want := secret.New(testvectors.Hex(t, v.KBPK)), []byte(v.KeyBlock), testvectors.Hex(t, v.Key)
	h, key, err := Unwrap(kbpk, block)
	if err != nil {
		t.Fatalf("Unwrap = %v", err)
	}
	if !bytes.Equal(key.Expose(), want) {
		t.Fatalf("Unwrap key = %X, want %X", key.Expose(), want)
	}
	for id, data := range v.Blocks {
		if got, ok := h.Find(id); !ok || got != data {
			t.Errorf("optional block %s = %q, %v; want %q", id, got, ok, data)
		}
	}
	kb, err := Parse(block)
	if err != nil {
		t.Fatal(err)
	}
	again, err := kb.Marshal()
	if err != nil || !bytes.Equal(again, block) {
		t.Fatalf("Parse then Marshal = %s, %v; want the block", again, err)
	}
	// Rebuild with the clear key data the block holds (its padding).
	clearData, err := kb.open(kbpk, block)
	if err != nil {
		t.Fatal(err)
	}
	rebuilt, err := seal(kbpk, &kb.Header, clearData)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rebuilt, block) {
		t.Fatalf("rebuilt\n%s\nwant\n%s", rebuilt, block)
	}
	// And through Wrap, with the padding the block had.
	pad := clearData.Expose()[2+len(want):]
	wrapped, err := wrap(kbpk, kb.Header, secret.New(want), func(n int) []byte {
		if n > len(pad) {
			t.Fatalf("wrap asks for %d bytes of padding, the block has %d", n, len(pad))
		}
		return pad[:n]
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pad) < blockSize && !bytes.Equal(wrapped, block) { // a block without masking padding
		t.Fatalf("Wrap\n%s\nwant\n%s", wrapped, block)
	}
	if _, got, err := Unwrap(kbpk, wrapped); err != nil || !bytes.Equal(got.Expose(), want) {
		t.Fatalf("Unwrap(Wrap) = %X, %v", got.Expose(), err)
	}
	// Any change to the block, or another KBPK, fails authentication.
	for _, i := range []int{5, len(block) / 2, len(block) - 1} {
		bad := bytes.Clone(block)
		bad[i] = flipHex(bad[i])
		if _, _, err := Unwrap(kbpk, bad); err == nil {
			t.Errorf("Unwrap accepted the block with character %d changed", i)
		}
	}
	// Another KBPK: a block that names its KBPK's check value (KP) says
	// so; one that does not fails authentication.
	other := bytes.Clone(kbpk.Expose())
	other[0] ^= 1
	_, _, err = Unwrap(secret.New(other), block)
	var fe *FieldError
	if _, hasKP := h.Find("KP"); hasKP {
		if !errors.As(err, &fe) || fe.Field != "optional block KP" || !errors.Is(err, ErrFormat) {
			t.Errorf("Unwrap with another KBPK = %v, want optional block KP refused", err)
		}
	} else if !errors.Is(err, ErrAuth) {
		t.Errorf("Unwrap with another KBPK = %v, want ErrAuth", err)
	}
}

// flipHex changes a character into another of the same class (digit or
// letter), so that the change reaches authentication when it can.
func flipHex(c byte) byte {
	switch {
	case c == '9':
		return '8'
	case c >= '0' && c <= '8':
		return c + 1
	case c == 'F':
		return 'E'
	case c >= 'A' && c <= 'E':
		return c + 1
	}
	return c ^ 1
}
