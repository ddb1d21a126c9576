package sidecar_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	openbao "github.com/openbao/openbao/api/v2"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/transit"
	"github.com/dcaas/dcaas/sidecar"
)

// baoClient is the real OpenBao Go client talking to the sidecar's Unix
// socket, the way BAO_ADDR=unix://… configures it. Its token is sent and
// ignored: the peer binding decides.
func baoClient(t testing.TB, socket string) *openbao.Client {
	t.Helper()
	cfg := openbao.DefaultConfig()
	cfg.MaxRetries = 0
	if err := cfg.Error; err != nil {
		t.Fatal(err)
	}
	cfg.Address = "unix://" + socket
	c, err := openbao.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken("s.not-checked-by-dcaas")
	return c
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// write is Logical().Write that fails the test on error.
func write(t testing.TB, c *openbao.Client, path string, data map[string]any) *openbao.Secret {
	t.Helper()
	s, err := c.Logical().WriteWithContext(t.Context(), path, data)
	if err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	if s == nil || s.Data == nil {
		t.Fatalf("write %s: no data", path)
	}
	return s
}

// wantBaoError checks that err is the OpenBao client's ResponseError with
// status and an "errors" list that contains want.
func wantBaoError(t testing.TB, err error, status int, want string) {
	t.Helper()
	var re *openbao.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("error = %v, want an OpenBao ResponseError %d", err, status)
	}
	if re.StatusCode != status || re.RawError || len(re.Errors) != 1 || !strings.Contains(re.Errors[0], want) {
		t.Fatalf("error = %d %q (raw %v), want %d with one error containing %q", re.StatusCode, re.Errors, re.RawError, status, want)
	}
}

func str(t testing.TB, s *openbao.Secret, field string) string {
	t.Helper()
	v, ok := s.Data[field].(string)
	if !ok {
		t.Fatalf("data[%q] = %#v, want a string (data %v)", field, s.Data[field], s.Data)
	}
	return v
}

func num(t testing.TB, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%#v is not a JSON number", v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// loadVersion rewraps more EKBs (e.g. a new version of a loaded key) to
// the sidecar and imports them.
func (f *fixture) loadEKBs(t testing.TB, ekbs ...[]byte) {
	t.Helper()
	var cert api.WrappingCertificate
	f.do(t, "GET", "/v1/wrapping-certificate", nil, &cert)
	var wrapped api.WrappedKeys
	f.cust.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: ekbs, WrappingCertPEM: cert.CertPEM}, &wrapped)
	f.do(t, "POST", "/v1/keys/import", &wrapped, nil)
}

func TestTransitWithOpenBaoClient(t *testing.T) {
	f := newFixture(t, nil)
	dks := f.load(t,
		api.CreateDataKeyRequest{Type: api.KeyAES256GCM},
		api.CreateDataKeyRequest{Type: api.KeyHMACSHA256},
		api.CreateDataKeyRequest{Type: api.KeyEd25519},
		api.CreateDataKeyRequest{Type: api.KeyECDSAP256},
	)
	aes := dks[0]
	for i, name := range []string{"payments", "tags", "receipts", "webhooks"} {
		var kn api.KeyName
		f.do(t, "PUT", "/v1/keys/"+dks[i].KeyID+"/name", api.SetKeyNameRequest{Name: name}, &kn)
		if kn != (api.KeyName{Name: name, KeyID: dks[i].KeyID}) {
			t.Fatalf("PUT name = %+v", kn)
		}
	}
	bao := baoClient(t, f.socket)

	t.Run("encrypt and decrypt, by name and by key id", func(t *testing.T) {
		for _, name := range []string{"payments", aes.KeyID} {
			enc := write(t, bao, "transit/encrypt/"+name, map[string]any{"plaintext": b64("card 4111"), "associated_data": b64("order-1")})
			ct := str(t, enc, "ciphertext")
			if !strings.HasPrefix(ct, "vault:v1:") || num(t, enc.Data["key_version"]) != 1 {
				t.Fatalf("encrypt = %v", enc.Data)
			}
			// The payload is a dcaas ciphertext the native API opens.
			_, raw, err := transit.ParseValue(ct)
			if err != nil {
				t.Fatal(err)
			}
			var dec api.DecryptResponse
			f.do(t, "POST", "/v1/crypto/decrypt", api.DecryptRequest{Ciphertext: raw, AAD: []byte("order-1")}, &dec)
			if string(dec.Plaintext) != "card 4111" {
				t.Fatalf("native decrypt of a transit ciphertext = %q", dec.Plaintext)
			}
			pt := write(t, bao, "transit/decrypt/"+name, map[string]any{"ciphertext": ct, "associated_data": b64("order-1")})
			if str(t, pt, "plaintext") != b64("card 4111") {
				t.Fatalf("decrypt = %v", pt.Data)
			}
			_, err = bao.Logical().Write("transit/decrypt/"+name, map[string]any{"ciphertext": ct, "associated_data": b64("order-2")})
			wantBaoError(t, err, 400, "does not decrypt")
		}
	})

	t.Run("batch", func(t *testing.T) {
		in := []any{
			map[string]any{"plaintext": b64("one"), "reference": "a"},
			map[string]any{"plaintext": b64("two"), "reference": "b", "associated_data": b64("x")},
			map[string]any{"plaintext": ""},
		}
		enc := write(t, bao, "transit/encrypt/payments", map[string]any{"batch_input": in})
		res := enc.Data["batch_results"].([]any)
		if len(res) != 3 {
			t.Fatalf("batch_results = %v", res)
		}
		var dec []any
		for i, r := range res {
			m := r.(map[string]any)
			if m["error"] != nil || !strings.HasPrefix(m["ciphertext"].(string), "vault:v1:") {
				t.Fatalf("item %d = %v", i, m)
			}
			item := map[string]any{"ciphertext": m["ciphertext"], "reference": m["reference"]}
			if i == 1 {
				item["associated_data"] = b64("x")
			}
			dec = append(dec, item)
		}
		if res[0].(map[string]any)["reference"] != "a" || res[1].(map[string]any)["reference"] != "b" {
			t.Fatalf("references not kept: %v", res)
		}
		out := write(t, bao, "transit/decrypt/payments", map[string]any{"batch_input": dec})
		got := out.Data["batch_results"].([]any)
		for i, want := range []string{b64("one"), b64("two"), ""} {
			if p := got[i].(map[string]any)["plaintext"]; p != want {
				t.Fatalf("batch decrypt item %d = %v, want %q", i, got[i], want)
			}
		}
		// A failing item: 400 with the results (transit's rule), unless
		// partial_failure_response_code says otherwise.
		mixed := []any{dec[0], map[string]any{"ciphertext": "vault:v1:AAAA"}}
		_, err := bao.Logical().Write("transit/decrypt/payments", map[string]any{"batch_input": mixed})
		var re *openbao.ResponseError
		if !errors.As(err, &re) || re.StatusCode != 400 {
			t.Fatalf("batch with a bad item: %v, want 400", err)
		}
		part := write(t, bao, "transit/decrypt/payments", map[string]any{"batch_input": mixed, "partial_failure_response_code": 207})
		items := part.Data["batch_results"].([]any)
		if items[0].(map[string]any)["plaintext"] != b64("one") || !strings.Contains(items[1].(map[string]any)["error"].(string), "invalid ciphertext") {
			t.Fatalf("partial batch = %v", items)
		}
	})

	t.Run("datakey", func(t *testing.T) {
		for _, kind := range []string{"plaintext", "wrapped"} {
			dk := write(t, bao, "transit/datakey/"+kind+"/payments", map[string]any{"bits": 512})
			ct := str(t, dk, "ciphertext")
			pt := write(t, bao, "transit/decrypt/payments", map[string]any{"ciphertext": ct})
			key, err := base64.StdEncoding.DecodeString(str(t, pt, "plaintext"))
			if err != nil || len(key) != 64 {
				t.Fatalf("datakey %s decrypts to %d bytes, %v; want 64", kind, len(key), err)
			}
			if kind == "plaintext" && str(t, dk, "plaintext") != str(t, pt, "plaintext") {
				t.Fatal("datakey/plaintext's plaintext differs from its ciphertext's")
			}
			if _, ok := dk.Data["plaintext"]; kind == "wrapped" && ok {
				t.Fatal("datakey/wrapped returned the plaintext key")
			}
		}
	})

	t.Run("hmac, sign, verify", func(t *testing.T) {
		h := str(t, write(t, bao, "transit/hmac/tags", map[string]any{"input": b64("msg")}), "hmac")
		if !strings.HasPrefix(h, "vault:v1:") {
			t.Fatalf("hmac = %q", h)
		}
		for _, tc := range []struct {
			data  map[string]any
			valid bool
		}{
			{map[string]any{"input": b64("msg"), "hmac": h}, true},
			{map[string]any{"input": b64("other"), "hmac": h}, false},
		} {
			v := write(t, bao, "transit/verify/tags", tc.data)
			if v.Data["valid"] != tc.valid {
				t.Fatalf("verify hmac %v = %v, want %v", tc.data, v.Data, tc.valid)
			}
		}
		for _, name := range []string{"receipts", "webhooks"} {
			s := write(t, bao, "transit/sign/"+name+"/sha2-256", map[string]any{"input": b64("msg")})
			sig := str(t, s, "signature")
			if !strings.HasPrefix(sig, "vault:v1:") || num(t, s.Data["key_version"]) != 1 {
				t.Fatalf("sign %s = %v", name, s.Data)
			}
			batch := write(t, bao, "transit/verify/"+name, map[string]any{"batch_input": []any{
				map[string]any{"input": b64("msg"), "signature": sig},
				map[string]any{"input": b64("MSG"), "signature": sig},
				map[string]any{"input": b64("msg"), "signature": "vault:v9:" + strings.SplitN(sig, ":", 3)[2]},
			}})
			r := batch.Data["batch_results"].([]any)
			if r[0].(map[string]any)["valid"] != true || r[1].(map[string]any)["valid"] != false || r[2].(map[string]any)["error"] == nil {
				t.Fatalf("verify batch %s = %v", name, r)
			}
		}
	})

	t.Run("keys read", func(t *testing.T) {
		for _, tc := range []struct{ name, typ string }{{"payments", "aes256-gcm96"}, {"tags", "hmac"}, {"receipts", "ed25519"}, {"webhooks", "ecdsa-p256"}} {
			s, err := bao.Logical().Read("transit/keys/" + tc.name)
			if err != nil || s == nil {
				t.Fatalf("read %s = %v, %v", tc.name, s, err)
			}
			keys, _ := s.Data["keys"].(map[string]any)
			if s.Data["type"] != tc.typ || s.Data["name"] != tc.name || num(t, s.Data["latest_version"]) != 1 || keys["1"] == nil {
				t.Fatalf("read %s = %v", tc.name, s.Data)
			}
		}
		s, err := bao.Logical().Read("transit/keys/nothing-by-this-name")
		if s != nil || err != nil {
			t.Fatalf("read of an unknown key = %v, %v; want nil, nil (transit's 404)", s, err)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		big := strings.Repeat("A", 2<<20)
		for _, tc := range []struct {
			name, path string
			data       map[string]any
			status     int
			want       string
		}{
			{"unknown key", "transit/encrypt/nope", map[string]any{"plaintext": b64("x")}, 400, "encryption key not found"},
			{"bad base64", "transit/encrypt/payments", map[string]any{"plaintext": "%%%"}, 400, "base64"},
			{"missing plaintext", "transit/encrypt/payments", map[string]any{}, 400, "missing plaintext"},
			{"derived keys", "transit/encrypt/payments", map[string]any{"plaintext": b64("x"), "context": b64("c")}, 400, "not supported"},
			{"old key version", "transit/encrypt/payments", map[string]any{"plaintext": b64("x"), "key_version": 7}, 400, "newer than the latest"},
			{"not a transit ciphertext", "transit/decrypt/payments", map[string]any{"ciphertext": "v1:abc"}, 400, "invalid ciphertext"},
			{"wrong key type", "transit/encrypt/tags", map[string]any{"plaintext": b64("x")}, 400, "does not support"},
			{"other key's ciphertext", "transit/decrypt/tags", map[string]any{"ciphertext": str(t, write(t, bao, "transit/encrypt/payments", map[string]any{"plaintext": b64("x")}), "ciphertext")}, 400, "under key"},
			{"hmac algorithm", "transit/hmac/tags/sha2-512", map[string]any{"input": b64("x")}, 400, "unsupported algorithm"},
			{"jws", "transit/sign/webhooks", map[string]any{"input": b64("x"), "marshaling_algorithm": "jws"}, 400, "not supported"},
			{"oversized", "transit/encrypt/payments", map[string]any{"plaintext": big}, 413, "too large"},
			{"unsupported path", "transit/export/encryption-key/payments", map[string]any{}, 404, "unsupported path"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := bao.Logical().Write(tc.path, tc.data)
				wantBaoError(t, err, tc.status, tc.want)
			})
		}
		// Malformed JSON, and a method a route does not take.
		for _, tc := range []struct {
			method, body string
			status       int
		}{{"POST", `{"plaintext":`, 400}, {"DELETE", ``, 405}} {
			resp := rawTransit(t, f.socket, tc.method, "/v1/transit/encrypt/payments", tc.body)
			var body struct{ Errors []string }
			if resp.status != tc.status || json.Unmarshal(resp.body, &body) != nil || len(body.Errors) != 1 {
				t.Fatalf("%s %q = %d %s, want %d with one error", tc.method, tc.body, resp.status, resp.body, tc.status)
			}
		}
	})

	t.Run("rotation: a second version encrypts, the first still decrypts, rewrap moves", func(t *testing.T) {
		old := str(t, write(t, bao, "transit/encrypt/payments", map[string]any{"plaintext": b64("before")}), "ciphertext")
		var v2 api.DataKey
		f.cust.MustDo(t, "POST", "/v1/datakeys/"+aes.KeyID+"/versions", api.NewVersionRequest{EKB: aes.EKB}, &v2)
		f.loadEKBs(t, v2.EKB)
		enc := write(t, bao, "transit/encrypt/payments", map[string]any{"plaintext": b64("after")})
		if ct := str(t, enc, "ciphertext"); !strings.HasPrefix(ct, "vault:v2:") || num(t, enc.Data["key_version"]) != 2 {
			t.Fatalf("encrypt after rotation = %v", enc.Data)
		}
		if p := str(t, write(t, bao, "transit/decrypt/payments", map[string]any{"ciphertext": old}), "plaintext"); p != b64("before") {
			t.Fatalf("v1 ciphertext decrypts to %q", p)
		}
		rw := write(t, bao, "transit/rewrap/payments", map[string]any{"ciphertext": old})
		moved := str(t, rw, "ciphertext")
		if !strings.HasPrefix(moved, "vault:v2:") || num(t, rw.Data["key_version"]) != 2 {
			t.Fatalf("rewrap = %v", rw.Data)
		}
		if p := str(t, write(t, bao, "transit/decrypt/payments", map[string]any{"ciphertext": moved}), "plaintext"); p != b64("before") {
			t.Fatalf("rewrapped ciphertext decrypts to %q", p)
		}
		s, err := bao.Logical().Read("transit/keys/payments")
		if err != nil || num(t, s.Data["latest_version"]) != 2 || num(t, s.Data["min_decryption_version"]) != 1 {
			t.Fatalf("read after rotation = %v, %v", s, err)
		}
		// A prefix that disagrees with the ciphertext's header is refused.
		_, raw, _ := transit.ParseValue(moved)
		_, err = bao.Logical().Write("transit/decrypt/payments", map[string]any{"ciphertext": transit.FormatValue(1, raw)})
		wantBaoError(t, err, 400, "prefix says version 1")
	})

	t.Run("with the KMS down", func(t *testing.T) {
		f.env.Stop()
		defer f.env.Restart()
		ct := str(t, write(t, bao, "transit/encrypt/payments", map[string]any{"plaintext": b64("offline")}), "ciphertext")
		if p := str(t, write(t, bao, "transit/decrypt/payments", map[string]any{"ciphertext": ct}), "plaintext"); p != b64("offline") {
			t.Fatalf("decrypt with the KMS down = %q", p)
		}
	})
}

func TestTransitRefusesOtherPeers(t *testing.T) {
	f := newFixture(t, func(c *sidecar.Config) { c.AllowUIDs = []int{os.Getuid() + 4242} })
	_, err := baoClient(t, f.socket).Logical().Write("transit/encrypt/payments", map[string]any{"plaintext": b64("x")})
	wantBaoError(t, err, 403, "permission denied")
	resp := rawTransit(t, f.socket, "GET", "/v1/transit/no/such/path", "")
	if resp.status != 403 {
		t.Fatalf("unknown path from another uid = %d %s, want 403 (the binding is checked first)", resp.status, resp.body)
	}
}

func TestTransitOverMutualTLS(t *testing.T) {
	f := newFixture(t, nil)
	dks := f.load(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	f.do(t, "PUT", "/v1/keys/"+dks[0].KeyID+"/name", api.SetKeyNameRequest{Name: "payments"}, nil)
	addr := e2e.ServeMutualTLS(t, f.sc)

	dir := t.TempDir()
	writeFile := func(name, content string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca := writeFile("ca.pem", string(f.env.CAPEM))
	_, other := f.env.App(t, "acme", "reporting", api.RoleCustodian)
	for _, tc := range []struct {
		name, cert, key string
		status          int
	}{
		{"bound custodian", f.creds.CertPEM, f.creds.KeyPEM, 200},
		{"another custodian", other.CertPEM, other.KeyPEM, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := openbao.DefaultConfig()
			cfg.MaxRetries = 0
			cfg.Address = "https://" + addr
			if err := cfg.ConfigureTLS(&openbao.TLSConfig{
				CACert: ca, ClientCert: writeFile(tc.name+".pem", tc.cert), ClientKey: writeFile(tc.name+".key", tc.key),
				TLSServerName: f.sc.ServerName(),
			}); err != nil {
				t.Fatal(err)
			}
			c, err := openbao.NewClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			s, err := c.Logical().Write("transit/encrypt/payments", map[string]any{"plaintext": b64("over tls")})
			if tc.status == 200 {
				if err != nil || !strings.HasPrefix(s.Data["ciphertext"].(string), "vault:v1:") {
					t.Fatalf("encrypt over mTLS = %v, %v", s, err)
				}
				return
			}
			wantBaoError(t, err, tc.status, "permission denied")
		})
	}
}

func TestKeyNames(t *testing.T) {
	f := newFixture(t, nil)
	dks := f.load(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	a, b := dks[0].KeyID, dks[1].KeyID
	put := func(id, name string) error {
		return f.local.Do(t.Context(), "PUT", "/v1/keys/"+id+"/name", api.SetKeyNameRequest{Name: name}, nil)
	}
	if err := put(a, "payments"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id, name string
		status   int
		code     api.Code
	}{
		{b, "payments", 409, api.CodeConflict},
		{"key_not_loaded", "other", 404, api.CodeNotFound},
		{b, "bad name!", 400, api.CodeInvalidArgument},
		{b, "", 400, api.CodeInvalidArgument},
		{b, a, 400, api.CodeInvalidArgument},
		{b, strings.Repeat("n", 129), 400, api.CodeInvalidArgument},
		{b, "key_abc", 400, api.CodeInvalidArgument},
		{b, "drv_abc", 400, api.CodeInvalidArgument},
	} {
		kmstest.WantError(t, put(tc.id, tc.name), tc.status, tc.code)
	}
	if err := put(a, "billing"); err != nil { // renames
		t.Fatal(err)
	}
	if err := put(b, "payments"); err != nil { // the freed name
		t.Fatal(err)
	}
	var names api.KeyNames
	f.do(t, "GET", "/v1/keys/names", nil, &names)
	want := []api.KeyName{{Name: "billing", KeyID: a}, {Name: "payments", KeyID: b}}
	if len(names.Names) != 2 || names.Names[0] != want[0] || names.Names[1] != want[1] {
		t.Fatalf("names = %+v, want %+v", names.Names, want)
	}
	var removed api.KeyName
	f.do(t, "DELETE", "/v1/keys/"+a+"/name", nil, &removed)
	if removed != want[0] || f.sc.ResolveKeyName("billing") != "billing" || f.sc.ResolveKeyName("payments") != b {
		t.Fatalf("after DELETE: removed %+v, billing → %s", removed, f.sc.ResolveKeyName("billing"))
	}
	kmstest.WantError(t, f.local.Do(t.Context(), "DELETE", "/v1/keys/"+a+"/name", nil, nil), 404, api.CodeNotFound)
}

type rawResp struct {
	status int
	body   []byte
}

// rawTransit sends a request the OpenBao client would not (malformed JSON,
// other methods) over the socket.
func rawTransit(t testing.TB, socket, method, path, body string) rawResp {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	req, err := http.NewRequestWithContext(t.Context(), method, "http://sidecar"+path, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rawResp{resp.StatusCode, b}
}

// TestTransitRevokedKey: once the KMS disables a key the sidecar holds,
// transit answers every use of it, with or without key_version, with
// transit's "permission denied" (403, dcaas's revoked), never "encryption
// key not found" as for a key that was never loaded. (Issue 15: a key
// evicted on revocation answered not found.)
func TestTransitRevokedKey(t *testing.T) {
	f := newFixture(t, nil)
	dk := f.load(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})[0]
	f.do(t, "PUT", "/v1/keys/"+dk.KeyID+"/name", api.SetKeyNameRequest{Name: "payments"}, nil)
	bao := baoClient(t, f.socket)
	write(t, bao, "transit/encrypt/payments", map[string]any{"plaintext": b64("x")})
	f.cust.MustDo(t, "DELETE", "/v1/datakeys/"+dk.KeyID, nil, nil)
	eventually(t, "the key evicted", func() error {
		if _, err := bao.Logical().WriteWithContext(t.Context(), "transit/encrypt/payments", map[string]any{"plaintext": b64("x")}); err == nil {
			return errors.New("transit still encrypts with the disabled key")
		}
		return nil
	})
	for _, data := range []map[string]any{
		{"plaintext": b64("x")},
		{"plaintext": b64("x"), "key_version": 1},
	} {
		_, err := bao.Logical().WriteWithContext(t.Context(), "transit/encrypt/"+dk.KeyID, data)
		wantBaoError(t, err, 403, "permission denied")
	}
}
