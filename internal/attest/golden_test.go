package attest

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/enclave"
)

var update = flag.Bool("update", false, "rewrite testdata/ from the TPM simulator")

// golden is a recorded enrollment attestation from internal/enclave/tpm
// on the simulator: a test vector that needs no TPM to check.
type golden struct {
	Comment       string           `json:"comment"`
	IdentitySPKI  []byte           `json:"identity_spki"`
	Transport     api.PublicKey    `json:"transport"`
	AKFingerprint string           `json:"ak_fingerprint"`
	Attestation   *api.Attestation `json:"attestation"`
}

const goldenFile = "testdata/evidence.json"

func loadGolden(t testing.TB) *golden {
	t.Helper()
	b, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("%s: %v", goldenFile, err)
	}
	return &g
}

func (g *golden) expected() Expected {
	n := g.Attestation.Nonce
	return Expected{Nonce: n, QualifyingData: enclave.QualifyingData(n, g.IdentitySPKI, g.Transport)}
}

func TestGoldenEvidence(t *testing.T) {
	if *update {
		writeGolden(t)
	}
	g := loadGolden(t)
	if got := AKFingerprint(g.Attestation.AKPublic); got != g.AKFingerprint {
		t.Errorf("AKFingerprint() = %s, want %s", got, g.AKFingerprint)
	}
	v := &TPMVerifier{AllowedAKs: map[string]bool{g.AKFingerprint: true}, PCRPolicy: g.Attestation.PCRs}
	res, err := v.Verify(t.Context(), g.Attestation, g.expected())
	if err != nil {
		t.Fatalf("Verify(golden) = %v", err)
	}
	if res.AKFingerprint != g.AKFingerprint {
		t.Errorf("Result.AKFingerprint = %s, want %s", res.AKFingerprint, g.AKFingerprint)
	}
	// The same evidence for another enrollment (other CSR key) is refused.
	other := Expected{Nonce: g.Attestation.Nonce, QualifyingData: enclave.QualifyingData(g.Attestation.Nonce, []byte("other"), g.Transport)}
	if _, err := v.Verify(t.Context(), g.Attestation, other); err == nil {
		t.Error("Verify(golden, other CSR key) = nil error")
	}
}

// writeGolden records new evidence and the FuzzVerify seed corpus.
func writeGolden(t *testing.T) {
	f := newFixture(t)
	// Measure something into PCRs 0 and 7, so the vector's PCR values and
	// digest are not all zeros.
	for _, pcr := range []int{0, 7} {
		d := sha256.Sum256([]byte(fmt.Sprintf("golden measurement %d", pcr)))
		_, err := tpm2.PCRExtend{
			PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
			Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: d[:]}}},
		}.Execute(simulator(t))
		if err != nil {
			t.Fatalf("PCRExtend(%d) = %v", pcr, err)
		}
	}
	f.ev = f.attest(t, []byte("dcaas golden enrollment nonce"))
	g := golden{
		Comment:       "TPM2_Quote by internal/enclave/tpm on the simulator; regenerate with go test -run TestGoldenEvidence -update",
		IdentitySPKI:  f.spki,
		Transport:     f.tp,
		AKFingerprint: AKFingerprint(f.ev.AKPublic),
		Attestation:   f.ev,
	}
	b, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(goldenFile, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}

	ev := f.ev
	pcrs := encodePCRs(ev.PCRs)
	seeds := map[string][5][]byte{
		"valid":           {ev.Nonce, ev.AKPublic, ev.Quote, ev.Signature, pcrs},
		"empty":           {},
		"quote-truncated": {ev.Nonce, ev.AKPublic, ev.Quote[:len(ev.Quote)/2], ev.Signature, pcrs},
		"signature-short": {ev.Nonce, ev.AKPublic, ev.Quote, ev.Signature[:6], pcrs},
		"ak-truncated":    {ev.Nonce, ev.AKPublic[:20], ev.Quote, ev.Signature, pcrs},
		"pcrs-missing":    {ev.Nonce, ev.AKPublic, ev.Quote, ev.Signature, nil},
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzVerify")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, s := range seeds {
		var b bytes.Buffer
		b.WriteString("go test fuzz v1\n")
		for _, field := range s {
			fmt.Fprintf(&b, "[]byte(%q)\n", field)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
