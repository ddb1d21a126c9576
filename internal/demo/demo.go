// Package demo runs dcaas's whole story against real processes on
// loopback: a KMS and a sidecar started from the dcaas binary, a tenant, a
// custodian, a pipeline token, enrollment, data keys, each of the four key
// loading flows, operations, the KMS going away and coming back, and a key
// revoked and evicted. `dcaas demo` prints its steps.
package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/devenv"
)

// Step is one line of the story.
type Step struct {
	Name   string  `json:"step"`
	OK     bool    `json:"ok"`
	Detail string  `json:"detail"`
	MS     float64 `json:"ms"`
}

// Report is the whole run.
type Report struct {
	OK    bool   `json:"ok"`
	Steps []Step `json:"steps"`
}

// Options configure Run.
type Options struct {
	Binary string    // the dcaas executable to start processes from
	Dir    string    // working directory (data dirs, credentials)
	Out    io.Writer // each step's line as it finishes (nil: silent)
}

type runner struct {
	o      Options
	ctx    context.Context
	rep    *Report
	kmsURL string
	kms    *exec.Cmd
	sc     *exec.Cmd
	admin  *client.KMS
	cust   *client.KMS
	pipe   *client.KMS
	local  *client.Sidecar
	caPEM  []byte
	dn     string
	inst   string
	keys   map[string]api.DataKey
	ct     []byte
	listen string
	token  string // the enrollment token, until the sidecar has it
}

// Run tells the story and reports every step; it stops at the first
// failure. The returned error is that failure.
func Run(ctx context.Context, o Options) (*Report, error) {
	r := &runner{o: o, ctx: ctx, rep: &Report{}, keys: map[string]api.DataKey{}}
	defer r.stopAll()
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return r.rep, err
	}
	steps := []struct {
		name string
		fn   func() (string, error)
	}{
		{"start the KMS", r.startKMS},
		{"create tenant acme", r.tenant},
		{"register custodian payments-api", r.custodian},
		{"pipeline mints an enrollment token", r.mintToken},
		{"sidecar enrolls and serves", r.startSidecar},
		{"custodian creates data keys", r.dataKeys},
		{"load by wrapping-certificate rewrap", r.flowRewrap},
		{"load by grant over a secure channel", r.flowGrant},
		{"load by seed derivation", r.flowSeeds},
		{"stateless: seal and use a sealed key", r.flowStateless},
		{"operations over the Unix socket", r.operations},
		{"stop the KMS", r.stopKMS},
		{"operations still served without the KMS", r.offline},
		{"start the KMS again", r.restartKMS},
		{"revoke a key at the KMS", r.revokeKey},
		{"sidecar evicts the revoked key", r.evicted},
	}
	var failure error
	for _, s := range steps {
		start := time.Now()
		detail, err := s.fn()
		st := Step{Name: s.name, OK: err == nil, Detail: detail, MS: float64(time.Since(start).Microseconds()) / 1e3}
		if err != nil {
			st.Detail = err.Error()
		}
		r.rep.Steps = append(r.rep.Steps, st)
		if o.Out != nil {
			mark := "ok  "
			if !st.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(o.Out, "%s %-44s %8.1f ms  %s\n", mark, st.Name, st.MS, st.Detail)
		}
		if err != nil {
			failure = fmt.Errorf("demo: %s: %w", s.name, err)
			break
		}
	}
	r.rep.OK = failure == nil
	return r.rep, failure
}

// start runs the binary with args and waits for its "ready" line.
func (r *runner) start(env []string, args ...string) (*exec.Cmd, string, error) {
	cmd := exec.Command(r.o.Binary, args...)
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(filepath.Join(r.o.Dir, args[0]+".log"))
	if err != nil {
		return nil, "", err
	}
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "ready") {
				lines <- sc.Text()
			}
		}
		close(lines)
	}()
	select {
	case l, ok := <-lines:
		if !ok {
			cmd.Wait()
			return nil, "", fmt.Errorf("%s exited before it was ready (see %s)", args[0], logf.Name())
		}
		return cmd, l, nil
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		return nil, "", fmt.Errorf("%s was not ready within 30 s", args[0])
	}
}

func stop(c *exec.Cmd) {
	if c != nil && c.Process != nil {
		_ = c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			c.Process.Kill()
			<-done
		}
	}
}

func (r *runner) stopAll() {
	stop(r.sc)
	stop(r.kms)
}

func (r *runner) startKMS() (string, error) {
	if r.listen == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		r.listen = ln.Addr().String()
		ln.Close()
	}
	cmd, line, err := r.start(nil, "kms", "serve", "--data-dir", filepath.Join(r.o.Dir, "kms"), "--listen", r.listen)
	if err != nil {
		return "", err
	}
	r.kms, r.kmsURL = cmd, "https://"+r.listen
	if r.admin == nil {
		if r.caPEM, err = os.ReadFile(filepath.Join(r.o.Dir, "kms", "ca.pem")); err != nil {
			return "", err
		}
		if r.admin, err = r.client(filepath.Join(r.o.Dir, "kms", "admin", "cert.pem"), filepath.Join(r.o.Dir, "kms", "admin", "key.pem")); err != nil {
			return "", err
		}
	}
	detail := r.kmsURL + " (mutual TLS)"
	for _, f := range strings.Fields(line) {
		if strings.HasPrefix(f, "seal=") || strings.HasPrefix(f, "fips=") || strings.HasPrefix(f, "store=") {
			detail += " " + f
		}
	}
	return detail, nil
}

func (r *runner) client(certFile, keyFile string) (*client.KMS, error) {
	return devenv.KMSClientFromFiles("https://"+r.listen, r.caPEM, certFile, keyFile, client.WithRetry(1, 0, 0), client.WithTimeout(30*time.Second))
}

// doer is the SDK's KMS or Sidecar: the demo calls the API by method and
// path, as its report shows them.
type doer interface {
	Do(ctx context.Context, method, path string, in, out any) error
}

func (r *runner) do(c doer, method, path string, in, out any) error {
	return c.Do(r.ctx, method, path, in, out)
}

func (r *runner) tenant() (string, error) {
	var t api.Tenant
	if err := r.do(r.admin, "POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme"}, &t); err != nil {
		return "", err
	}
	return fmt.Sprintf("master key v%d and HMAC key created, sealed under the root key", t.MasterKeyVersion), nil
}

// app registers an app and writes its credentials; it returns a client.
func (r *runner) app(name string, role api.Role) (*client.KMS, api.AppCredentials, error) {
	var creds api.AppCredentials
	if err := r.do(r.admin, "POST", "/v1/tenants/acme/apps", api.CreateAppRequest{Name: name, Role: role}, &creds); err != nil {
		return nil, creds, err
	}
	dir := filepath.Join(r.o.Dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, creds, err
	}
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(key, []byte(creds.KeyPEM), 0o600); err != nil {
		return nil, creds, err
	}
	if err := os.WriteFile(cert, []byte(creds.CertPEM), 0o644); err != nil {
		return nil, creds, err
	}
	c, err := r.client(cert, key)
	return c, creds, err
}

func (r *runner) custodian() (string, error) {
	c, creds, err := r.app("payments-api", api.RoleCustodian)
	r.cust, r.dn = c, creds.DN
	if err != nil {
		return "", err
	}
	return creds.DN + " with a KMS-issued client certificate", nil
}

func (r *runner) mintToken() (string, error) {
	p, _, err := r.app("deployer", api.RolePipeline)
	if err != nil {
		return "", err
	}
	r.pipe = p
	var tok api.EnrollmentToken
	if err := r.do(p, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: r.dn, TTLSeconds: 300}, &tok); err != nil {
		return "", err
	}
	r.token = tok.Token
	return fmt.Sprintf("single-use, expires %s, stored only as a hash", tok.ExpiresAt.Format(time.RFC3339)), nil
}

func (r *runner) startSidecar() (string, error) {
	dir := filepath.Join(r.o.Dir, "sidecar")
	cmd, _, err := r.start([]string{"DCAAS_ENROLL_TOKEN=" + r.token}, "sidecar", "serve",
		"--kms", r.kmsURL, "--ca", filepath.Join(r.o.Dir, "kms", "ca.pem"), "--data-dir", dir, "--poll-interval", "250ms")
	r.token = ""
	if err != nil {
		return "", err
	}
	r.sc = cmd
	r.local = devenv.UnixClient(filepath.Join(dir, "sidecar.sock"))
	var st api.Status
	if err := r.do(r.local, "GET", "/v1/status", nil, &st); err != nil {
		return "", err
	}
	r.inst = st.InstanceID
	return fmt.Sprintf("instance %s bound to %s, %s enclave, socket 0600", st.InstanceID, st.CustodianDN, st.Enclave), nil
}

func (r *runner) dataKeys() (string, error) {
	for name, req := range map[string]api.CreateDataKeyRequest{
		"rewrap": {Type: api.KeyAES256GCM}, "grant": {Type: api.KeyAES256GCM}, "stateless": {Type: api.KeyAES256GCM},
		"sign": {Type: api.KeyEd25519}, "mac": {Type: api.KeyHMACSHA256}, "retained": {Type: api.KeyAES256GCM, Retain: true},
	} {
		var dk api.DataKey
		if err := r.do(r.cust, "POST", "/v1/datakeys", req, &dk); err != nil {
			return "", err
		}
		r.keys[name] = dk
	}
	return "6 keys (aes-256-gcm, ed25519, hmac-sha256, one retained): EKBs under the tenant master key", nil
}

func (r *runner) flowRewrap() (string, error) {
	var cert api.WrappingCertificate
	if err := r.do(r.local, "GET", "/v1/wrapping-certificate", nil, &cert); err != nil {
		return "", err
	}
	ekbs := [][]byte{r.keys["rewrap"].EKB, r.keys["stateless"].EKB, r.keys["sign"].EKB, r.keys["mac"].EKB}
	var w api.WrappedKeys
	if err := r.do(r.cust, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: ekbs, WrappingCertPEM: cert.CertPEM}, &w); err != nil {
		return "", err
	}
	var l api.Loaded
	if err := r.do(r.local, "POST", "/v1/keys/import", &w, &l); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d keys sealed by HPKE to the sidecar's wrapping certificate and imported", len(l.Loaded)), nil
}

func (r *runner) flowGrant() (string, error) {
	var g api.Grant
	req := api.GrantRequest{InstanceID: r.inst, EKBs: [][]byte{r.keys["grant"].EKB}, KeyIDs: []string{r.keys["retained"].KeyID}}
	if err := r.do(r.cust, "POST", "/v1/grants", req, &g); err != nil {
		return "", err
	}
	var l api.Loaded
	if err := r.do(r.local, "POST", "/v1/keys/load", api.SidecarLoadRequest{Grant: g.Grant, EKBs: req.EKBs, KeyIDs: req.KeyIDs}, &l); err != nil {
		return "", err
	}
	// The grant is single-use.
	err := r.do(r.local, "POST", "/v1/keys/load", api.SidecarLoadRequest{Grant: g.Grant, EKBs: req.EKBs}, nil)
	if api.CodeOf(err) != api.CodeAlreadyUsed {
		return "", fmt.Errorf("a replayed grant was not refused: %v", err)
	}
	return fmt.Sprintf("%d keys (one retained at the KMS) sealed to an ephemeral key; replay refused", len(l.Loaded)), nil
}

func (r *runner) flowSeeds() (string, error) {
	seed := kcrypto.Random(32)
	var g api.Grant
	if err := r.do(r.cust, "POST", "/v1/grants", api.GrantRequest{InstanceID: r.inst, Seeds: [][]byte{seed}}, &g); err != nil {
		return "", err
	}
	var l api.Loaded
	if err := r.do(r.local, "POST", "/v1/keys/derive", api.SidecarDeriveRequest{Grant: g.Grant, Seeds: []api.Seed{{Seed: seed, Type: api.KeyAES256GCM}}}, &l); err != nil {
		return "", err
	}
	return "key " + l.Loaded[0] + " derived from a seed (SeedKDF v2: HKDF-SHA-256 under the custodian's own seed key)", nil
}

func (r *runner) flowStateless() (string, error) {
	var sealed api.SealResponse
	if err := r.do(r.local, "POST", "/v1/keys/seal", api.SealRequest{KeyIDs: []string{r.keys["stateless"].KeyID}}, &sealed); err != nil {
		return "", err
	}
	var enc api.EncryptResponse
	if err := r.do(r.local, "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{SealedKey: sealed.Sealed[0].SealedKey}, Plaintext: []byte("stateless")}, &enc); err != nil {
		return "", err
	}
	return fmt.Sprintf("sealed under the local master key (%d bytes), evicted, then used from the blob", len(sealed.Sealed[0].SealedKey)), nil
}

func (r *runner) operations() (string, error) {
	var enc api.EncryptResponse
	if err := r.do(r.local, "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{KeyID: r.keys["rewrap"].KeyID}, Plaintext: []byte("4111 1111 1111 1111"), AAD: []byte("order-42")}, &enc); err != nil {
		return "", err
	}
	r.ct = enc.Ciphertext
	var dec api.DecryptResponse
	if err := r.do(r.local, "POST", "/v1/crypto/decrypt", api.DecryptRequest{Ciphertext: r.ct, AAD: []byte("order-42")}, &dec); err != nil {
		return "", err
	}
	var sig api.SignResponse
	if err := r.do(r.local, "POST", "/v1/crypto/sign", api.SignRequest{KeyRef: api.KeyRef{KeyID: r.keys["sign"].KeyID}, Message: []byte("m")}, &sig); err != nil {
		return "", err
	}
	var mac api.MACResponse
	if err := r.do(r.local, "POST", "/v1/crypto/mac", api.MACRequest{KeyRef: api.KeyRef{KeyID: r.keys["mac"].KeyID}, Message: []byte("m")}, &mac); err != nil {
		return "", err
	}
	if string(dec.Plaintext) != "4111 1111 1111 1111" {
		return "", errors.New("decrypt did not round-trip")
	}
	return "encrypt+decrypt with AAD, ed25519 sign, HMAC", nil
}

func (r *runner) stopKMS() (string, error) {
	stop(r.kms)
	r.kms = nil
	return "SIGTERM; the KMS process exited", nil
}

func (r *runner) offline() (string, error) {
	var dec api.DecryptResponse
	if err := r.do(r.local, "POST", "/v1/crypto/decrypt", api.DecryptRequest{Ciphertext: r.ct, AAD: []byte("order-42")}, &dec); err != nil {
		return "", err
	}
	// The status reports what the sidecar's poll (every 250 ms here) saw.
	var st api.Status
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := r.do(r.local, "GET", "/v1/status", nil, &st); err != nil {
			return "", err
		}
		if !st.KMSReachable || time.Now().After(deadline) {
			break
		}
	}
	if st.KMSReachable {
		return "", errors.New("status still says the KMS is reachable")
	}
	return fmt.Sprintf("decrypt served; kms_reachable=false, %d keys loaded", st.KeysLoaded), nil
}

func (r *runner) restartKMS() (string, error) {
	if _, err := r.startKMS(); err != nil {
		return "", err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var st api.Status
		if err := r.do(r.local, "GET", "/v1/status", nil, &st); err == nil && st.KMSReachable {
			return "same data dir; the sidecar reaches it again", nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", errors.New("the sidecar did not see the KMS come back")
}

func (r *runner) revokeKey() (string, error) {
	id := r.keys["rewrap"].KeyID
	if err := r.do(r.cust, "DELETE", "/v1/datakeys/"+id, nil, nil); err != nil {
		return "", err
	}
	return "key " + id + " disabled by its owner", nil
}

func (r *runner) evicted() (string, error) {
	id := r.keys["rewrap"].KeyID
	start := time.Now()
	for time.Since(start) < 10*time.Second {
		var keys api.LoadedKeys
		if err := r.do(r.local, "GET", "/v1/keys", nil, &keys); err != nil {
			return "", err
		}
		found := false
		for _, k := range keys.Keys {
			found = found || k.KeyID == id
		}
		if !found {
			err := r.do(r.local, "POST", "/v1/crypto/decrypt", api.DecryptRequest{Ciphertext: r.ct, AAD: []byte("order-42")}, nil)
			if api.CodeOf(err) != api.CodeRevoked {
				return "", fmt.Errorf("decrypt after eviction = %v, want revoked", err)
			}
			return fmt.Sprintf("gone from the sidecar after %d ms (revocation poll); decrypt now refused: revoked", time.Since(start).Milliseconds()), nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", errors.New("the revoked key was not evicted within 10 s")
}
