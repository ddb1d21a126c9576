package kms

import (
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/testvectors"
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
	testvectors.Check(t, testvectors.FormatsDoc(t, "../../docs/formats.md"), want)
}
