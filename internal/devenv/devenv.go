// Package devenv runs a complete dcaas on loopback inside one process: a
// KMS on embedded defaults, tenant "demo" with a custodian ("demo-app") and
// a pipeline ("demo-pipeline"), and a sidecar enrolled for the custodian,
// serving on a Unix socket. `dcaas dev` and `dcaas bench` are built on it.
package devenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/datadir"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/sidecar"
)

// Options configure Start. Zero values mean defaults.
type Options struct {
	DataDir string       // default: a new temporary directory, removed by Close
	Listen  string       // KMS address; default 127.0.0.1:0 (a free port)
	Logger  *slog.Logger // default: discard (a disabled handler, so nothing is formatted)
	// NoRequestLog turns off the KMS's and the sidecar's per-request log
	// lines (dcaas bench: its figures must not include them).
	NoRequestLog bool
	// SidecarPoll is the sidecar's revocation poll interval (default 10 s).
	SidecarPoll time.Duration
}

// Env is a running local dcaas.
type Env struct {
	DataDir string
	KMSURL  string
	CAFile  string
	CAPEM   []byte
	// Admin, Custodian and Pipeline are SDK clients of the KMS, Local of
	// the sidecar over its socket; each makes one attempt per call, so that
	// what a test or the demo sees is what the server answered.
	Admin     *client.KMS
	Custodian *client.KMS
	Pipeline  *client.KMS
	// CustodianCert and CustodianKey are the demo custodian's credential
	// files (the key file has mode 0600).
	CustodianCert, CustodianKey string
	CustodianDN                 string
	Sidecar                     *sidecar.Sidecar
	Socket                      string
	Local                       *client.Sidecar

	kmsSrv   *kms.Server
	kmsHTTP  *http.Server
	cancel   context.CancelFunc
	done     chan struct{}
	ownsDir  bool
	sidecarD string
}

// Start brings everything up.
func Start(ctx context.Context, o Options) (_ *Env, err error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	e := &Env{DataDir: o.DataDir, done: make(chan struct{})}
	if e.DataDir == "" {
		if e.DataDir, err = os.MkdirTemp("", "dcaas-dev-"); err != nil {
			return nil, err
		}
		e.ownsDir = true
	}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	kmsDir := filepath.Join(e.DataDir, "kms")
	host, _, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, err
	}
	if e.kmsSrv, err = datadir.Open(ctx, kms.Options{DataDir: kmsDir, ServerHosts: []string{host}, Logger: o.Logger, Config: kms.Config{NoRequestLog: o.NoRequestLog}}); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, err
	}
	e.KMSURL = "https://" + ln.Addr().String()
	e.kmsHTTP = &http.Server{Handler: e.kmsSrv.KMS.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go e.kmsHTTP.Serve(tls.NewListener(ln, e.kmsSrv.TLSConfig))

	e.CAFile = filepath.Join(kmsDir, kms.CAFile)
	if e.CAPEM, err = os.ReadFile(e.CAFile); err != nil {
		return nil, err
	}
	if e.Admin, err = e.ClientFromFiles(filepath.Join(kmsDir, kms.AdminCert), filepath.Join(kmsDir, kms.AdminKey)); err != nil {
		return nil, err
	}
	if err := e.bootstrap(ctx); err != nil {
		return nil, err
	}
	var tok api.EnrollmentToken
	if err := e.Pipeline.Do(ctx, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: e.CustodianDN}, &tok); err != nil {
		return nil, fmt.Errorf("devenv: enrollment token: %w", err)
	}
	e.sidecarD = filepath.Join(e.DataDir, "sidecar")
	e.Sidecar, err = sidecar.New(ctx, sidecar.Config{
		KMSURL: e.KMSURL, CAPEM: e.CAPEM, DataDir: e.sidecarD, EnrollToken: sidecar.Secret([]byte(tok.Token)),
		Logger: o.Logger, HealthInterval: o.SidecarPoll, NoRequestLog: o.NoRequestLog,
	})
	if err != nil {
		return nil, err
	}
	e.Socket = filepath.Join(e.sidecarD, "sidecar.sock")
	sln, err := sidecar.ListenUnix(e.Socket)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() {
		defer close(e.done)
		_ = e.Sidecar.Serve(sctx, sln)
	}()
	e.Local = UnixClient(e.Socket)
	return e, nil
}

// bootstrap creates (or, on a reused data dir, finds) tenant "demo" and
// its apps, writing the custodian's credentials next to the KMS data.
func (e *Env) bootstrap(ctx context.Context) error {
	credDir := filepath.Join(e.DataDir, "demo-app")
	e.CustodianCert, e.CustodianKey = filepath.Join(credDir, "cert.pem"), filepath.Join(credDir, "key.pem")
	pipeCert, pipeKey := filepath.Join(e.DataDir, "demo-pipeline", "cert.pem"), filepath.Join(e.DataDir, "demo-pipeline", "key.pem")
	if _, err := os.Stat(e.CustodianCert); err != nil {
		if err := e.Admin.Do(ctx, "POST", "/v1/tenants", api.CreateTenantRequest{Name: "demo"}, nil); err != nil && api.CodeOf(err) != api.CodeConflict {
			return fmt.Errorf("devenv: tenant: %w", err)
		}
		for _, app := range []struct {
			name      string
			role      api.Role
			cert, key string
		}{{"demo-app", api.RoleCustodian, e.CustodianCert, e.CustodianKey}, {"demo-pipeline", api.RolePipeline, pipeCert, pipeKey}} {
			var creds api.AppCredentials
			if err := e.Admin.Do(ctx, "POST", "/v1/tenants/demo/apps", api.CreateAppRequest{Name: app.name, Role: app.role}, &creds); err != nil {
				return fmt.Errorf("devenv: app %s: %w", app.name, err)
			}
			if err := os.MkdirAll(filepath.Dir(app.cert), 0o700); err != nil {
				return err
			}
			if err := os.WriteFile(app.key, []byte(creds.KeyPEM), 0o600); err != nil {
				return err
			}
			if err := os.WriteFile(app.cert, []byte(creds.CertPEM), 0o644); err != nil {
				return err
			}
		}
	}
	var err error
	if e.Custodian, err = e.ClientFromFiles(e.CustodianCert, e.CustodianKey); err != nil {
		return err
	}
	if e.Pipeline, err = e.ClientFromFiles(pipeCert, pipeKey); err != nil {
		return err
	}
	pair, err := tls.LoadX509KeyPair(e.CustodianCert, e.CustodianKey)
	if err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return err
	}
	e.CustodianDN = leaf.Subject.String()
	return nil
}

// ClientFromFiles is a KMS client authenticating with a PEM cert and key.
func (e *Env) ClientFromFiles(certFile, keyFile string) (*client.KMS, error) {
	return KMSClientFromFiles(e.KMSURL, e.CAPEM, certFile, keyFile, client.WithRetry(1, 0, 0))
}

// KMSClientFromFiles is an SDK client of the KMS at url that trusts caPEM
// and authenticates with the PEM certificate and key in certFile and
// keyFile.
func KMSClientFromFiles(url string, caPEM []byte, certFile, keyFile string, opts ...client.Option) (*client.KMS, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	return client.NewKMS([]string{url}, caPEM, certPEM, keyPEM, opts...)
}

// UnixClient is a client of a sidecar's Unix socket (one attempt per call).
func UnixClient(path string) *client.Sidecar {
	c, err := client.NewSidecarUnix(path, client.WithRetry(1, 0, 0))
	if err != nil {
		panic(err) // only for an empty path, which no caller passes
	}
	return c
}

// UnixHTTP is a raw HTTP client of a sidecar's Unix socket, for tests of
// the wire itself (headers, malformed bodies); its base URL is
// "http://sidecar".
func UnixHTTP(path string) *http.Client {
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: 64,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

// NewKeys creates n data keys of type t as the custodian and returns them.
func (e *Env) NewKeys(ctx context.Context, t api.KeyType, n int, retain bool) ([]api.DataKey, error) {
	out := make([]api.DataKey, n)
	for i := range out {
		if err := e.Custodian.Do(ctx, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: t, Retain: retain}, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// LoadByRewrap loads EKBs into the sidecar by the primary flow, in batches.
func (e *Env) LoadByRewrap(ctx context.Context, ekbs [][]byte) error {
	for len(ekbs) > 0 {
		n := min(len(ekbs), 1000)
		var wrapped api.WrappedKeys
		if err := e.Custodian.Do(ctx, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: ekbs[:n], WrappingCertPEM: e.Sidecar.WrappingCertificatePEM()}, &wrapped); err != nil {
			return err
		}
		if _, err := e.Sidecar.ImportKeys(ctx, &wrapped); err != nil {
			return err
		}
		ekbs = ekbs[n:]
	}
	return nil
}

// StopKMS stops the KMS (to show the sidecar's independence).
func (e *Env) StopKMS() error {
	if e.kmsHTTP == nil {
		return errors.New("devenv: the KMS is not running")
	}
	err := e.kmsHTTP.Close()
	e.kmsHTTP = nil
	return err
}

// Close stops everything and removes a temporary data dir.
func (e *Env) Close() error {
	if e.cancel != nil {
		e.cancel()
		<-e.done
	}
	if e.Sidecar != nil {
		e.Sidecar.Close()
	}
	if e.kmsHTTP != nil {
		e.kmsHTTP.Close()
	}
	if e.kmsSrv != nil {
		e.kmsSrv.Close()
	}
	if e.ownsDir {
		return os.RemoveAll(e.DataDir)
	}
	return nil
}
