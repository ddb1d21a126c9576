// Package testvectors reads the fixed test vectors that tests check the
// code against: hex strings, and the byte blocks docs/formats.md quotes
// for independent implementations. Each block follows a line
// "<!-- vector: NAME -->" as a ```text fence holding a hex dump, 16 bytes
// a line with their ASCII after a bar (see HexDump). internal/format
// checks most of them; internal/kms and internal/seal/file check the ones
// of their own formats.
package testvectors

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Hex decodes s, a hex test vector; t fails at once when s is no hex.
func Hex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var docVector = regexp.MustCompile("(?s)<!-- vector: ([a-z0-9-]+) -->\n```text\n(.*?)```")

// FormatsDoc reads the formats document at path (docs/formats.md,
// relative to the calling test's package) and returns the bytes of each
// vector it quotes, by name. A block that is no hex dump fails t and is
// left out.
func FormatsDoc(t testing.TB, path string) map[string][]byte {
	t.Helper()
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	for _, m := range docVector.FindAllStringSubmatch(string(doc), -1) {
		var h strings.Builder
		for _, line := range strings.Split(m[2], "\n") {
			line, _, _ = strings.Cut(line, "|") // the ASCII column
			h.WriteString(strings.Join(strings.Fields(line), ""))
		}
		b, err := hex.DecodeString(h.String())
		if err != nil {
			t.Errorf("formats.md vector %s: %v", m[1], err)
			continue
		}
		got[m[1]] = b
	}
	return got
}

// Check fails t for every vector of want that quoted (what FormatsDoc
// returned) lacks or quotes with other bytes, printing the block
// formats.md should hold.
func Check(t testing.TB, quoted, want map[string][]byte) {
	t.Helper()
	for name, w := range want {
		g, ok := quoted[name]
		switch {
		case !ok:
			t.Errorf("formats.md has no vector %q; add:\n<!-- vector: %s -->\n```text\n%s```", name, name, HexDump(w))
		case !bytes.Equal(g, w):
			t.Errorf("formats.md vector %q is not what the code makes; it is:\n```text\n%s```", name, HexDump(w))
		}
	}
}

// HexDump renders b as formats.md quotes bytes: 16 hex bytes a line, then
// their ASCII between bars (anything not printable, and "|", as ".").
func HexDump(b []byte) string {
	var s strings.Builder
	for off := 0; off < len(b); off += 16 {
		line := b[off:min(off+16, len(b))]
		var hx, asc strings.Builder
		for _, c := range line {
			fmt.Fprintf(&hx, "%02x ", c)
			if c >= 0x20 && c < 0x7f && c != '|' {
				asc.WriteByte(c)
			} else {
				asc.WriteByte('.')
			}
		}
		fmt.Fprintf(&s, "%-48s |%s|\n", hx.String(), asc.String())
	}
	return s.String()
}
