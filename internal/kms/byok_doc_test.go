package kms

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
)

// TestImportExportInfoInFormatsDoc checks that docs/formats.md quotes the
// exact HPKE info bytes of import and export (the blocks after
// "<!-- vector: import-info -->" and "<!-- vector: export-info -->"), for
// tenant acme and version 1 of key_a, so that an outside implementation can
// wrap material to the KMS and open what it exports.
func TestImportExportInfoInFormatsDoc(t *testing.T) {
	want := map[string][]byte{
		"import-info": importInfo("acme"),
		"export-info": exportInfo(&api.KeyMetadata{Tenant: "acme", KeyID: "key_a", Version: 1}),
	}
	src, err := os.ReadFile("../../docs/formats.md")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)<!-- vector: ([a-z0-9-]+) -->\n```text\n(.*?)```")
	got := map[string][]byte{}
	for _, m := range block.FindAllStringSubmatch(string(src), -1) {
		var h strings.Builder
		for _, line := range strings.Split(m[2], "\n") {
			line, _, _ = strings.Cut(line, "|") // the ASCII column
			h.WriteString(strings.Join(strings.Fields(line), ""))
		}
		if got[m[1]], err = hex.DecodeString(h.String()); err != nil {
			t.Errorf("formats.md vector %s: %v", m[1], err)
		}
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || !bytes.Equal(g, w) {
			var d strings.Builder
			for off := 0; off < len(w); off += 16 {
				line := w[off:min(off+16, len(w))]
				asc := []byte(string(line))
				for i, c := range asc {
					if c < 0x20 || c >= 0x7f || c == '|' {
						asc[i] = '.'
					}
				}
				fmt.Fprintf(&d, "%-48s |%s|\n", strings.TrimSpace(fmt.Sprintf("% x", line))+" ", asc)
			}
			t.Errorf("formats.md vector %q is missing or not what the KMS uses; it is:\n```text\n%s```", name, d.String())
		}
	}
}
