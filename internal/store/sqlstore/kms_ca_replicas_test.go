package sqlstore_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/store/pgtest"
)

// replicaPair starts two KMS replicas on one PostgreSQL database, sharing
// the root key, each re-reading the CA state every interval.
func replicaPair(t *testing.T, interval time.Duration) (a, b *kmstest.Env) {
	t.Helper()
	return replicaPairOn(t, pgtest.DSN(t), interval)
}

// replicaPairOn is replicaPair on the database of dsn.
func replicaPairOn(t *testing.T, dsn string, interval time.Duration) (a, b *kmstest.Env) {
	t.Helper()
	return replicaPairWith(t, dsn, func(_ int, o *kms.Options) { o.Config.CertCheckInterval = interval })
}

// replicaPairWith starts two KMS replicas, A and B, each with its own store
// on the database of dsn (a.Opts.Store and b.Opts.Store, closed after both
// KMSs stop), B's data dir holding A's root key. configure, when not nil,
// sets more of each replica's options (replica 0 is A, 1 is B).
func replicaPairWith(t *testing.T, dsn string, configure func(replica int, o *kms.Options)) (a, b *kmstest.Env) {
	t.Helper()
	stA, stB := openPostgres(t, dsn), openPostgres(t, dsn)
	t.Cleanup(func() { stA.Close(); stB.Close() })
	if configure == nil {
		configure = func(int, *kms.Options) {}
	}
	a = kmstest.Start(t, func(o *kms.Options) { o.Store = stA; configure(0, o) })
	dirB := replicaDir(t, a.DataDir)
	b = kmstest.Start(t, func(o *kms.Options) { o.DataDir, o.Store = dirB, stB; configure(1, o) })
	return a, b
}

// replicaDir makes a data dir for a second replica of the KMS whose data
// dir is dirA, holding a copy of its root.key: the file seal keeps the
// root key in the data dir. (An HSM seal shares it properly.)
func replicaDir(t *testing.T, dirA string) string {
	t.Helper()
	dirB := filepath.Join(t.TempDir(), "kms-b")
	if err := os.MkdirAll(dirB, 0o700); err != nil {
		t.Fatal(err)
	}
	rootKey, err := os.ReadFile(filepath.Join(dirA, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, "root.key"), rootKey, 0o600); err != nil {
		t.Fatal(err)
	}
	return dirB
}

// trusting is a client of e that trusts bundle and authenticates with the
// given credentials (empty: none).
func trusting(t *testing.T, e *kmstest.Env, bundle, certPEM, keyPEM string) *kmstest.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(bundle)) {
		t.Fatal("empty bundle")
	}
	return e.ClientTrusting(pool, []byte(certPEM), []byte(keyPEM))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15 s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestKMSReplicasFollowCARotation: each rotation step taken on one replica
// reaches the other within its check interval (trust bundle, ca.pem, the
// CA that issues, its own TLS certificate), and a certificate revoked on
// one replica is refused by the other at once.
func TestKMSReplicasFollowCARotation(t *testing.T) {
	const interval = 100 * time.Millisecond
	a, b := replicaPair(t, interval)
	phaseOf := func(e *kmstest.Env, bundle string) api.CATrust {
		var tr api.CATrust
		trusting(t, e, bundle, "", "").MustDo(t, "GET", "/v1/ca", nil, &tr)
		return tr
	}
	a.Tenant(t, "acme")
	_, creds := a.App(t, "acme", "payments-api", api.RoleCustodian)

	// Revocation on A is refused on B at the very next request.
	renewedOnB := api.AppCredentials{}
	trusting(t, b, string(b.CAPEM), creds.CertPEM, creds.KeyPEM).MustDo(t, "POST", "/v1/apps/self/certificate", nil, &renewedOnB)
	onB := trusting(t, b, string(b.CAPEM), renewedOnB.CertPEM, renewedOnB.KeyPEM)
	onB.MustDo(t, "GET", "/v1/instances", nil, nil)
	a.Admin.MustDo(t, "POST", "/v1/tenants/acme/apps/payments-api/certificates/revoke", api.RevokeCertificatesRequest{Serial: renewedOnB.Serial}, nil)
	kmstest.WantError(t, onB.Do("GET", "/v1/instances", nil, nil), http.StatusForbidden, api.CodeRevoked)

	// Prepare on A: B trusts the new CA too, and rewrites its ca.pem.
	var prepared api.CATrust
	a.Admin.MustDo(t, "POST", "/v1/ca/prepare", nil, &prepared)
	waitFor(t, "replica B trusts the prepared CA", func() bool {
		tr := phaseOf(b, string(b.CAPEM))
		pem, _ := os.ReadFile(filepath.Join(b.DataDir, kms.CAFile))
		return tr.Phase == api.CAPhasePrepared && tr.BundlePEM == prepared.BundlePEM && string(pem) == prepared.BundlePEM
	})
	bundle := prepared.BundlePEM

	// Activate on B: A issues from the new CA and both re-issue their TLS
	// certificates from it.
	adminA := trusting(t, a, bundle, string(mustRead(t, a.DataDir, kms.AdminCert)), string(mustRead(t, a.DataDir, kms.AdminKey)))
	adminB := trusting(t, b, bundle, string(mustRead(t, b.DataDir, kms.AdminCert)), string(mustRead(t, b.DataDir, kms.AdminKey)))
	var activated api.CATrust
	adminB.MustDo(t, "POST", "/v1/ca/activate", nil, &activated)
	newCA := x509.NewCertPool()
	newCA.AppendCertsFromPEM([]byte(activated.CAs[0].CertPEM))
	for name, e := range map[string]*kmstest.Env{"A": a, "B": b} {
		waitFor(t, "replica "+name+" presents a TLS certificate of the new CA", func() bool {
			conn, err := tls.Dial("tcp", e.Addr, &tls.Config{RootCAs: newCA, ServerName: "127.0.0.1"})
			if err == nil {
				conn.Close()
			}
			return err == nil
		})
	}
	var renewed api.AppCredentials
	trusting(t, a, bundle, creds.CertPEM, creds.KeyPEM).MustDo(t, "POST", "/v1/apps/self/certificate", nil, &renewed)
	leaf, _ := x509.ParseCertificate(pemBlock(t, renewed.CertPEM))
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: newCA, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("replica A issues from the old CA after activate on B: %v", err)
	}

	// Retire on A (with an admin certificate of the new CA): B refuses the
	// old CA's certificates once it has caught up.
	var adminCreds api.AppCredentials
	adminA.MustDo(t, "POST", "/v1/apps/self/certificate", nil, &adminCreds)
	newAdminA := trusting(t, a, bundle, adminCreds.CertPEM, adminCreds.KeyPEM)
	waitFor(t, "retire is accepted on A", func() bool {
		err := newAdminA.Do("POST", "/v1/ca/retire", nil, nil)
		if err != nil {
			kmstest.WantError(t, err, http.StatusConflict, api.CodeConflict) // the retire delay
		}
		return err == nil
	})
	oldOnB := trusting(t, b, activated.CAs[0].CertPEM, creds.CertPEM, creds.KeyPEM)
	waitFor(t, "replica B refuses the retired CA's certificates", func() bool {
		return phaseOf(b, activated.CAs[0].CertPEM).Phase == api.CAPhaseStable
	})
	kmstest.WantError(t, oldOnB.Do("GET", "/v1/instances", nil, nil), http.StatusUnauthorized, api.CodeUnauthenticated)
	if err := trusting(t, b, activated.CAs[0].CertPEM, renewed.CertPEM, renewed.KeyPEM).Do("GET", "/v1/instances", nil, nil); err != nil {
		t.Errorf("a certificate of the new CA on replica B after retire: %v", err)
	}
}

func mustRead(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pemBlock(t *testing.T, s string) []byte {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatal("no PEM block")
	}
	return b.Bytes
}
