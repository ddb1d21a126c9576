package client

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/wire"
)

// recordSleeps makes a client's backoff instant and records the waits.
func recordSleeps(waits *[]time.Duration, mu *sync.Mutex) Option {
	return func(o *options) {
		o.sleep = func(ctx context.Context, d time.Duration) error {
			mu.Lock()
			*waits = append(*waits, d)
			mu.Unlock()
			return ctx.Err()
		}
	}
}

// tlsServer starts an httptest TLS server counting its requests.
func tlsServer(t *testing.T, h func(n int, w http.ResponseWriter, r *http.Request)) (*httptest.Server, *atomic.Int32, []byte) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(int(hits.Add(1)), w, r)
	}))
	t.Cleanup(srv.Close)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return srv, &hits, caPEM
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, code api.Code, msg string) {
	writeJSON(w, code.Status(), api.ErrorBody{Error: &api.Error{Code: code, Message: msg}})
}

func healthy(_ int, w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, 200, api.Health{Status: "ok"})
}

// deadURL is an https URL on which nothing listens.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "https://" + addr
}

func newTestKMS(t *testing.T, urls []string, caPEM []byte, opts ...Option) *KMS {
	t.Helper()
	k, err := NewKMS(urls, caPEM, nil, nil, opts...)
	if err != nil {
		t.Fatalf("NewKMS: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func TestFailoverToSecondURL(t *testing.T) {
	srv, hits, caPEM := tlsServer(t, healthy)
	var waits []time.Duration
	var mu sync.Mutex
	k := newTestKMS(t, []string{deadURL(t), srv.URL}, caPEM, recordSleeps(&waits, &mu))

	if _, err := k.Health(t.Context()); err != nil {
		t.Fatalf("Health with the first URL down = %v, want the second URL used", err)
	}
	// Not idempotent: a dial error still fails over, since nothing was sent.
	if _, err := k.CreateTenant(t.Context(), "acme"); err != nil {
		t.Fatalf("CreateTenant = %v", err)
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("second URL served %d requests, want 2", n)
	}
	if len(waits) != 0 {
		t.Fatalf("waited %v before trying a fresh URL, want no wait", waits)
	}
	if got := k.t.pref.Load(); got != 1 {
		t.Fatalf("preferred URL = %d, want 1 (the one that answered)", got)
	}
}

func TestRetry503ThenSuccess(t *testing.T) {
	srv, hits, caPEM := tlsServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n < 3 {
			apiError(w, api.CodeUnavailable, "The store is down.")
			return
		}
		writeJSON(w, 200, api.Tenant{Name: "acme", MasterKeyVersion: 1})
	})
	var waits []time.Duration
	var mu sync.Mutex
	k := newTestKMS(t, []string{srv.URL}, caPEM, recordSleeps(&waits, &mu), WithRetry(5, 10*time.Millisecond, 25*time.Millisecond))
	ten, err := k.CreateTenant(t.Context(), "acme") // not idempotent: 503 is still retried
	if err != nil || ten.Name != "acme" {
		t.Fatalf("CreateTenant = %+v, %v; want acme after two 503s", ten, err)
	}
	if n := hits.Load(); n != 3 {
		t.Fatalf("server saw %d attempts, want 3", n)
	}
	if len(waits) != 2 || waits[0] < 5*time.Millisecond || waits[0] > 10*time.Millisecond || waits[1] < 10*time.Millisecond || waits[1] > 20*time.Millisecond {
		t.Fatalf("waits = %v, want one in [5ms,10ms] then one in [10ms,20ms]", waits)
	}
}

func TestRetryGivesUp(t *testing.T) {
	srv, hits, caPEM := tlsServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		apiError(w, api.CodeUnavailable, "The store is down.")
	})
	var waits []time.Duration
	var mu sync.Mutex
	k := newTestKMS(t, []string{srv.URL}, caPEM, recordSleeps(&waits, &mu), WithRetry(3, time.Millisecond, time.Millisecond))
	_, err := k.Health(t.Context())
	var e *Error
	if !errors.As(err, &e) || e.Status != 503 || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Health = %v, want the last 503 as *Error", err)
	}
	if n := hits.Load(); n != 3 {
		t.Fatalf("server saw %d attempts, want 3", n)
	}
}

func TestNoRetryOfClientErrors(t *testing.T) {
	for _, code := range []api.Code{api.CodeInvalidArgument, api.CodeForbidden, api.CodeAlreadyUsed, api.CodeInternal} {
		t.Run(string(code), func(t *testing.T) {
			srv, hits, caPEM := tlsServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
				apiError(w, code, "No.")
			})
			k := newTestKMS(t, []string{srv.URL, srv.URL}, caPEM, WithRetry(4, time.Millisecond, time.Millisecond))
			_, err := k.Encrypt(t.Context(), api.KeyRef{KeyID: "key_x"}, []byte("x"), nil)
			if !errors.Is(err, &Error{Code: code}) {
				t.Fatalf("Encrypt = %v, want code %s", err, code)
			}
			if n := hits.Load(); n != 1 {
				t.Fatalf("server saw %d attempts, want 1", n)
			}
		})
	}
}

// A connection that breaks after the request was sent: the server may
// have acted, so only idempotent requests are sent again.
func TestBrokenConnectionRetriedOnlyWhenIdempotent(t *testing.T) {
	srv, hits, caPEM := tlsServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n%2 == 1 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		writeJSON(w, 200, api.EncryptResponse{KeyID: "key_x", KeyVersion: 1})
	})
	k := newTestKMS(t, []string{srv.URL}, caPEM, WithRetry(3, time.Millisecond, time.Millisecond))
	if _, err := k.Encrypt(t.Context(), api.KeyRef{KeyID: "key_x"}, []byte("x"), nil); err != nil {
		t.Fatalf("Encrypt (idempotent) = %v, want success on the second attempt", err)
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("server saw %d attempts, want 2", n)
	}
	_, err := k.CreateDataKey(t.Context(), api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	var e *Error
	if err == nil || errors.As(err, &e) {
		t.Fatalf("CreateDataKey over a broken connection = %v, want the transport error", err)
	}
	if n := hits.Load(); n != 3 {
		t.Fatalf("server saw %d attempts, want 3 (CreateDataKey sent once)", n)
	}
}

func TestRetryStopsWithContext(t *testing.T) {
	srv, hits, caPEM := tlsServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		apiError(w, api.CodeUnavailable, "Down.")
	})
	k := newTestKMS(t, []string{srv.URL}, caPEM, WithRetry(100, time.Hour, time.Hour))
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := k.Health(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Health = %v, want the 503 joined with the deadline", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Health took %v after its deadline", d)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("server saw %d attempts, want 1", n)
	}
}

func TestCertificateErrorsNotRetried(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { healthy(0, w, r) }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	// Trust only a CA with no relation to the server's certificate.
	foreign := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: foreignCert(t)})
	k := newTestKMS(t, []string{srv.URL}, foreign, WithRetry(4, time.Millisecond, time.Millisecond))
	_, err := k.Health(t.Context())
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("Health against an untrusted server = %v, want x509.UnknownAuthorityError", err)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("server saw %d connections, want 1 (no retry)", n)
	}
}

func foreignCert(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "foreign CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestDelayBounds(t *testing.T) {
	tr := newTransport([]string{"https://x"}, nil, []Option{WithRetry(10, 100*time.Millisecond, time.Second)})
	for k, want := range []time.Duration{100, 200, 400, 800, 1000, 1000, 1000} {
		want *= time.Millisecond
		for range 50 {
			if d := tr.delay(k); d < want/2 || d > want {
				t.Fatalf("delay(%d) = %v, want in [%v, %v]", k, d, want/2, want)
			}
		}
	}
}

func TestBaseURLValidation(t *testing.T) {
	for _, u := range []string{"", "kms:8443", "http://kms:8443", "https://", "https://kms/?a=b", "ftp://kms"} {
		if _, err := NewKMS([]string{u}, nil, nil, nil); err == nil {
			t.Errorf("NewKMS(%q) accepted", u)
		}
	}
	if _, err := NewKMS(nil, nil, nil, nil); err == nil {
		t.Error("NewKMS(no URLs) accepted")
	}
	k, err := NewKMS([]string{"https://kms:8443/"}, nil, nil, nil)
	if err != nil || k.t.urls[0] != "https://kms:8443" {
		t.Fatalf("NewKMS(trailing slash) = %v, %v", k, err)
	}
	if _, err := NewKMS([]string{"https://kms"}, nil, []byte("cert"), nil); err == nil {
		t.Error("NewKMS accepted a certificate without its key")
	}
	if _, err := NewKMS([]string{"https://kms"}, []byte("not pem"), nil, nil); err == nil {
		t.Error("NewKMS accepted a CA PEM without a certificate")
	}
}

// TestClientUsesWire: the SDK sends the hot requests as internal/wire
// writes them (the servers' fast decoder expects nothing else) and decodes
// the answers, over a real socket; Do sends a json.RawMessage as it is.
func TestClientUsesWire(t *testing.T) {
	in := &api.EncryptRequest{KeyRef: api.KeyRef{KeyID: "key_a"}, Plaintext: []byte("hello"), AAD: []byte("a")}
	want, _ := wire.Append(nil, in)
	raw := json.RawMessage(`{"odd" :1}`)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/v1/crypto/encrypt":
			if string(got) != string(want) {
				t.Errorf("request body = %s, want %s", got, want)
			}
		default:
			if string(got) != string(raw) {
				t.Errorf("raw request body = %s, want %s", got, raw)
			}
		}
		b, _ := wire.Append(nil, &api.EncryptResponse{Ciphertext: []byte{9}, KeyID: "key_a", KeyVersion: 3, Warning: "rotate"})
		w.Write(b)
	}))
	defer srv.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	c, err := NewKMS([]string{srv.URL}, caPEM, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Encrypt(t.Context(), api.KeyRef{KeyID: "key_a"}, []byte("hello"), []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Ciphertext) != "\x09" || out.KeyID != "key_a" || out.KeyVersion != 3 || out.Warning != "rotate" {
		t.Fatalf("decoded %+v", out)
	}
	if err := c.Do(t.Context(), http.MethodPost, "/v1/other", raw, nil); err != nil {
		t.Fatal(err)
	}
}

// TestAnswersOutliveTheirBuffer: the SDK wipes and reuses the buffer an
// answer was read into, so nothing a call returns may point into it:
// decoded fields (the fast decoder's and encoding/json's), a raw answer,
// an error's message. Each answer is one letter repeated (a different
// letter each time); each result is checked as returned, and again after
// later calls have refilled the buffer.
func TestAnswersOutliveTheirBuffer(t *testing.T) {
	srv, _, caPEM := tlsServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		fill := strings.Repeat(string(rune('a'+n%26)), 64)
		switch r.URL.Path {
		case "/v1/crypto/encrypt":
			b, _ := wire.Append(nil, &api.EncryptResponse{Ciphertext: []byte(fill), KeyID: fill, KeyVersion: n})
			w.Write(b)
		case "/v1/other":
			writeJSON(w, 200, map[string]string{"name": fill})
		case "/metrics":
			w.Write([]byte(fill))
		default:
			apiError(w, api.CodeNotFound, fill)
		}
	})
	c := newTestKMS(t, []string{srv.URL}, caPEM, WithRetry(1, 0, 0))
	// intact reports whether s is 64 times one letter.
	intact := func(s string) bool {
		return len(s) == 64 && s[0] >= 'a' && s[0] <= 'z' && s == strings.Repeat(s[:1], 64)
	}
	var results []func() (string, bool) // what each call returned, and whether it is intact
	for range 3 {
		enc, err := c.Encrypt(t.Context(), api.KeyRef{KeyID: "k"}, []byte("p"), nil)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, func() (string, bool) {
			return "an encrypt answer", intact(string(enc.Ciphertext)) && enc.KeyID == string(enc.Ciphertext)
		})
		var other map[string]string
		if err := c.Do(t.Context(), http.MethodPost, "/v1/other", map[string]int{}, &other); err != nil {
			t.Fatal(err)
		}
		results = append(results, func() (string, bool) { return "an encoding/json answer", intact(other["name"]) })
		var raw []byte
		if err := c.Do(t.Context(), http.MethodGet, "/metrics", nil, &raw); err != nil {
			t.Fatal(err)
		}
		results = append(results, func() (string, bool) { return "a raw answer", intact(string(raw)) })
		err = c.Do(t.Context(), http.MethodGet, "/v1/missing", nil, nil)
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("err = %v, want an *Error", err)
		}
		results = append(results, func() (string, bool) { return "an error answer", intact(e.Message) })
		for _, r := range results[len(results)-4:] {
			if what, ok := r(); !ok {
				t.Errorf("%s is not what the server sent", what)
			}
		}
	}
	for i, r := range results {
		if what, ok := r(); !ok {
			t.Errorf("call %d: %s changed after later calls reused its buffer", i, what)
		}
	}
}

// TestRequestBodyWipedWhenClosed: a body the SDK encoded (it carries
// plaintexts) stays intact while net/http holds any reader of it, even
// after the call has returned, and is wiped once the last reader is
// closed; bytes the caller passed as raw JSON are never touched.
func TestRequestBodyWipedWhenClosed(t *testing.T) {
	in := &api.EncryptRequest{KeyRef: api.KeyRef{KeyID: "key_a"}, Plaintext: []byte("pan 4111 1111 1111 1111")}
	want, _ := wire.Append(nil, in)
	body, err := encodeBody(in)
	if err != nil {
		t.Fatal(err)
	}
	b := body.b
	if string(b) != string(want) {
		t.Fatalf("body = %s, want %s", b, want)
	}
	first, second := body.reader(), body.reader() // a request, and its resend (GetBody)
	body.release()                                // the call returns
	if got, _ := io.ReadAll(first); string(got) != string(want) {
		t.Fatalf("a reader read %q after the call returned, want the body", got)
	}
	first.Close()
	first.Close() // net/http may close twice
	if string(b) != string(want) {
		t.Fatal("the body was wiped while a reader was still open")
	}
	second.Close()
	if !bytes.Equal(b, make([]byte, len(b))) {
		t.Fatalf("after the last reader closed the body still holds %q", b)
	}

	raw := json.RawMessage(`{"plaintext":"cGFu"}`)
	body, err = encodeBody(raw)
	if err != nil {
		t.Fatal(err)
	}
	body.reader().Close()
	body.release()
	if string(raw) != `{"plaintext":"cGFu"}` {
		t.Fatalf("raw JSON passed to Do was changed: %s", raw)
	}
}

// TestEmptyRawBodyNotChunked: an empty raw body goes as Content-Length 0,
// as net/http's NewRequest sends it, not as a chunked body.
func TestEmptyRawBodyNotChunked(t *testing.T) {
	srv, _, caPEM := tlsServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 || len(r.TransferEncoding) != 0 {
			t.Errorf("Content-Length %d, Transfer-Encoding %v; want 0 and none", r.ContentLength, r.TransferEncoding)
		}
		healthy(0, w, r)
	})
	c := newTestKMS(t, []string{srv.URL}, caPEM, WithRetry(1, 0, 0))
	if err := c.Do(t.Context(), http.MethodPost, "/v1/other", json.RawMessage(nil), nil); err != nil {
		t.Fatal(err)
	}
}
