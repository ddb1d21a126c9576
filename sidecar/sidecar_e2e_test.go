package sidecar_test

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dcaas/dcaas/client"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/devenv"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/sidecar"
)

// fixture is a KMS with tenant acme, custodian payments-api and pipeline
// deployer, plus a sidecar enrolled for payments-api and serving on a Unix
// socket.
type fixture struct {
	env     *kmstest.Env
	cust    *kmstest.Client
	creds   api.AppCredentials
	pipe    *kmstest.Client
	sc      *sidecar.Sidecar
	socket  string
	local   *client.Sidecar // over the socket
	logs    *e2e.LogBuffer
	dataDir string
}

func token(t testing.TB, f *fixture) string {
	t.Helper()
	return f.pipe.EnrollmentToken(t, f.creds.DN)
}

// newFixture starts the KMS (kmsOpts adjust its options, e.g. a settable
// clock) and a sidecar (mutate adjusts its Config).
func newFixture(t testing.TB, mutate func(*sidecar.Config), kmsOpts ...func(*kms.Options)) *fixture {
	t.Helper()
	logs := &e2e.LogBuffer{}
	env := kmstest.Start(t, func(o *kms.Options) {
		o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		for _, m := range kmsOpts {
			m(o)
		}
	})
	env.Tenant(t, "acme")
	f := &fixture{env: env, logs: logs}
	f.cust, f.creds = env.App(t, "acme", "payments-api", api.RoleCustodian)
	f.pipe, _ = env.App(t, "acme", "deployer", api.RolePipeline)
	f.dataDir = t.TempDir()
	cfg := e2e.InProcessConfig(t, env, token(t, f))
	cfg.DataDir = f.dataDir
	cfg.Logger = slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if mutate != nil {
		mutate(&cfg)
	}
	f.sc, f.socket = e2e.ServeSidecar(t, cfg, "")
	f.local = devenv.UnixClient(f.socket)
	return f
}

func (f *fixture) do(t testing.TB, method, path string, in, out any) {
	t.Helper()
	if err := f.local.Do(t.Context(), method, path, in, out); err != nil {
		t.Fatalf("sidecar %s %s: %v", method, path, err)
	}
}

// load creates data keys at the KMS and loads them by the primary flow:
// wrapping certificate from the sidecar → KMS rewrap → sidecar import.
func (f *fixture) load(t testing.TB, reqs ...api.CreateDataKeyRequest) []api.DataKey {
	t.Helper()
	var cert api.WrappingCertificate
	f.do(t, "GET", "/v1/wrapping-certificate", nil, &cert)
	var dks []api.DataKey
	var ekbs [][]byte
	for _, r := range reqs {
		var dk api.DataKey
		f.cust.MustDo(t, "POST", "/v1/datakeys", r, &dk)
		dks = append(dks, dk)
		ekbs = append(ekbs, dk.EKB)
	}
	var wrapped api.WrappedKeys
	f.cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: ekbs, WrappingCertPEM: cert.CertPEM}, &wrapped)
	var loaded api.Loaded
	f.do(t, "POST", "/v1/keys/import", &wrapped, &loaded)
	if len(loaded.Loaded) != len(reqs) {
		t.Fatalf("loaded %v, want %d keys", loaded.Loaded, len(reqs))
	}
	return dks
}

func TestSidecarEndToEnd(t *testing.T) {
	f := newFixture(t, nil)
	var st api.Status
	f.do(t, "GET", "/v1/status", nil, &st)
	if st.InstanceID == "" || st.CustodianDN != f.creds.DN || st.Enclave != api.EnclaveSoftware || !st.KMSReachable || st.KeysLoaded != 0 {
		t.Fatalf("status = %+v", st)
	}
	dks := f.load(t,
		api.CreateDataKeyRequest{Type: api.KeyAES256GCM},
		api.CreateDataKeyRequest{Type: api.KeyEd25519},
		api.CreateDataKeyRequest{Type: api.KeyECDSAP256},
		api.CreateDataKeyRequest{Type: api.KeyHMACSHA256},
	)
	aes, ed, ec, hm := dks[0].KeyID, dks[1].KeyID, dks[2].KeyID, dks[3].KeyID

	var keys api.LoadedKeys
	f.do(t, "GET", "/v1/keys", nil, &keys)
	if len(keys.Keys) != 4 || keys.Keys[0].LeaseExpiresAt == nil {
		t.Fatalf("keys = %+v", keys)
	}
	for _, k := range keys.Keys {
		if k.Type.Signing() && k.PublicKeyPEM == "" {
			t.Fatalf("signing key %s lists no public key", k.KeyID)
		}
	}

	checkOps(t, f.local, aes, ed, ec, hm)

	// The KMS goes away: every operation on loaded keys still works.
	f.env.Stop()
	checkOps(t, f.local, aes, ed, ec, hm)
	// The status reports what the background poll (every 50 ms here) saw.
	eventually(t, "reporting the KMS down", func() error {
		f.do(t, "GET", "/v1/status", nil, &st)
		if st.KMSReachable || st.KeysLoaded != 4 {
			return fmt.Errorf("status with the KMS down = %+v", st)
		}
		return nil
	})
	f.env.Restart()
	eventually(t, "reporting the KMS back", func() error {
		f.do(t, "GET", "/v1/status", nil, &st)
		if !st.KMSReachable {
			return fmt.Errorf("status after the KMS came back = %+v", st)
		}
		return nil
	})

	// Eviction.
	var ev api.Evicted
	f.do(t, "DELETE", "/v1/keys/"+aes, nil, &ev)
	err := f.local.Do(t.Context(), "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{KeyID: aes}, Plaintext: []byte("x")}, nil)
	kmstest.WantError(t, err, 404, api.CodeNotFound)
	err = f.local.Do(t.Context(), "DELETE", "/v1/keys/"+aes, nil, nil)
	kmstest.WantError(t, err, 404, api.CodeNotFound)
}

// checkOps runs every operation of docs/api.md against loaded keys.
func checkOps(t *testing.T, c *client.Sidecar, aes, ed, ec, hm string) {
	t.Helper()
	ctx := t.Context()
	must := func(path string, in, out any) {
		t.Helper()
		if err := c.Do(ctx, "POST", path, in, out); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	msg := bytes.Repeat([]byte("payment "), 128)
	var enc api.EncryptResponse
	must("/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{KeyID: aes}, Plaintext: msg, AAD: []byte("order-1")}, &enc)
	if enc.KeyID != aes || enc.KeyVersion != 1 {
		t.Fatalf("encrypt = %+v", enc)
	}
	var dec api.DecryptResponse
	must("/v1/crypto/decrypt", api.DecryptRequest{Ciphertext: enc.Ciphertext, AAD: []byte("order-1")}, &dec)
	if !bytes.Equal(dec.Plaintext, msg) {
		t.Fatal("decrypt does not round-trip")
	}
	err := c.Do(ctx, "POST", "/v1/crypto/decrypt", api.DecryptRequest{Ciphertext: enc.Ciphertext, AAD: []byte("order-2")}, nil)
	kmstest.WantError(t, err, 400, api.CodeDecryptFailed)
	bad := bytes.Clone(enc.Ciphertext)
	bad[len(bad)-1] ^= 1
	err = c.Do(ctx, "POST", "/v1/crypto/decrypt", api.DecryptRequest{Ciphertext: bad, AAD: []byte("order-1")}, nil)
	kmstest.WantError(t, err, 400, api.CodeDecryptFailed)
	err = c.Do(ctx, "POST", "/v1/crypto/decrypt", api.DecryptRequest{Ciphertext: enc.Ciphertext[:10]}, nil)
	kmstest.WantError(t, err, 400, api.CodeInvalidCiphertext)

	for _, k := range []string{ed, ec} {
		var sig api.SignResponse
		must("/v1/crypto/sign", api.SignRequest{KeyRef: api.KeyRef{KeyID: k}, Message: msg}, &sig)
		var v api.ValidResponse
		must("/v1/crypto/verify", api.VerifyRequest{KeyRef: api.KeyRef{KeyID: k}, Message: msg, Signature: sig.Signature}, &v)
		if !v.Valid {
			t.Fatalf("signature of %s does not verify", k)
		}
		must("/v1/crypto/verify", api.VerifyRequest{KeyRef: api.KeyRef{KeyID: k}, Message: []byte("other"), Signature: sig.Signature}, &v)
		if v.Valid {
			t.Fatalf("signature of %s verifies another message", k)
		}
	}
	var mac api.MACResponse
	must("/v1/crypto/mac", api.MACRequest{KeyRef: api.KeyRef{KeyID: hm}, Message: msg}, &mac)
	var mv api.ValidResponse
	must("/v1/crypto/mac/verify", api.MACVerifyRequest{KeyRef: api.KeyRef{KeyID: hm}, Message: msg, MAC: mac.MAC}, &mv)
	if len(mac.MAC) != 32 || !mv.Valid {
		t.Fatalf("mac = %x, valid %v", mac.MAC, mv.Valid)
	}
	err = c.Do(ctx, "POST", "/v1/crypto/mac", api.MACRequest{KeyRef: api.KeyRef{KeyID: aes}, Message: msg}, nil)
	kmstest.WantError(t, err, 400, api.CodeWrongKeyType)

	var h api.HashResponse
	must("/v1/crypto/hash", api.HashRequest{Algorithm: "sha-256", Message: []byte("abc")}, &h)
	if len(h.Digest) != 32 {
		t.Fatalf("digest = %x", h.Digest)
	}
	var rnd api.RandomResponse
	must("/v1/crypto/random", api.RandomRequest{Bytes: 48}, &rnd)
	if len(rnd.Random) != 48 {
		t.Fatalf("random = %d bytes", len(rnd.Random))
	}
	var tr api.EncryptResponse
	must("/v1/crypto/translate", api.TranslateRequest{Ciphertext: enc.Ciphertext, AAD: []byte("order-1"), ToKeyID: aes, ToAAD: []byte("order-1b")}, &tr)
	must("/v1/crypto/decrypt", api.DecryptRequest{Ciphertext: tr.Ciphertext, AAD: []byte("order-1b")}, &dec)
	if !bytes.Equal(dec.Plaintext, msg) {
		t.Fatal("translate does not round-trip")
	}

	var batch api.BatchResponse
	must("/v1/crypto/batch", api.BatchRequest{Ops: []api.BatchItem{
		{Op: api.OpEncrypt, KeyID: aes, Plaintext: []byte("one")},
		{Op: api.OpMAC, KeyID: hm, Message: []byte("two")},
		{Op: api.OpEncrypt, KeyID: "key_missing", Plaintext: []byte("three")},
		{Op: api.OpDecrypt, Ciphertext: enc.Ciphertext, AAD: []byte("order-1")},
		{Op: "explode"},
	}}, &batch)
	if len(batch.Results) != 5 || batch.Results[0].Ciphertext == nil || batch.Results[1].MAC == nil ||
		batch.Results[2].Error == nil || batch.Results[2].Error.Code != api.CodeNotFound ||
		!bytes.Equal(batch.Results[3].Plaintext, msg) || batch.Results[4].Error == nil {
		t.Fatalf("batch = %+v", batch)
	}
}

func TestSidecarRefusesOtherUID(t *testing.T) {
	f := newFixture(t, func(c *sidecar.Config) { c.AllowUIDs = []int{os.Getuid() + 4242} })
	err := f.local.Do(t.Context(), "GET", "/v1/status", nil, nil)
	kmstest.WantError(t, err, 403, api.CodeForbidden)
	fi, err := os.Stat(f.socket)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	audit, _ := os.ReadFile(filepath.Join(f.dataDir, "audit.jsonl"))
	if !strings.Contains(string(audit), `"outcome":"denied"`) {
		t.Fatalf("no audit record of the refusal: %s", audit)
	}
}

func TestSidecarMutualTLSListener(t *testing.T) {
	f := newFixture(t, nil)
	dks := f.load(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	addr := e2e.ServeMutualTLS(t, f.sc)

	dial := func(certPEM, keyPEM string) *client.Sidecar {
		cfg := &tls.Config{RootCAs: f.env.CAPool, ServerName: f.sc.ServerName()}
		if certPEM != "" {
			pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		c, err := client.NewSidecarWithTLS("https://"+addr, cfg, client.WithRetry(1, 0, 0))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	req := api.EncryptRequest{KeyRef: api.KeyRef{KeyID: dks[0].KeyID}, Plaintext: []byte("hi")}
	// The bound custodian: allowed.
	if err := dial(f.creds.CertPEM, f.creds.KeyPEM).Do(t.Context(), "POST", "/v1/crypto/encrypt", req, nil); err != nil {
		t.Fatalf("bound custodian over mTLS: %v", err)
	}
	// Another custodian of the same tenant: 403.
	_, other := f.env.App(t, "acme", "reporting", api.RoleCustodian)
	err := dial(other.CertPEM, other.KeyPEM).Do(t.Context(), "POST", "/v1/crypto/encrypt", req, nil)
	kmstest.WantError(t, err, 403, api.CodeForbidden)
	// No certificate: 401.
	err = dial("", "").Do(t.Context(), "POST", "/v1/crypto/encrypt", req, nil)
	kmstest.WantError(t, err, 401, api.CodeUnauthenticated)
	// A certificate from a foreign CA: the handshake fails.
	foreign := kmstest.Start(t, nil)
	foreign.Tenant(t, "acme")
	_, fc := foreign.App(t, "acme", "payments-api", api.RoleCustodian)
	if err := dial(fc.CertPEM, fc.KeyPEM).Do(t.Context(), "POST", "/v1/crypto/encrypt", req, nil); err == nil {
		t.Fatal("a foreign client certificate was accepted")
	}
}

func TestSidecarEnrollmentRefusals(t *testing.T) {
	f := newFixture(t, nil)
	tok := token(t, f)
	cfg := e2e.InProcessConfig(t, f.env, tok)
	cfg.HealthInterval = 0
	sc, err := sidecar.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	sc.Close()
	cfg.DataDir = t.TempDir()
	_, err = sidecar.New(t.Context(), cfg)
	kmstest.WantError(t, err, 409, api.CodeAlreadyUsed)
	cfg.EnrollToken = sidecar.Secret([]byte("dcet_not-a-token"))
	_, err = sidecar.New(t.Context(), cfg)
	kmstest.WantError(t, err, 403, api.CodeInvalidToken)

	// Without a token the sidecar starts and waits: it serves its status
	// and refuses everything else until its custodian hands it one.
	cfg.EnrollToken = nil
	cfg.DataDir = t.TempDir()
	waiting, err := sidecar.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("sidecar.New without a token = %v, want a sidecar waiting for enrollment", err)
	}
	defer waiting.Close()
	if st := waiting.Status(t.Context()); st.Enrolled || st.InstanceID != "" {
		t.Fatalf("status before enrollment = %+v", st)
	}
	_, err = waiting.Encrypt(t.Context(), "key_x", []byte("x"), nil)
	kmstest.WantError(t, err, 0, api.CodeNotEnrolled)
	kmstest.WantError(t, waiting.Enroll(t.Context(), sidecar.Secret([]byte(tok))), 409, api.CodeAlreadyUsed)
	kmstest.WantError(t, waiting.Enroll(t.Context(), sidecar.Secret([]byte("dcet_not-a-token"))), 403, api.CodeInvalidToken)
	if err := waiting.Enroll(t.Context(), sidecar.Secret([]byte(token(t, f)))); err != nil {
		t.Fatalf("Enroll = %v", err)
	}
	if st := waiting.Status(t.Context()); !st.Enrolled || st.InstanceID == "" || st.CustodianDN != f.creds.DN || st.IdentityNotAfter == nil {
		t.Fatalf("status after enrollment = %+v", st)
	}
	kmstest.WantError(t, waiting.Enroll(t.Context(), sidecar.Secret([]byte(token(t, f)))), 0, api.CodeConflict)
}

func TestSecretsNeverLogged(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFixture(t, func(c *sidecar.Config) { c.Reg = reg })
	tok := token(t, f)
	dks := f.load(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, api.CreateDataKeyRequest{Type: api.KeyHMACSHA256})
	var enc api.EncryptResponse
	f.do(t, "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{KeyID: dks[0].KeyID}, Plaintext: []byte("x")}, &enc)
	_ = f.local.Do(t.Context(), "POST", "/v1/crypto/decrypt", api.DecryptRequest{Ciphertext: enc.Ciphertext, AAD: []byte("wrong")}, nil)

	// Learn the key bytes the sidecar holds: rewrap the same EKBs to a
	// second (test-held) sidecar of the same custodian and open them.
	spy := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	spy.Enroll(t, f.env.Anonymous(), tok)
	var wrapped api.WrappedKeys
	f.cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{dks[0].EKB, dks[1].EKB}, WrappingCertPEM: spy.Enrollment.WrappingCertPEM}, &wrapped)
	deks := spy.Unwrap(t, &wrapped)

	metrics := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(metrics, httptest.NewRequest("GET", "/metrics", nil))
	audit, _ := os.ReadFile(filepath.Join(f.dataDir, "audit.jsonl"))
	sources := map[string][]byte{"logs": f.logs.Bytes(), "audit": audit, "metrics": metrics.Body.Bytes()}
	for name, blob := range sources {
		for _, d := range deks {
			k := d.Expose()
			for _, form := range [][]byte{k, []byte(hex.EncodeToString(k)), []byte(base64.StdEncoding.EncodeToString(k)), []byte(base64.RawURLEncoding.EncodeToString(k))} {
				if bytes.Contains(blob, form) {
					t.Fatalf("key material reached the %s", name)
				}
			}
		}
		if bytes.Contains(blob, []byte(tok)) {
			t.Fatalf("an enrollment token reached the %s", name)
		}
	}
	if f.logs.Len() == 0 || len(audit) == 0 || metrics.Body.Len() == 0 {
		t.Fatal("nothing was captured: the test would prove nothing")
	}
}
