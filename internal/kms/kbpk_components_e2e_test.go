package kms_test

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/secret"
)

// TestKBPKByComponents is the partner ceremony of issue 16 end to end: a
// key-block protection key shared with a partner is entered as two
// components by two admins, each checked by its KCV, the whole checked
// against the KBPK's KCV computed by OpenSSL; then the partner's published
// TR-31 block (Thales payShield 10k, internal/tr31/testdata) imports under
// it to the published key.
func TestKBPKByComponents(t *testing.T) {
	w := newWorld(t, kcrypto.DefaultKEM())
	alice, _ := w.env.NewAdmin(t, "alice")
	bob, _ := w.env.NewAdmin(t, "bob")

	kbpk, _ := hex.DecodeString(payShieldKBPK)
	first := kcrypto.Random(len(kbpk))
	second := make([]byte, len(kbpk))
	for i := range kbpk {
		second[i] = kbpk[i] ^ first[i]
	}
	kcvOfPart := func(p []byte) string {
		kcv, err := kcrypto.KCVCMAC(secret.Copy(p))
		if err != nil {
			t.Fatal(err)
		}
		return kcv
	}
	expected := opensslKCV(t, api.KeyAES256KBPK, kbpk)

	var cr api.ComponentCeremony
	w.env.Admin.MustDo(t, "POST", "/v1/key-components", api.StartComponentsRequest{
		Tenant: "acme", Owner: "payments-api", Components: 2, ExpectedKCV: expected, CreateDataKeyRequest: api.CreateDataKeyRequest{Type: api.KeyAES256KBPK, Purpose: "KBPK shared with acquirer X"},
	}, &cr)
	if _, err := addComponent(alice, cr.ID, first, kcvOfPart(first)); err != nil {
		t.Fatal(err)
	}
	done, err := addComponent(bob, cr.ID, second, kcvOfPart(second))
	if err != nil {
		t.Fatal(err)
	}
	if done.State != api.CeremonyComplete || done.KCV != expected {
		t.Fatalf("ceremony = %+v, want complete with KCV %s", done, expected)
	}
	var status api.ComponentCeremony
	w.cust.MustDo(t, "GET", "/v1/key-components/"+cr.ID, nil, &status)
	if status.DataKey == nil || status.DataKey.Metadata.Type != api.KeyAES256KBPK || status.DataKey.KCV != expected {
		t.Fatalf("the KBPK the owner reads: %+v", status.DataKey)
	}

	// The partner's published block opens under it, to the published key,
	// whose KCV the new key reports.
	dk, err := importTR31(w.cust, api.ImportKeyRequest{KeyBlock: payShieldBlock, KBPKID: status.DataKey.KeyID})
	if err != nil {
		t.Fatalf("import of the published block under the KBPK entered by components: %v", err)
	}
	want, _ := hex.DecodeString(payShieldKey)
	got := w.materialOf(t, dk.EKB)
	defer got.Wipe()
	if !bytes.Equal(got.Expose(), want) {
		t.Fatal("the imported key is not the published one")
	}
	if wantKCV := opensslKCV(t, api.KeyAES256GCM, want); !strings.EqualFold(dk.KCV, wantKCV) {
		t.Errorf("imported key's kcv %q, OpenSSL's %q", dk.KCV, wantKCV)
	}
}
