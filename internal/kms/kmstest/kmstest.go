// Package kmstest runs a real KMS for tests: a data dir in t.TempDir(), a
// TLS listener on a loopback port, real certificates, and JSON clients that
// authenticate with client certificates the way custodians, pipelines and
// sidecars do. Other packages' end-to-end tests (the sidecar, the SDK) use
// it as their KMS.
package kmstest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/datadir"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/store"
)

// Env is a running KMS.
type Env struct {
	t       testing.TB
	DataDir string
	Addr    string // host:port, stable across Stop/Start
	URL     string // https://Addr
	CAPEM   []byte
	CAPool  *x509.CertPool
	Admin   *Client
	Opts    kms.Options

	mu     sync.Mutex
	server *kms.Server
	http   *http.Server
	done   chan struct{}
}

// Start opens a fresh data dir and serves the KMS on a loopback port until
// the test ends. mutate, if non-nil, adjusts the options first.
func Start(t testing.TB, mutate func(*kms.Options)) *Env {
	t.Helper()
	opts := kms.Options{
		DataDir:     filepath.Join(t.TempDir(), "kms"),
		ServerHosts: []string{"127.0.0.1", "localhost"},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mutate != nil {
		mutate(&opts)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{t: t, DataDir: opts.DataDir, Addr: ln.Addr().String(), Opts: opts}
	e.URL = "https://" + e.Addr
	e.serve(ln)
	t.Cleanup(e.Stop)
	e.CAPEM, err = os.ReadFile(filepath.Join(e.DataDir, kms.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	e.CAPool = x509.NewCertPool()
	e.CAPool.AppendCertsFromPEM(e.CAPEM)
	e.Admin = e.Client(e.AdminPEM(t))
	return e
}

// AdminPEM reads the first admin's certificate and private key, PEM, from
// the data dir, for a client of the test's own making; the caller owns
// both slices.
func (e *Env) AdminPEM(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, err := os.ReadFile(filepath.Join(e.DataDir, kms.AdminCert))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err = os.ReadFile(filepath.Join(e.DataDir, kms.AdminKey))
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

func (e *Env) serve(ln net.Listener) {
	e.t.Helper()
	srv, err := datadir.Open(context.Background(), e.Opts)
	if err != nil {
		ln.Close()
		e.t.Fatalf("datadir.Open: %v", err)
	}
	hs := &http.Server{Handler: srv.KMS.Handler(), TLSConfig: srv.TLSConfig, ErrorLog: nil}
	hs.ErrorLog = nil
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(tls.NewListener(ln, srv.TLSConfig))
	}()
	e.mu.Lock()
	e.server, e.http, e.done = srv, hs, done
	e.mu.Unlock()
}

// Server is the running KMS (nil while stopped).
func (e *Env) Server() *kms.Server {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.server
}

// Stop stops serving and closes the data dir (the KMS is "down"). Safe to
// call twice.
func (e *Env) Stop() {
	e.mu.Lock()
	srv, hs, done := e.server, e.http, e.done
	e.server, e.http = nil, nil
	e.mu.Unlock()
	if hs == nil {
		return
	}
	_ = hs.Close()
	<-done
	_ = srv.Close()
}

// Restart serves the same data dir on the same address again.
func (e *Env) Restart() {
	e.t.Helper()
	e.Stop()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly
		if ln, err = net.Listen("tcp", e.Addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		e.t.Fatalf("relisten %s: %v", e.Addr, err)
	}
	e.serve(ln)
}

// Client is a client of the KMS with an optional client certificate: the
// public SDK (package client) making one attempt per call, with the calls
// a test makes by method and path, and the raw HTTP client for tests that
// probe the wire itself (oversized bodies, /metrics, headers).
type Client struct {
	// SDK is the SDK client every call goes through.
	SDK *client.KMS
	// HTTP and Base are for raw requests, with the same TLS setup.
	HTTP *http.Client
	Base string
	// Approval, when set, is sent with every call (client.WithApproval).
	Approval string
}

// Client returns a client that authenticates with the given PEM
// certificate and key (nil for none) and trusts the KMS CA.
func (e *Env) Client(certPEM, keyPEM []byte) *Client {
	e.t.Helper()
	return newClient(e.t, e.URL, e.CAPool, certPEM, keyPEM, 30*time.Second)
}

// ClientTrusting is Client trusting roots instead of the KMS CA (a trust
// bundle during a CA rotation, say).
func (e *Env) ClientTrusting(roots *x509.CertPool, certPEM, keyPEM []byte) *Client {
	e.t.Helper()
	return newClient(e.t, e.URL, roots, certPEM, keyPEM, 30*time.Second)
}

// NewClient returns a client of the KMS at base (a `dcaas kms serve`
// process, say) that trusts caPEM and authenticates with certPEM and
// keyPEM (nil for none). Its idle connections are closed when t ends.
func NewClient(t testing.TB, base string, caPEM, certPEM, keyPEM []byte) *Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("kmstest: the CA PEM holds no certificate")
	}
	return newClient(t, base, pool, certPEM, keyPEM, 60*time.Second)
}

func newClient(t testing.TB, base string, roots *x509.CertPool, certPEM, keyPEM []byte, timeout time.Duration) *Client {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if len(certPEM) > 0 {
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatalf("client key pair: %v", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	sdk, err := client.NewKMSWithTLS([]string{base}, cfg, client.WithRetry(1, 0, 0), client.WithTimeout(timeout))
	if err != nil {
		t.Fatalf("kmstest: %v", err)
	}
	c := &Client{SDK: sdk, Base: base, HTTP: &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{TLSClientConfig: cfg.Clone(), MaxIdleConnsPerHost: 64, TLSHandshakeTimeout: 30 * time.Second},
	}}
	t.Cleanup(func() {
		sdk.Close()
		c.HTTP.CloseIdleConnections()
	})
	return c
}

// Anonymous is a client without a certificate.
func (e *Env) Anonymous() *Client { return e.Client(nil, nil) }

// Do is the SDK's KMS.Do (one attempt; an error answer is a
// *client.Error, which errors.As also reads as an *api.Error).
func (c *Client) Do(method, path string, in, out any) error {
	ctx := context.Background()
	if c.Approval != "" {
		ctx = client.WithApproval(ctx, c.Approval)
	}
	return c.SDK.Do(ctx, method, path, in, out)
}

// MustDo is Do that fails the test on any error.
func (c *Client) MustDo(t testing.TB, method, path string, in, out any) {
	t.Helper()
	if err := c.Do(method, path, in, out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}

// Grant asks the KMS for a grant as c (POST /v1/grants) and returns it.
// An answer that is not a grant ("dcgr_…" with an expiry) is an error.
func (c *Client) Grant(req api.GrantRequest) (string, error) {
	var g api.Grant
	err := c.Do("POST", "/v1/grants", req, &g)
	if err == nil && (!strings.HasPrefix(g.Grant, "dcgr_") || g.ExpiresAt.IsZero()) {
		err = fmt.Errorf("grant answer %+v", g)
	}
	return g.Grant, err
}

// MustGrant is Grant that fails the test on any error.
func (c *Client) MustGrant(t testing.TB, req api.GrantRequest) string {
	t.Helper()
	g, err := c.Grant(req)
	if err != nil {
		t.Fatalf("POST /v1/grants: %v", err)
	}
	return g
}

// EnrollmentToken mints a one-time enrollment token for the custodian dn
// as c (a pipeline) and fails the test on any error.
func (c *Client) EnrollmentToken(t testing.TB, dn string) string {
	t.Helper()
	var tok api.EnrollmentToken
	c.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: dn}, &tok)
	return tok.Token
}

// DataKey creates a data key as c (POST /v1/datakeys) and fails the test
// on any error.
func (c *Client) DataKey(t testing.TB, req api.CreateDataKeyRequest) api.DataKey {
	t.Helper()
	var dk api.DataKey
	c.MustDo(t, "POST", "/v1/datakeys", req, &dk)
	return dk
}

// APIError is err read as an API error (an SDK *client.Error or an
// *api.Error), or nil.
func APIError(err error) *api.Error {
	var e *api.Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// WantError checks that err is an API error with the given status and code.
func WantError(t testing.TB, err error, status int, code api.Code) {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v, want API error %d %s", err, status, code)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("error = %d %s (%s), want %d %s", e.Status, e.Code, e.Message, status, code)
	}
}

// WantAuditRecords checks that the audit log in st holds want records of
// action: the audit key's creation exactly once however many replicas
// opened the database, one unseal for a threshold of shares, say.
func WantAuditRecords(t testing.TB, st store.Audit, action string, want int) {
	t.Helper()
	recs, err := st.AuditAfter(t.Context(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.Action == action {
			n++
		}
	}
	if n != want {
		t.Errorf("%d %s records in the audit log, want %d", n, action, want)
	}
}

// Tenant creates a tenant as admin.
func (e *Env) Tenant(t testing.TB, name string) {
	t.Helper()
	e.Admin.MustDo(t, "POST", "/v1/tenants", api.CreateTenantRequest{Name: name}, nil)
}

// App creates a tenant app with a KMS-generated key and returns a client
// that authenticates as it, and its credentials.
func (e *Env) App(t testing.TB, tenant, name string, role api.Role) (*Client, api.AppCredentials) {
	t.Helper()
	var creds api.AppCredentials
	e.Admin.MustDo(t, "POST", "/v1/tenants/"+tenant+"/apps", api.CreateAppRequest{Name: name, Role: role}, &creds)
	return e.Client([]byte(creds.CertPEM), []byte(creds.KeyPEM)), creds
}

// NewAdmin registers another admin (POST /v1/admins) with a KMS-generated
// key and returns a client that authenticates as it, and its credentials.
func (e *Env) NewAdmin(t testing.TB, name string) (*Client, api.AppCredentials) {
	t.Helper()
	var creds api.AppCredentials
	e.Admin.MustDo(t, "POST", "/v1/admins", api.CreateAdminRequest{Name: name}, &creds)
	return e.Client([]byte(creds.CertPEM), []byte(creds.KeyPEM)), creds
}
