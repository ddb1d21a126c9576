package kms

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testRootPEM(t *testing.T) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestAttestationPolicyCompile: what an attestation policy file may say,
// and the sentence a bad one is refused with (a reload logs it and keeps
// the policy in force).
func TestAttestationPolicyCompile(t *testing.T) {
	root := testRootPEM(t)
	sha := strings.Repeat("ab", 32)
	const dn = "CN=payments-api,O=acme"
	tests := []struct {
		name    string
		p       AttestationPolicy
		wantErr string
	}{
		{"allow-list and pcrs", AttestationPolicy{Platforms: []Platform{{AKFingerprint: sha, CustodianDN: dn}}, PCRs: map[string]string{"0": sha}}, ""},
		{"profiles", AttestationPolicy{Profiles: map[string]map[string]string{"prod-pcrs": {"0": sha, "7": sha}}}, ""},
		{"manufacturer", AttestationPolicy{Manufacturers: []Manufacturer{{Name: "acme-tpm", RootsPEM: root, CustodianDN: dn}}}, ""},
		{"bad fingerprint", AttestationPolicy{Platforms: []Platform{{AKFingerprint: "ab", CustodianDN: dn}}}, "ak_fingerprint"},
		{"bad custodian", AttestationPolicy{Platforms: []Platform{{AKFingerprint: sha, CustodianDN: "not a dn"}}}, "custodian"},
		{"PCR 8", AttestationPolicy{PCRs: map[string]string{"8": sha}}, "PCR index"},
		{"profile PCR value", AttestationPolicy{Profiles: map[string]map[string]string{"p": {"0": "zz"}}}, "profile p: PCR 0"},
		{"profile name", AttestationPolicy{Profiles: map[string]map[string]string{"Prod PCRs": {"0": sha}}}, "profile name"},
		{"empty profile", AttestationPolicy{Profiles: map[string]map[string]string{"p": {}}}, "requires no PCR"},
		{"manufacturer without roots", AttestationPolicy{Manufacturers: []Manufacturer{{Name: "m", CustodianDN: dn}}}, "no PEM CERTIFICATE"},
		{"manufacturer with a bad root", AttestationPolicy{Manufacturers: []Manufacturer{{Name: "m", RootsPEM: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", CustodianDN: dn}}}, "does not parse"},
		{"manufacturer twice", AttestationPolicy{Manufacturers: []Manufacturer{{Name: "m", RootsPEM: root, CustodianDN: dn}, {Name: "m", RootsPEM: root, CustodianDN: dn}}}, "named twice"},
		{"manufacturer name", AttestationPolicy{Manufacturers: []Manufacturer{{Name: "", RootsPEM: root, CustodianDN: dn}}}, "manufacturer name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := newAttestor(&tt.p)
			if tt.wantErr == "" {
				if err != nil || a == nil {
					t.Fatalf("newAttestor = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("newAttestor = %v, want an error naming %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoadAttestationPolicyRootsFile(t *testing.T) {
	dir := t.TempDir()
	root := testRootPEM(t)
	if err := os.WriteFile(filepath.Join(dir, "mfr.pem"), []byte(root), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(s string) string {
		p := filepath.Join(dir, "policy.json")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p, err := LoadAttestationPolicy(write(`{"platforms": [], "manufacturers": [{"name": "m", "roots_file": "mfr.pem", "custodian_dn": "CN=a"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Manufacturers[0].RootsPEM != root || p.Manufacturers[0].RootsFile != "" {
		t.Fatalf("roots_file not read relative to the policy file: %+v", p.Manufacturers[0])
	}
	if _, err := newAttestor(p); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{
		"misspelt field": `{"platforms": [], "profile": {}}`,
		"missing roots":  `{"manufacturers": [{"name": "m", "roots_file": "absent.pem", "custodian_dn": "CN=a"}]}`,
		"both roots":     `{"manufacturers": [{"name": "m", "roots_file": "mfr.pem", "roots_pem": "x", "custodian_dn": "CN=a"}]}`,
		"truncated JSON": `{"platforms": [`,
	} {
		if _, err := LoadAttestationPolicy(write(s)); err == nil {
			t.Errorf("%s: LoadAttestationPolicy accepted it", name)
		}
	}
}
