package format

import (
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/testvectors"
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
	quoted := testvectors.FormatsDoc(t, formatsDoc)
	testvectors.Check(t, quoted, want)
	for name := range quoted {
		if _, ok := want[name]; !ok && checkedElsewhere[name] == "" {
			t.Errorf("formats.md has a vector %q that no test checks", name)
		}
	}
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
