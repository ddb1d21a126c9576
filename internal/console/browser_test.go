package console_test

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// chromium finds Debian's chromium (scripts/deps.sh installs it for make
// test) or skips the test, saying so.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium on PATH: the browser test needs Debian's chromium package (scripts/deps.sh installs it; make test runs it)")
	return ""
}

// screenshotDir is where the browser test saves its screenshots:
// $DCAAS_CONSOLE_SCREENSHOTS (docs/console to refresh the README's), else
// a temporary directory.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("DCAAS_CONSOLE_SCREENSHOTS"); d != "" {
		if !filepath.IsAbs(d) {
			d = filepath.Join("..", "..", d) // relative to the repository's root
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// TestBrowser drives headless Chromium through the console against a real
// KMS: log in with the printed URL, list a tenant's keys, disable one
// through its confirmation, watch the fleet page follow an enrollment and
// a revocation, and check that markup in a request stays text.
func TestBrowser(t *testing.T) {
	exe := chromium(t)
	f := newFixture(t, 50*time.Millisecond)
	// More to show: keys of other types, a retained one, a second tenant.
	ed := f.cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyEd25519})
	f.cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyHMACSHA256, Purpose: "webhook signatures", Labels: map[string]string{"team": "payments"},
		Policy: &api.Policy{
			Rules:  []api.PolicyRule{{Principals: []string{f.custDN}, Actions: []api.Action{api.ActionMAC, api.ActionVerify}}},
			Limits: &api.UsageLimits{MaxLeaseSeconds: 3600, MaxOperations: 100000},
		}})
	used := f.cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true})
	for range 5 { // usage, on the central path
		f.cust.MustDo(t, "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{KeyID: used.KeyID}, Plaintext: []byte("x")}, nil)
	}
	f.env.Tenant(t, "globex")
	dir := screenshotDir(t)

	// A few seconds on a quiet machine; Chromium's first start alone took
	// over 30 s on the 2-core CI machine during the -race run of the
	// whole suite, so the bound is generous.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.WindowSize(1360, 860), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	location := func() string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, name), png, 0o644)
		})
	}
	visible := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.WaitVisible(chromedp.CSS(sel)) }
	click := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }

	// Without a session the console sends the browser to /login.
	do("open / without a session", chromedp.Navigate(f.srv.URL+"/"))
	if loc := location(); !strings.HasSuffix(loc, "/login") {
		t.Fatalf("without a session the browser is at %s, want /login", loc)
	}

	// Log in with the one-time URL: it lands on the tenants page.
	do("log in", chromedp.Navigate(f.loginURL), visible("#tenants"), shot("tenants.png"))
	if loc, list := location(), text("#tenants"); strings.Contains(loc, "token=") || !strings.Contains(list, "acme") || !strings.Contains(list, "globex") {
		t.Fatalf("after login: at %s, tenants %q; want / listing acme and globex", loc, list)
	}

	// The tenant's keys.
	do("list keys", click(`a[href="/tenants/acme/keys"]`), visible("#keys"), shot("keys.png"))
	keys := text("#keys")
	for _, want := range []string{f.keyID, "aes-256-gcm", "ed25519", "hmac-sha256", "retained by the KMS", "5 encryptions",
		"owner: every action", "CN=payments-api,O=acme: mac, verify", "≤ 100000 operations", "purpose: webhook signatures", "team=payments"} {
		if !strings.Contains(keys, want) {
			t.Errorf("keys page lacks %q: %s", want, keys)
		}
	}

	// Disable a key: the button leads to a confirmation, which does it.
	do("disable a key", click("#disable-"+f.keyID), visible("#question"), shot("confirm.png"))
	if q := text("#question"); !strings.Contains(q, f.keyID) {
		t.Errorf("confirmation asks %q, want it to name %s", q, f.keyID)
	}
	do("confirm", click("#confirm"), visible("#done"))
	if st := text("#key-" + f.keyID + " .state"); st != "disabled" {
		t.Errorf("key state after disabling = %q, want disabled", st)
	}
	if info, err := f.admin.DataKey(ctx, f.keyID); err != nil || !info.Disabled {
		t.Errorf("KMS says key %s = %+v, %v; want disabled", f.keyID, info, err)
	}

	// The fleet: empty, then instances enroll (and poll), then one is revoked.
	do("fleet, empty", chromedp.Navigate(f.srv.URL+"/fleet"), visible("#no-instances"))
	var ids []string
	for range 2 {
		sc := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
		var tok api.EnrollmentToken
		f.cust.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{}, &tok)
		sc.Enroll(t, f.env.Anonymous(), tok.Token)
		ids = append(ids, sc.Enrollment.InstanceID)
		// The custodian rewraps two keys to it: the KMS records the
		// release; the sidecar's next poll says it holds them.
		var wrapped api.WrappedKeys
		f.cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{used.EKB, ed.EKB}, WrappingCertPEM: sc.Enrollment.WrappingCertPEM}, &wrapped)
		var feed api.RevocationFeed
		sc.Client(t, f.env).MustDo(t, "GET", "/v1/revocations?keys_loaded=2", nil, &feed)
	}
	// Refused calls, for the error chart.
	for range 3 {
		if err := f.env.Anonymous().Do("GET", "/v1/tenants", nil, nil); err == nil {
			t.Fatal("GET /v1/tenants without a certificate succeeded")
		}
	}
	do("fleet, enrolled", chromedp.Reload(), visible("#ins-"+ids[0]), visible("#ins-"+ids[1]))
	if st := text("#ins-" + ids[1] + " .state"); st != "active" {
		t.Errorf("new instance state = %q, want active", st)
	}
	do("revoke an instance", click("#revoke-"+ids[1]), visible("#question"), click("#confirm"), visible("#done"), shot("fleet.png"))
	if st := text("#ins-" + ids[1] + " .state"); !strings.HasPrefix(st, "revoked") {
		t.Errorf("instance state after revoking = %q, want revoked", st)
	}

	// The audit trail, filtered by action; the chain is verified.
	do("audit", chromedp.Navigate(f.srv.URL+"/audit?action=datakey."), visible("#chain"), shot("audit.png"))
	if st := text("#chain"); !strings.HasPrefix(st, "Chain verified") {
		t.Errorf("audit chain status = %q, want verified", st)
	}
	do("metrics", chromedp.Navigate(f.srv.URL+"/metrics"), visible(".charts img"), shot("metrics.png"))
	if st := text("#totals"); strings.Contains(st, " 0 errors") || strings.Contains(st, " 0 keys released") {
		t.Errorf("metrics totals = %q, want the refused calls and the releases counted", st)
	}

	// Markup in a filter is shown as text, and no script runs.
	attack := `<script>window.pwned=1</script><img src=x onerror="window.pwned=2">`
	do("xss", chromedp.Navigate(f.srv.URL+"/audit?actor="+url.QueryEscape(attack)), visible("#audit"))
	pwned, err := chromedp.Run(bctx, chromedp.Evaluate[string](`typeof window.pwned`))
	if err != nil {
		t.Fatal(err)
	}
	field, err := chromedp.Run(bctx, chromedp.Value(chromedp.CSS(`input[name="actor"]`)))
	if err != nil {
		t.Fatal(err)
	}
	if pwned != "undefined" || field != attack {
		t.Errorf("after an XSS attempt: typeof window.pwned = %q, actor field = %q; want undefined and the text as typed", pwned, field)
	}
}
