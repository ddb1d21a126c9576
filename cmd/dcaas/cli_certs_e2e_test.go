package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/kms"
)

// copyFile copies src to dst with mode.
func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// certOf parses the one certificate in a PEM file.
func certOf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s holds no PEM block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func countPEMCerts(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "-----BEGIN CERTIFICATE-----")
}

// wantMode checks a file's permission bits, read back from the disk.
func wantMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), want)
	}
}

// sdkClient is a KMS client with the files of a CLI identity.
func sdkClient(t *testing.T, url, caFile, certFile, keyFile string) *client.KMS {
	t.Helper()
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	k, err := client.NewKMS([]string{url}, read(caFile), read(certFile), read(keyFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func TestCLICertificates(t *testing.T) {
	const checkInterval = 50 * time.Millisecond
	k := startCLIKMS(t, func(o *kms.Options) { o.Config.CertCheckInterval = checkInterval })
	env := k.env
	// The admin's credentials, copied out of the data dir as an operator
	// would; ca.pem stays the data dir's, which the KMS keeps current.
	adminDir := t.TempDir()
	adminCert, adminKey := filepath.Join(adminDir, "cert.pem"), filepath.Join(adminDir, "key.pem")
	copyFile(t, filepath.Join(env.DataDir, kms.AdminCert), adminCert, 0o644)
	copyFile(t, filepath.Join(env.DataDir, kms.AdminKey), adminKey, 0o600)
	caFile := k.ca
	admin := k.conn(caFile, adminCert, adminKey)

	cliMust(t, nil, nil, with(admin, "tenant", "create", "acme")...)
	creds := t.TempDir()
	var app appOutput
	cliMust(t, &app, nil, with(admin, "app", "create", "payments-api", "--tenant", "acme", "--out-dir", creds, "--json")...)
	cust := k.conn(app.CAFile, app.CertFile, app.KeyFile)
	// Keep the first certificate, to show it keeps working until revoked.
	firstCert, firstKey := filepath.Join(t.TempDir(), "first-cert.pem"), filepath.Join(t.TempDir(), "first-key.pem")
	copyFile(t, app.CertFile, firstCert, 0o644)
	copyFile(t, app.KeyFile, firstKey, 0o600)
	first := certOf(t, firstCert)

	// Renew in place: new files, the key 0600, nothing else left behind.
	var renewed certRenewOutput
	cliMust(t, &renewed, nil, with(cust, "app", "cert", "renew", "--json")...)
	second := certOf(t, app.CertFile)
	if renewed.Serial != second.SerialNumber.Text(16) || second.Equal(first) || renewed.CertFile != app.CertFile || renewed.KeyFile != app.KeyFile {
		t.Fatalf("renew = %+v; the file holds serial %s (first %s)", renewed, second.SerialNumber.Text(16), first.SerialNumber.Text(16))
	}
	wantMode(t, app.KeyFile, 0o600)
	wantMode(t, app.CertFile, 0o644)
	if _, err := tls.LoadX509KeyPair(app.CertFile, app.KeyFile); err != nil {
		t.Fatalf("the renewed files are not a key pair: %v", err)
	}
	if entries, _ := os.ReadDir(creds); len(entries) != 3 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("credential dir holds %v, want the certificate, the key and ca.pem only", names)
	}
	if _, err := sdkClient(t, env.URL, app.CAFile, firstCert, firstKey).ListInstances(t.Context()); err != nil {
		t.Errorf("the first certificate after a renewal: %v", err)
	}

	// Renew again, revoking the old one: refused at its next call.
	secondCert, secondKey := filepath.Join(t.TempDir(), "second-cert.pem"), filepath.Join(t.TempDir(), "second-key.pem")
	copyFile(t, app.CertFile, secondCert, 0o644)
	copyFile(t, app.KeyFile, secondKey, 0o600)
	out := cliMust(t, nil, nil, with(cust, "app", "cert", "renew", "--revoke-old")...)
	if !strings.Contains(string(out), "old certificate "+second.SerialNumber.Text(16)+" revoked") || strings.Contains(string(out), "PRIVATE KEY") {
		t.Errorf("renew --revoke-old printed %q", out)
	}
	if _, err := sdkClient(t, env.URL, app.CAFile, secondCert, secondKey).ListInstances(t.Context()); !errors.Is(err, client.ErrRevoked) {
		t.Errorf("the certificate revoked by renew --revoke-old: %v, want ErrRevoked", err)
	}
	wantMode(t, app.KeyFile, 0o600)

	// List, then revoke the first one by serial as the admin.
	var list api.AppCertificates
	cliMust(t, &list, nil, with(cust, "app", "cert", "list", "--json")...)
	if len(list.Certificates) != 3 {
		t.Fatalf("list = %+v, want 3 certificates", list.Certificates)
	}
	var rev api.RevokedCertificates
	cliMust(t, &rev, nil, with(admin, "app", "cert", "revoke", "--tenant", "acme", "--app", "payments-api", "--serial", strings.ToUpper(first.SerialNumber.Text(16)), "--json")...)
	if !slices.Equal(rev.Revoked, []string{first.SerialNumber.Text(16)}) {
		t.Errorf("revoke --serial = %v", rev.Revoked)
	}
	if _, err := sdkClient(t, env.URL, app.CAFile, firstCert, firstKey).ListInstances(t.Context()); !errors.Is(err, client.ErrRevoked) {
		t.Errorf("the first certificate after revoke: %v, want ErrRevoked", err)
	}

	// The admin issues a certificate into a new directory.
	issued := t.TempDir()
	var iss appOutput
	cliMust(t, &iss, nil, with(admin, "app", "cert", "issue", "payments-api", "--tenant", "acme", "--out-dir", issued, "--json")...)
	wantMode(t, iss.KeyFile, 0o600)
	if _, err := sdkClient(t, env.URL, iss.CAFile, iss.CertFile, iss.KeyFile).ListInstances(t.Context()); err != nil {
		t.Errorf("the admin-issued certificate: %v", err)
	}

	// Refusals of the tools themselves.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{with(cust, "app", "cert", "revoke"), "exactly one of --serial and --all"},
		{with(cust, "app", "cert", "revoke", "--all", "--serial", "ab"), "exactly one of --serial and --all"},
		{with(cust, "app", "cert", "renew", "--csr", app.CertFile), "--out-cert"},
		{with(cust, "app", "cert", "renew", "--csr", app.CertFile, "--out-cert", "x.pem", "--revoke-old"), "--revoke-old"},
		{[]string{"app", "cert", "renew", "--kms", env.URL, "--cert", app.CertFile, "--key", app.KeyFile, "--update-ca"}, "--update-ca needs --ca"},
		{with(cust, "app", "cert", "list", "--tenant", "acme"), "both the tenant and the app"},
		{with(admin, "app", "cert", "issue", "payments-api"), "--tenant"},
	} {
		if _, _, err := cliRun(t, nil, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dcaas %s = %v, want an error about %s", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	if _, _, err := cliRun(t, nil, with(cust, "app", "cert", "revoke", "--serial", "abcdef")...); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("revoke of an unknown serial = %v, want ErrNotFound", err)
	}

	// CA rotation with the CLI.
	var tr api.CATrust
	cliMust(t, &tr, nil, "kms", "ca", "show", "--kms", env.URL, "--ca", caFile, "--json")
	if tr.Phase != api.CAPhaseStable || len(tr.CAs) != 1 {
		t.Fatalf("kms ca show = %+v", tr)
	}
	bundle := filepath.Join(t.TempDir(), "bundle.pem")
	cliMust(t, &tr, nil, with(admin, "kms", "ca", "prepare", "--bundle-out", bundle, "--json")...)
	if tr.Phase != api.CAPhasePrepared || countPEMCerts(t, bundle) != 2 {
		t.Fatalf("kms ca prepare = phase %s, bundle of %d", tr.Phase, countPEMCerts(t, bundle))
	}
	// The custodian takes the bundle with its next renewal.
	cliMust(t, nil, nil, with(cust, "app", "cert", "renew", "--update-ca")...)
	if n := countPEMCerts(t, app.CAFile); n != 2 {
		t.Fatalf("renew --update-ca wrote %d CA certificates, want the bundle of 2", n)
	}
	wantMode(t, app.CAFile, 0o644)
	// The data dir's ca.pem is the bundle too, so the admin's --ca works on.
	if n := countPEMCerts(t, caFile); n != 2 {
		t.Fatalf("the data dir's ca.pem holds %d certificates, want 2", n)
	}
	cliMust(t, &tr, nil, with(admin, "kms", "ca", "activate", "--json")...)
	if tr.Phase != api.CAPhaseActivated {
		t.Fatalf("kms ca activate = phase %s", tr.Phase)
	}
	oldCust := filepath.Join(t.TempDir(), "old-cert.pem")
	oldKey := filepath.Join(t.TempDir(), "old-key.pem")
	copyFile(t, app.CertFile, oldCust, 0o644)
	copyFile(t, app.KeyFile, oldKey, 0o600)
	cliMust(t, nil, nil, with(cust, "app", "cert", "renew")...)
	cliMust(t, nil, nil, with(admin, "app", "cert", "renew")...)
	time.Sleep(3 * checkInterval) // the retire delay after activate: two check intervals
	cliMust(t, &tr, nil, with(admin, "kms", "ca", "retire", "--json")...)
	if tr.Phase != api.CAPhaseStable || len(tr.CAs) != 1 || tr.CAs[0].Serial != tr.IssuingSerial {
		t.Fatalf("kms ca retire = %+v", tr)
	}
	// What only the old CA issued is refused; the renewed custodian works
	// with the new CA alone.
	newOnly := filepath.Join(t.TempDir(), "new-ca.pem")
	cliMust(t, nil, nil, "kms", "ca", "show", "--kms", env.URL, "--ca", caFile, "--bundle-out", newOnly)
	if _, err := sdkClient(t, env.URL, newOnly, oldCust, oldKey).ListInstances(t.Context()); !errors.Is(err, client.ErrUnauthenticated) {
		t.Errorf("a certificate of the retired CA: %v, want ErrUnauthenticated", err)
	}
	if _, err := sdkClient(t, env.URL, newOnly, app.CertFile, app.KeyFile).ListInstances(t.Context()); err != nil {
		t.Errorf("the certificate renewed after activate, trusting only the new CA: %v", err)
	}
}
