package e2e_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/tr31"
)

// TestTR31WithTheBinary exchanges TR-31 key blocks with a KMS process
// through the SDK: the KBPK comes in by BYOK, a block a dcaas KMS exported
// and moov-io/tr31 opened (internal/tr31/testdata/dcaas_vectors.json)
// imports to the key moov-io/tr31 found, checked by exporting it again
// with RSA-AES key wrap; a new key leaves as a block that opens under the
// KBPK to the same material as its RSA-AES export; a changed block is
// refused.
func TestTR31WithTheBinary(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	k := e2e.StartKMS(t, e2e.KMSConfig{})
	tn := e2e.NewTenant(t, k.Endpoint(t), "acme")
	cust := tn.Custodian

	rsaKey, err := kcrypto.GenerateImportRSAKey()
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, _ := kcrypto.RSAPublicKeyPEM(&rsaKey.PublicKey)
	rsaExport := func(ekb []byte) *secret.Bytes {
		t.Helper()
		w, err := cust.ExportKey(ctx, api.ExportRequest{EKB: ekb, Wrapping: api.WrappingRSAAES, PublicKeyPEM: rsaPub})
		if err != nil {
			t.Fatalf("ExportKey = %v", err)
		}
		m, err := kcrypto.UnwrapRSAAES(rsaKey, w)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	kbpkClear := bytes.Repeat([]byte{0x41}, 32)
	p, err := cust.ImportParameters(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kcrypto.ParseRSAPublicKeyPEM(p.RSAPublicKeyPEM)
	wrapped, _ := kcrypto.WrapRSAAES(pub, kbpkClear)
	kbpk, err := cust.ImportKey(ctx, api.ImportKeyRequest{ImportToken: p.ImportToken, Wrapping: api.WrappingRSAAES, WrappedMaterial: wrapped, Type: api.KeyAES256KBPK})
	if err != nil {
		t.Fatalf("BYOK import of the KBPK = %v", err)
	}

	// moov-io/tr31 opened this block (a dcaas export, D0AB…E) to this key.
	const block = "D0144D0AB01E0000E35D47F33225CA315445FA482ACDF12751F1F8610A403FC4F4A5F189D6BC21592F758A3F8618F3AD1B0922FF6A3E83903BFB6E996F7A9A3A1B6B21DDE5B58491"
	moovKey, _ := hex.DecodeString("F7214565D8385E96BDFEF879B341C9FBB50F107E298EC334E2EF0CF7DEA8FC69")
	in, err := cust.ImportKey(ctx, api.ImportKeyRequest{Wrapping: api.WrappingTR31, KeyBlock: block, KBPKID: kbpk.KeyID, Exportable: true})
	if err != nil {
		t.Fatalf("ImportKey(tr31) = %v", err)
	}
	if got := rsaExport(in.EKB); !bytes.Equal(got.Expose(), moovKey) {
		t.Fatal("the imported block is not the key moov-io/tr31 found in it")
	}

	fresh := tn.DataKeys(t, 1, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Exportable: true})[0]
	kb, err := cust.ExportKeyBlock(ctx, api.ExportRequest{EKB: fresh.EKB, KBPKID: kbpk.KeyID})
	if err != nil {
		t.Fatalf("ExportKeyBlock = %v", err)
	}
	h, key, err := tr31.Unwrap(secret.New(kbpkClear), []byte(kb))
	if err != nil {
		t.Fatalf("the exported block does not open under the KBPK: %v", err)
	}
	if h.KeyUsage != "D0" || h.Algorithm != 'A' || h.ModeOfUse != 'B' || h.Exportability != 'E' {
		t.Fatalf("exported header = %s", kb[:16])
	}
	if !key.Equal(rsaExport(fresh.EKB)) {
		t.Fatal("the exported block does not hold the key")
	}

	bad := []byte(kb)
	if bad[len(bad)-1] == '0' { // another hex digit at the MAC's end
		bad[len(bad)-1] = '1'
	} else {
		bad[len(bad)-1] = '0'
	}
	_, err = cust.ImportKey(ctx, api.ImportKeyRequest{Wrapping: api.WrappingTR31, KeyBlock: string(bad), KBPKID: kbpk.KeyID})
	if !errors.Is(err, &api.Error{Code: api.CodeDecryptFailed}) {
		t.Fatalf("ImportKey(changed block) = %v, want decryption_failed", err)
	}
	_, err = cust.ImportKey(ctx, api.ImportKeyRequest{Wrapping: api.WrappingTR31, KeyBlock: "B" + kb[1:], KBPKID: kbpk.KeyID})
	if !errors.Is(err, &api.Error{Code: api.CodeUnsupportedKeyBlock}) {
		t.Fatalf("ImportKey(version B) = %v, want unsupported_key_block", err)
	}
}
