package console_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/console"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// fixture is a real KMS (kmstest: HTTPS, SQLite, a data dir) with tenant
// acme, custodian payments-api and one data key, and a console for it on
// a real loopback socket.
type fixture struct {
	env      *kmstest.Env
	admin    *client.KMS
	cust     *kmstest.Client
	custDN   string
	keyID    string
	console  *console.Console
	srv      *httptest.Server
	loginURL string
}

func newFixture(t *testing.T, every time.Duration) *fixture {
	t.Helper()
	env := kmstest.Start(t, nil)
	env.Tenant(t, "acme")
	cust, creds := env.App(t, "acme", "payments-api", api.RoleCustodian)
	env.App(t, "acme", "deployer", api.RolePipeline)
	dk := cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	certPEM, keyPEM := env.AdminPEM(t)
	admin, err := client.NewKMS([]string{env.URL}, env.CAPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c, token, err := console.New(console.Config{KMS: admin, SampleEvery: every})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(func() { cancel(); <-done; srv.Close() })
	return &fixture{env: env, admin: admin, cust: cust, custDN: creds.DN, keyID: dk.KeyID, console: c, srv: srv,
		loginURL: console.LoginURL(srv.URL, token)}
}

// browser is an HTTP client that keeps cookies and does not follow
// redirects, so tests see each answer.
func (f *fixture) browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (f *fixture) login(t *testing.T, b *http.Client) {
	t.Helper()
	resp, err := b.Get(f.loginURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("GET login URL = %d, want 303", resp.StatusCode)
	}
}

func get(t *testing.T, b *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := b.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func TestNoSessionNoAnswer(t *testing.T) {
	f := newFixture(t, time.Hour)
	b := f.browser(t)
	for _, path := range []string{"/", "/tenants/acme", "/tenants/acme/keys", "/fleet", "/audit", "/metrics", "/metrics/requests",
		"/confirm/disable?key=" + f.keyID, "/static/console.css", "/nope"} {
		resp, err := b.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/login" {
			t.Errorf("GET %s without a session = %d (Location %q), want 302 to /login", path, resp.StatusCode, resp.Header.Get("Location"))
		}
		if strings.Contains(string(body), "acme") || strings.Contains(string(body), f.keyID) {
			t.Errorf("GET %s without a session shows data: %s", path, body)
		}
	}
	for _, path := range []string{"/keys/" + f.keyID + "/disable", "/tenants/acme/rotate", "/instances/ins_x/revoke", "/logout"} {
		resp, err := b.PostForm(f.srv.URL+path, url.Values{"csrf": {"anything"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST %s without a session = %d, want 401", path, resp.StatusCode)
		}
	}
	info, err := f.admin.DataKey(t.Context(), f.keyID)
	if err != nil || info.Disabled {
		t.Fatalf("DataKey(%s) = %+v, %v; want it still active", f.keyID, info, err)
	}
}

func TestLoginURLWorksOnce(t *testing.T) {
	f := newFixture(t, time.Hour)
	b := f.browser(t)
	resp, err := b.Get(f.loginURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "dcaas_console" {
			cookie = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || cookie == nil {
		t.Fatalf("GET login URL = %d with cookies %v, want 303 and a session cookie", resp.StatusCode, resp.Cookies())
	}
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/" || cookie.Secure {
		t.Errorf("session cookie = %+v, want HttpOnly, SameSite=Strict, Path=/, not Secure on plain HTTP (loopback)", cookie)
	}
	if code, body := get(t, b, f.srv.URL+"/"); code != http.StatusOK || !strings.Contains(body, `href="/tenants/acme"`) {
		t.Errorf("GET / with the session = %d, want 200 listing acme: %s", code, body)
	}
	other := f.browser(t)
	if code, _ := get(t, other, f.loginURL); code != http.StatusUnauthorized {
		t.Errorf("the login URL a second time = %d, want 401", code)
	}
	if code, _ := get(t, other, f.srv.URL+"/login?token=wrong"); code != http.StatusUnauthorized {
		t.Errorf("a wrong login token = %d, want 401", code)
	}
}

func TestCSRFRefused(t *testing.T) {
	f := newFixture(t, time.Hour)
	b := f.browser(t)
	f.login(t, b)
	u := f.srv.URL + "/keys/" + f.keyID + "/disable"
	for _, form := range []url.Values{{}, {"csrf": {"forged"}}, {"csrf": {""}}} {
		resp, err := b.PostForm(u, form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST disable with form %v = %d, want 403", form, resp.StatusCode)
		}
	}
	// A cross-site request is refused even with the right token.
	_, page := get(t, b, f.srv.URL+"/confirm/disable?tenant=acme&key="+f.keyID)
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the confirmation page has no CSRF field: %s", page)
	}
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(url.Values{"csrf": {m[1]}, "tenant": {"acme"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST with the right token = %d, want 403", resp.StatusCode)
	}
	info, err := f.admin.DataKey(t.Context(), f.keyID)
	if err != nil || info.Disabled {
		t.Fatalf("DataKey(%s) = %+v, %v; want it still active after refused requests", f.keyID, info, err)
	}
	// The same form with the session's token goes through.
	resp, err = b.PostForm(u, url.Values{"csrf": {m[1]}, "tenant": {"acme"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST disable with the token = %d, want 303", resp.StatusCode)
	}
	info, err = f.admin.DataKey(t.Context(), f.keyID)
	if err != nil || !info.Disabled {
		t.Fatalf("DataKey(%s) = %+v, %v; want it disabled", f.keyID, info, err)
	}
}

func TestXSSEscaped(t *testing.T) {
	f := newFixture(t, time.Hour)
	b := f.browser(t)
	f.login(t, b)
	const attack = `<script>alert("x")</script>`
	// Metadata the custodian chose, shown on the keys page.
	evil := f.cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Purpose: attack,
		Labels: map[string]string{"note": `"><img src=x onerror=alert(1)>`}})
	_, keys := get(t, b, f.srv.URL+"/tenants/acme/keys")
	if !strings.Contains(keys, evil.KeyID) || !strings.Contains(keys, "purpose: &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") ||
		!strings.Contains(keys, "note=&#34;&gt;&lt;img src=x") || strings.Contains(keys, "<script>alert") || strings.Contains(keys, "<img src=x") {
		t.Errorf("keys page with markup in a key's purpose and labels does not show them as text: %s", keys)
	}
	for _, path := range []string{
		"/audit?actor=" + url.QueryEscape(attack) + "&action=" + url.QueryEscape(`"><img src=x onerror=alert(1)>`),
		"/tenants/" + url.PathEscape(attack) + "/keys", // the KMS's error names the tenant
		"/confirm/disable?tenant=acme&key=" + url.QueryEscape(attack),
	} {
		_, body := get(t, b, f.srv.URL+path)
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
			t.Errorf("GET %s renders markup from the request: %s", path, body)
		}
		if !strings.Contains(body, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") && !strings.Contains(body, "&lt;script&gt;alert(&#34;x&#34;)") &&
			!strings.Contains(body, "%3Cscript%3E") {
			t.Errorf("GET %s does not show the name as text: %s", path, body)
		}
	}
}

func TestPagesShowTheRegistry(t *testing.T) {
	f := newFixture(t, 20*time.Millisecond)
	b := f.browser(t)
	f.login(t, b)
	sc := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	var tok api.EnrollmentToken
	f.cust.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{}, &tok)
	sc.Enroll(t, f.env.Anonymous(), tok.Token)
	id := sc.Enrollment.InstanceID
	var feed api.RevocationFeed
	sc.Client(t, f.env).MustDo(t, "GET", "/v1/revocations?keys_loaded=2", nil, &feed) // a poll, holding 2 keys

	for _, c := range []struct{ path, want string }{
		{"/", "version 1 current"},
		{"/tenants/acme", "CN=payments-api,O=acme"},
		{"/tenants/acme/keys", f.keyID},
		{"/fleet", id},
		{"/audit", "Chain verified"},
		{"/audit?action=datakey.create", "datakey.create"},
	} {
		code, body := get(t, b, f.srv.URL+c.path)
		if code != http.StatusOK || !strings.Contains(body, c.want) {
			t.Errorf("GET %s = %d, want 200 showing %q: %s", c.path, code, c.want, body)
		}
	}
	// The fleet row has the poll's time and key count and a certificate expiry.
	_, body := get(t, b, f.srv.URL+"/fleet")
	row := regexp.MustCompile(`(?s)<tr id="ins-` + id + `">.*?</tr>`).FindString(body)
	if strings.Count(row, "—") > 0 || !strings.Contains(row, `<td class="loaded">2</td>`) {
		t.Errorf("fleet row lacks a value, or does not show the 2 keys the sidecar holds: %s", row)
	}
	// The sampler reads /metrics every 20 ms: within a few, the chart
	// has a line.
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, svg := get(t, b, f.srv.URL+"/metrics/requests")
		if code == http.StatusOK && strings.Contains(svg, "<polyline") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /metrics/requests = %d, want an SVG line: %s", code, svg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestChanges makes the changes a confirmation page offers, through the
// form each one posts, and checks the KMS made them.
func TestChanges(t *testing.T) {
	f := newFixture(t, time.Hour)
	b := f.browser(t)
	f.login(t, b)
	var dk api.DataKey
	f.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &dk)
	var v2 api.DataKey
	f.cust.MustDo(t, "POST", "/v1/datakeys/"+dk.KeyID+"/versions", api.NewVersionRequest{EKB: dk.EKB}, &v2)

	// confirm opens the confirmation page and posts its form.
	confirm := func(page string) (int, string) {
		t.Helper()
		_, body := get(t, b, f.srv.URL+page)
		form := regexp.MustCompile(`<form method="post" action="([^"]+)">(?s:(.*?))</form>`).FindStringSubmatch(body)
		if form == nil {
			t.Fatalf("GET %s has no form: %s", page, body)
		}
		vals := url.Values{}
		for _, m := range regexp.MustCompile(`name="([^"]+)" value="([^"]*)"`).FindAllStringSubmatch(form[2], -1) {
			vals.Set(m[1], m[2])
		}
		action := strings.ReplaceAll(form[1], "&amp;", "&")
		resp, err := b.PostForm(f.srv.URL+action, vals)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			out, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(out)
		}
		return get(t, b, f.srv.URL+resp.Header.Get("Location"))
	}

	if code, body := confirm("/confirm/rotate?tenant=acme"); !strings.Contains(body, "master key version 2 is current") || !strings.Contains(body, "version 2 current") {
		t.Errorf("after rotating, the tenants page = %d %s, want version 2 and the message", code, body)
	}
	if _, body := get(t, b, f.srv.URL+"/"); strings.Contains(body, `id="done"`) {
		t.Errorf("the change's message shows twice: %s", body)
	}
	if _, body := confirm("/confirm/retire?tenant=acme&key=" + dk.KeyID + "&version=2"); !strings.Contains(body, "versions below 2 are retired") {
		t.Errorf("after retiring, the keys page = %s, want the message", body)
	}
	info, err := f.admin.DataKey(t.Context(), dk.KeyID)
	if err != nil || info.MinDecryptionVersion != 2 {
		t.Errorf("DataKey(%s) = %+v, %v; want min decryption version 2", dk.KeyID, info, err)
	}
	// A key the KMS retains, rotated through the console; its KCV shows.
	var kept api.DataKey
	f.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true}, &kept)
	if _, body := get(t, b, f.srv.URL+"/tenants/acme/keys"); !strings.Contains(body, `id="rotate-`+kept.KeyID+`"`) || strings.Contains(body, `id="rotate-`+dk.KeyID+`"`) ||
		!strings.Contains(body, "<code>"+kept.KCV+"</code>") {
		t.Errorf("keys page: want a rotate button for the retained key only, and its KCV %s: %s", kept.KCV, body)
	}
	if _, body := confirm("/confirm/rotate-key?tenant=acme&key=" + kept.KeyID); !strings.Contains(body, "version 2 is current") {
		t.Errorf("after rotating a key, the keys page = %s, want the message", body)
	}
	if info, err := f.admin.DataKey(t.Context(), kept.KeyID); err != nil || info.CurrentVersion != 2 {
		t.Errorf("DataKey(%s) = %+v, %v; want current version 2", kept.KeyID, info, err)
	}
	// A key only its custodian holds: the KMS refuses, the console says so
	// with the KMS's status (a refusal, not a failure of the KMS: not 502).
	_, refusal := f.admin.RotateDataKey(t.Context(), dk.KeyID)
	want := kmstest.APIError(refusal)
	if want == nil || want.Status/100 != 4 {
		t.Fatalf("RotateDataKey(%s) as admin = %v, want a 4xx refusal", dk.KeyID, refusal)
	}
	if code, body := confirm("/confirm/rotate-key?tenant=acme&key=" + dk.KeyID); code != want.Status || !strings.Contains(body, "not retained") {
		t.Errorf("rotating a key the KMS does not retain = %d %s, want %d and the KMS's refusal", code, body, want.Status)
	}

	// An instance, revoked through the console.
	sc := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	var tok api.EnrollmentToken
	f.cust.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{}, &tok)
	sc.Enroll(t, f.env.Anonymous(), tok.Token)
	if _, body := confirm("/confirm/revoke?id=" + sc.Enrollment.InstanceID); !strings.Contains(body, "is revoked") {
		t.Errorf("after revoking, the fleet page = %s, want the message", body)
	}
	fleet, err := f.admin.Fleet(t.Context(), "acme")
	if err != nil || len(fleet) != 1 || !fleet[0].Revoked {
		t.Errorf("Fleet(acme) = %+v, %v; want the instance revoked", fleet, err)
	}
	// A refusal by the KMS shows as an error page, not as done.
	if code, body := confirm("/confirm/retire?tenant=acme&key=" + dk.KeyID + "&version=1"); code/100 != 4 || !strings.Contains(body, "The KMS refused") {
		t.Errorf("retiring below an already retired version = %d %s, want the KMS's 4xx with its refusal", code, body)
	}
	// The KMS gone: 502, it did not refuse anything.
	f.env.Stop()
	if code, _ := confirm("/confirm/retire?tenant=acme&key=" + dk.KeyID + "&version=3"); code != http.StatusBadGateway {
		t.Errorf("a change with the KMS down = %d, want 502", code)
	}
}

// TestSecureCookieOnTLS: served over HTTPS, the session cookie is Secure.
func TestSecureCookieOnTLS(t *testing.T) {
	f := newFixture(t, time.Hour)
	c, token, err := console.New(console.Config{KMS: f.admin, TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(c.Handler())
	defer srv.Close()
	b := srv.Client()
	b.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := b.Get(console.LoginURL(srv.URL, token))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cookies) != 1 || !cookies[0].Secure || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("login over TLS = %d with cookies %+v, want 303 and one Secure, HttpOnly, SameSite=Strict cookie", resp.StatusCode, cookies)
	}
}
