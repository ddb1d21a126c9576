package adversarial_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/devenv"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/sidecar"
)

// world is a KMS on a settable clock with tenant acme (custodians
// payments-api and ledger, pipeline deployer) and tenant globex (custodian
// payments-api, pipeline deployer). Sidecars are started on demand.
type world struct {
	env   *kmstest.Env
	clock *kmstest.Clock

	pay      *kmstest.Client // CN=payments-api,O=acme
	payCreds api.AppCredentials
	led      *kmstest.Client // CN=ledger,O=acme
	ledCreds api.AppCredentials
	pipe     *kmstest.Client // acme's pipeline

	gx      *kmstest.Client // CN=payments-api,O=globex
	gxCreds api.AppCredentials
	gxPipe  *kmstest.Client
}

func newWorld(t testing.TB, mutate ...func(*kms.Options)) *world {
	t.Helper()
	w := &world{clock: kmstest.NewClock()}
	w.env = kmstest.Start(t, func(o *kms.Options) {
		o.Now = w.clock.Now
		for _, m := range mutate {
			m(o)
		}
	})
	w.env.Tenant(t, "acme")
	w.env.Tenant(t, "globex")
	w.pay, w.payCreds = w.env.App(t, "acme", "payments-api", api.RoleCustodian)
	w.led, w.ledCreds = w.env.App(t, "acme", "ledger", api.RoleCustodian)
	w.pipe, _ = w.env.App(t, "acme", "deployer", api.RolePipeline)
	w.gx, w.gxCreds = w.env.App(t, "globex", "payments-api", api.RoleCustodian)
	w.gxPipe, _ = w.env.App(t, "globex", "deployer", api.RolePipeline)
	return w
}

// token mints an enrollment token for the custodian dn with the pipeline
// of dn's tenant.
func (w *world) token(t testing.TB, dn string) string {
	t.Helper()
	pipe := w.pipe
	if strings.HasSuffix(dn, "O=globex") {
		pipe = w.gxPipe
	}
	return pipe.EnrollmentToken(t, dn)
}

// side is a real sidecar serving on a Unix socket.
type side struct {
	sc      *sidecar.Sidecar
	local   *client.Sidecar
	http    *http.Client
	socket  string
	dataDir string
	id      string
	cert    string // wrapping certificate PEM
}

// sidecar enrolls a real sidecar bound to dn and serves it on a Unix
// socket in dir (t.TempDir() when empty) until the test ends.
func (w *world) sidecar(t testing.TB, dn string, dir string, mutate func(*sidecar.Config)) *side {
	t.Helper()
	cfg := e2e.InProcessConfig(t, w.env, w.token(t, dn))
	cfg.HealthInterval = time.Hour // no background poll unless a test asks
	if mutate != nil {
		mutate(&cfg)
	}
	socket := ""
	if dir != "" {
		socket = filepath.Join(dir, "sidecar.sock")
	}
	s := &side{dataDir: cfg.DataDir}
	s.sc, s.socket = e2e.ServeSidecar(t, cfg, socket)
	s.local = devenv.UnixClient(s.socket)
	s.http = devenv.UnixHTTP(s.socket)
	s.id = s.sc.InstanceID()
	s.cert = s.sc.WrappingCertificatePEM()
	return s
}

func (s *side) do(t testing.TB, method, path string, in, out any) error {
	return s.local.Do(t.Context(), method, path, in, out)
}

func (s *side) must(t testing.TB, method, path string, in, out any) {
	t.Helper()
	if err := s.do(t, method, path, in, out); err != nil {
		t.Fatalf("sidecar %s %s: %v", method, path, err)
	}
}

// keyIDs lists the key ids the sidecar holds (GET /v1/keys).
func (s *side) keyIDs(t testing.TB) []string {
	t.Helper()
	var out api.LoadedKeys
	s.must(t, "GET", "/v1/keys", nil, &out)
	ids := make([]string, 0, len(out.Keys))
	for _, k := range out.Keys {
		ids = append(ids, fmt.Sprintf("%s/v%d", k.KeyID, k.Version))
	}
	return ids
}

// wantNoKeys fails unless the sidecar holds no key: a refused load must
// leave nothing behind.
func (s *side) wantNoKeys(t testing.TB) {
	t.Helper()
	if ids := s.keyIDs(t); len(ids) != 0 {
		t.Fatalf("the sidecar holds %v after a refused load, want nothing", ids)
	}
}

func dataKey(t testing.TB, c *kmstest.Client, req api.CreateDataKeyRequest) api.DataKey {
	t.Helper()
	return c.DataKey(t, req)
}

func rewrap(c *kmstest.Client, certPEM string, ekbs ...[]byte) (api.WrappedKeys, error) {
	var out api.WrappedKeys
	err := c.Do("POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: ekbs, WrappingCertPEM: certPEM}, &out)
	return out, err
}

func mustRewrap(t testing.TB, c *kmstest.Client, certPEM string, ekbs ...[]byte) *api.WrappedKeys {
	t.Helper()
	out, err := rewrap(c, certPEM, ekbs...)
	if err != nil {
		t.Fatalf("POST /v1/keys/rewrap: %v", err)
	}
	return &out
}

// load imports keys into s by the primary flow: rewrap by custodian c to
// s's wrapping certificate, then the sidecar's import.
func (s *side) load(t testing.TB, c *kmstest.Client, dks ...api.DataKey) {
	t.Helper()
	var ekbs [][]byte
	for _, dk := range dks {
		ekbs = append(ekbs, dk.EKB)
	}
	s.must(t, "POST", "/v1/keys/import", mustRewrap(t, c, s.cert, ekbs...), nil)
}

func grant(c *kmstest.Client, req api.GrantRequest) (string, error) { return c.Grant(req) }

func mustGrant(t testing.TB, c *kmstest.Client, req api.GrantRequest) string {
	t.Helper()
	return c.MustGrant(t, req)
}

// raw sends body as it is (no JSON encoding, so it may be invalid, huge or
// deeply nested) and returns the answer as *api.Error with Status set, or
// nil for a 200. contentLength < 0 sends the body chunked, without a
// Content-Length, so only the server's reading limit can stop it.
func raw(ctx context.Context, hc *http.Client, url string, body io.Reader, contentLength int64) error {
	req, err := http.NewRequestWithContext(ctx, "POST", url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = contentLength
	if contentLength < 0 {
		req.ContentLength = 0
		req.TransferEncoding = []string{"chunked"}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var eb api.ErrorBody
	if err := json.Unmarshal(data, &eb); err != nil || eb.Error == nil {
		return fmt.Errorf("status %d with a non-API body %q", resp.StatusCode, truncate(data))
	}
	eb.Error.Status = resp.StatusCode
	return eb.Error
}

func truncate(b []byte) []byte {
	if len(b) > 200 {
		return append(bytes.Clone(b[:200]), "…"...)
	}
	return b
}

// wantOneOf checks that err is an API error with one of the given
// status/code pairs.
func wantOneOf(t testing.TB, err error, want ...apiErr) {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v, want one of %v", err, want)
	}
	for _, w := range want {
		if e.Status == w.status && e.Code == w.code {
			return
		}
	}
	t.Fatalf("error = %d %s (%s), want one of %v", e.Status, e.Code, e.Message, want)
}

type apiErr struct {
	status int
	code   api.Code
}

func (a apiErr) String() string { return fmt.Sprintf("%d %s", a.status, a.code) }
