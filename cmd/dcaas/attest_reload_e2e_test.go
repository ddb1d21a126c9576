package main_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/enclave/tpm"
	"github.com/dcaas/dcaas/internal/enclave/tpm/tpmsim"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// TestKMSServeReloadsAttestationPolicy runs `dcaas kms serve
// --attestation-policy FILE` and changes the file under it: the TPM
// manufacturers it trusts follow the file on SIGHUP and on a change alone,
// and a bad file keeps the policy in force and is logged. The effect is
// seen through the API: a challenge asked with an EK certificate (of the
// TPM simulator, issued by a test CA playing the manufacturer) gets a
// credential the TPM activates only while the manufacturer is trusted.
func TestKMSServeReloadsAttestationPolicy(t *testing.T) {
	t.Parallel()
	sim, err := tpmsim.Open()
	if err != nil {
		t.Fatalf("TPM simulator: %v (run scripts/deps.sh)", err)
	}
	defer sim.Close()
	enc, err := tpm.Open(t.Context(), sim, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	ak, err := enc.AKPublic(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ekPub, err := enc.EKPublic(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test TPM manufacturer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	ekDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2),
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageKeyAgreement,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{{2, 23, 133, 8, 1}}}, caCert, ekPub, caKey)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	policy := filepath.Join(dir, "attestation.json")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(policy, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "mfr.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	const none = `{"platforms": []}`
	const trusted = `{"platforms": [], "manufacturers": [{"name": "test-mfr", "roots_file": "mfr.pem", "custodian_dn": "CN=payments-api,O=acme"}]}`
	write(none)
	p := startKMS(t, filepath.Join(t.TempDir(), "kms"), "--attestation-policy", policy)
	anon := rawClient(t, p, nil, nil)
	ask := func() (*api.Challenge, error) {
		var ch api.Challenge
		err := anon.Do("POST", "/v1/enrollment/challenge", api.ChallengeRequest{EKCert: ekDER, AKPublic: ak}, &ch)
		return &ch, err
	}
	// eventually waits for the KMS to reach the wanted state (a reload
	// runs in the background).
	eventually := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !ok(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15 s; KMS stderr:\n%s", what, p.Stderr())
			}
		}
	}
	hup := func() {
		t.Helper()
		if err := syscall.Kill(p.Pid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	_, err = ask()
	kmstest.WantError(t, err, 400, api.CodeInvalidArgument)

	// SIGHUP: the manufacturer is trusted, and the credential is real.
	write(trusted)
	hup()
	var ch *api.Challenge
	eventually("the manufacturer trusted after SIGHUP", func() bool { ch, err = ask(); return err == nil })
	if secret, err := enc.ActivateCredential(t.Context(), ch.CredentialBlob, ch.EncryptedSecret); err != nil || len(secret) != 32 {
		t.Fatalf("the TPM did not activate the reloaded KMS's credential: %v", err)
	}

	// A bad file, signalled: logged, and the policy in force stays.
	write(`{"platforms": [`)
	hup()
	eventually("the bad file logged", func() bool {
		return strings.Contains(p.StderrAll(), "attestation policy not reloaded")
	})
	if _, err := ask(); err != nil {
		t.Fatalf("a bad policy file changed the policy in force: %v", err)
	}

	// A change alone, no signal: the file is polled.
	write(none)
	eventually("the manufacturer dropped after a file change", func() bool {
		_, err := ask()
		return api.CodeOf(err) == api.CodeInvalidArgument
	})
	if !strings.Contains(p.StderrAll(), "attestation policy reloaded") {
		t.Errorf("no reload logged; KMS stderr:\n%s", p.Stderr())
	}
}

// TestKMSServeSIGHUPWithoutPolicy: a reload (systemctl reload sends SIGHUP)
// of a KMS without --attestation-policy changes nothing and does not stop
// it (SIGHUP's default action would).
func TestKMSServeSIGHUPWithoutPolicy(t *testing.T) {
	p := startKMS(t, filepath.Join(t.TempDir(), "kms"))
	if err := syscall.Kill(p.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.StderrAll(), "nothing to reload"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) || !p.Running() {
			t.Fatalf("SIGHUP not handled (running: %t); stderr:\n%s", p.Running(), p.Stderr())
		}
	}
	var h api.Health
	if err := rawClient(t, p, nil, nil).Do("GET", "/healthz", nil, &h); err != nil || !p.Running() {
		t.Fatalf("after SIGHUP: %v (running: %t)", err, p.Running())
	}
}
