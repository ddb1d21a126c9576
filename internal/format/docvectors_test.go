package format

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
)

// docs/formats.md quotes, as hex, the exact bytes of the HPKE info and
// associated data of the wrapped-key formats and of the sealed key's header
// for one example each (blocks after "<!-- vector: NAME -->"), so that an
// independent implementation can check itself byte for byte.
// TestFormatsDocVectors keeps those quotes in step with the code.

const formatsDoc = "../../docs/formats.md"

// The example values the quoted vectors are made of (also named in the doc).
const (
	docInstance = "ins_5ordqjsbjwwz5viwjlxcqib7sm"
	docIssuedAt = 1764806400000            // 2025-12-04T00:00:00Z in Unix milliseconds
	docNotAfter = docIssuedAt + 10*60*1000 // ten minutes later
	docLease    = 1764892800000000000      // 2025-12-05T00:00:00Z in Unix nanoseconds
)

func docEnc() []byte { // an example 32-byte X25519 encapsulation: 00 01 … 1f
	b := make([]byte, 32)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func docMetadata(t *testing.T) []byte {
	t.Helper()
	md := api.KeyMetadata{KeyID: "key_a", Version: 1, Tenant: "acme", Type: api.KeyAES256GCM,
		Owner: "CN=payments-api,O=acme", CreatedAt: time.Date(2025, 12, 4, 0, 0, 0, 0, time.UTC)}
	b, err := MetadataAAD(&md)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFormatsDocVectors(t *testing.T) {
	md := docMetadata(t)
	batch := &WrappedBatch{KEMID: 0x0020, Enc: docEnc(), Recipient: docInstance,
		IssuedAt: docIssuedAt, NotAfter: docNotAfter,
		Keys: []BatchEntry{{Metadata: md, Encryptions: 7}}}
	header := batch.Header()
	v1 := &WrappedKey{KEMID: 0x0020, Enc: docEnc(), Index: 0}
	sealed := &SealedKey{Metadata: md, LeaseUntil: docLease}
	want := map[string][]byte{
		"transport-info-v2":    TransportInfoV2(docInstance),
		"batch-header-v2":      header,
		"batch-entry-aad-v2":   AppendEntryAAD(nil, header, 0, &batch.Keys[0]),
		"transport-info-v1":    TransportInfo(docInstance),
		"wrapped-key-aad-v1":   append(v1.Header(), md...),
		"sealed-key-header-v1": sealed.Header(),
	}
	checkDocVectors(t, mustReadDoc(t), want)
}

func mustReadDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(formatsDoc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkedElsewhere are the vectors of formats.md that other packages'
// tests check: internal/kms its HPKE info strings of import and export,
// internal/seal/file (TestFormatsDocRootKeyShares) the share-protected
// root.key and its unseal shares.
var checkedElsewhere = map[string]string{
	"import-info":     "internal/kms",
	"export-info":     "internal/kms",
	"root-key-shares": "internal/seal/file",
	"unseal-share-1":  "internal/seal/file",
	"unseal-share-2":  "internal/seal/file",
	"unseal-share-3":  "internal/seal/file",
}

var docVector = regexp.MustCompile("(?s)<!-- vector: ([a-z0-9-]+) -->\n```text\n(.*?)```")

// checkDocVectors compares every vector of want with its block in doc and
// fails on a missing, extra or different one, printing the block to paste.
func checkDocVectors(t *testing.T, doc string, want map[string][]byte) {
	t.Helper()
	got := map[string][]byte{}
	for _, m := range docVector.FindAllStringSubmatch(doc, -1) {
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
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("formats.md has no vector %q; add:\n<!-- vector: %s -->\n```text\n%s```", name, name, HexDump(w))
		case !bytes.Equal(g, w):
			t.Errorf("formats.md vector %q is not what the code makes; it is:\n```text\n%s```", name, HexDump(w))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok && checkedElsewhere[name] == "" {
			t.Errorf("formats.md has a vector %q that no test checks", name)
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
