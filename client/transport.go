package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dcaas/dcaas/internal/wire"
)

// maxResponse bounds how much of one answer the SDK reads.
const maxResponse = 256 << 20

// Option adjusts a KMS or Sidecar client. The zero set of options means
// the defaults noted on each.
type Option func(*options)

type options struct {
	attempts  int
	baseDelay time.Duration
	maxDelay  time.Duration
	timeout   time.Duration
	// sleep waits d or until ctx ends; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
}

func defaultOptions() options {
	return options{attempts: 4, baseDelay: 100 * time.Millisecond, maxDelay: 2 * time.Second, timeout: 60 * time.Second, sleep: sleepCtx}
}

// WithRetry sets how many attempts a call makes in all (default 4; 1
// turns retrying off) and the backoff between them: base·2^k capped at
// max, with jitter (default 100 ms and 2 s). See KMS for which failures
// are retried.
func WithRetry(attempts int, base, max time.Duration) Option {
	return func(o *options) {
		if attempts > 0 {
			o.attempts = attempts
		}
		if base > 0 {
			o.baseDelay = base
		}
		if max > 0 {
			o.maxDelay = max
		}
	}
}

// WithTimeout bounds each attempt, from dialing to reading the whole
// answer (default 60 s). The ctx of a call bounds all of its attempts.
func WithTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// retryClass says whether a request may be sent again after a server may
// have acted on it.
type retryClass int

const (
	// idempotent requests change nothing on the server (reads, rewrap,
	// crypto operations) or change it the same way twice (sidecar import,
	// a sidecar's grant load or derive: the KMS answers the request that
	// used a grant again).
	idempotent retryClass = iota + 1
	// once requests change state (create, rotate, mint, consume a grant,
	// seal). They are retried only when they certainly did not reach a
	// server (dial errors) or the server answered 503.
	once
)

// transport sends JSON requests to one or more base URLs with retries and
// failover. It is safe for concurrent use.
type transport struct {
	http *http.Client
	urls []string
	opts options
	pref atomic.Uint32 // index of the URL that answered last
}

func newTransport(urls []string, rt http.RoundTripper, opts []Option) *transport {
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	return &transport{http: &http.Client{Transport: rt, Timeout: o.timeout}, urls: urls, opts: o}
}

// parseBaseURLs validates base URLs: absolute, with scheme (https unless
// allowHTTP), host, and no query; a trailing slash is dropped.
func parseBaseURLs(raw []string, allowHTTP bool) ([]string, error) {
	if len(raw) == 0 {
		return nil, errors.New("client: no base URL")
	}
	out := make([]string, 0, len(raw))
	for _, r := range raw {
		u, err := url.Parse(r)
		if err != nil {
			return nil, fmt.Errorf("client: base URL %q: %w", r, err)
		}
		if u.Host == "" || u.RawQuery != "" || u.Fragment != "" || !(u.Scheme == "https" || allowHTTP && u.Scheme == "http") {
			return nil, fmt.Errorf("client: base URL %q: want https://host[:port][/prefix]", r)
		}
		out = append(out, strings.TrimRight(r, "/"))
	}
	return out, nil
}

// tlsConfig builds a client TLS configuration: the roots from caPEM (nil:
// the system's) and the client certificate from certPEM/keyPEM (both nil:
// none).
func tlsConfig(caPEM, certPEM, keyPEM []byte, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if len(caPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("client: the CA PEM holds no certificate")
		}
		cfg.RootCAs = pool
	}
	switch {
	case len(certPEM) > 0 && len(keyPEM) > 0:
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("client: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	case len(certPEM) > 0 || len(keyPEM) > 0:
		return nil, errors.New("client: give both the client certificate and its key, or neither")
	}
	return cfg, nil
}

// do sends in (nil: no body) as JSON to path and decodes a 200 answer into
// out (nil: discard). An error answer is an *Error.
func (t *transport) do(ctx context.Context, class retryClass, method, path string, in, out any) error {
	var body *requestBody
	if in != nil {
		var err error
		if body, err = encodeBody(in); err != nil {
			return err
		}
		defer body.release()
	}
	n := len(t.urls)
	start := int(t.pref.Load())
	var last error
	a := 0
	for ; a < t.opts.attempts; a++ {
		if a >= n {
			// Every URL has had its chance in this call: back off.
			if err := t.opts.sleep(ctx, t.delay(a-n)); err != nil {
				return errors.Join(last, err)
			}
		}
		if err := ctx.Err(); err != nil {
			if last != nil {
				return errors.Join(last, err)
			}
			return err
		}
		i := (start + a) % n
		err := t.once(ctx, class, method, t.urls[i], path, body, out)
		if err == nil {
			t.pref.Store(uint32(i))
			return nil
		}
		last = err
		if !retryable(ctx, class, err) {
			break
		}
	}
	var e *Error
	if errors.As(last, &e) {
		return e
	}
	if a > 0 {
		return fmt.Errorf("client: %s %s failed %d times; last: %w", method, path, min(a+1, t.opts.attempts), last)
	}
	return last
}

// delay is the wait before the k-th retry after a full pass: base·2^k
// capped at max, drawn uniformly from its upper half (jitter, so that
// clients shed by one replica do not return in step).
func (t *transport) delay(k int) time.Duration {
	d := t.opts.baseDelay
	for i := 0; i < k && d < t.opts.maxDelay; i++ {
		d *= 2
	}
	d = min(d, t.opts.maxDelay)
	half := d / 2
	return half + rand.N(half+1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// once makes one attempt against base.
func (t *transport) once(ctx context.Context, class retryClass, method, base, path string, body *requestBody, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if body != nil {
		if len(body.b) > 0 { // an empty body is NoBody, as NewRequest makes it (else net/http sends it chunked)
			req.Body, req.ContentLength = body.reader(), int64(len(body.b))
			req.GetBody = func() (io.ReadCloser, error) { return body.reader(), nil }
		}
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if id := approvalOf(ctx); id != "" {
		req.Header.Set(approvalHeader, id) // see WithApproval
	}
	if class == idempotent {
		// Lets net/http replay the request on a stale keep-alive
		// connection; a nil value is not sent.
		req.Header["Idempotency-Key"] = nil
	}
	resp, err := t.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	buf, data, err := readBody(resp, maxResponse)
	defer wire.PutBody(buf, data)
	if err != nil {
		return fmt.Errorf("client: %s %s: reading the answer: %w", method, base+path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return errorFromResponse(resp.StatusCode, data)
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = bytes.Clone(data) // an answer that is not JSON (GET /metrics)
		return nil
	}
	if out != nil && !wire.Decode(data, out) {
		if err := json.Unmarshal(data, out); err != nil {
			return &decodeError{fmt.Errorf("client: %s %s: decoding the answer: %w", method, base+path, err)}
		}
	}
	return nil
}

// readBody reads up to limit bytes of resp's body into one array sized
// by its Content-Length (io.ReadAll grows from 512 bytes, copying a large
// batch's answer a dozen times) and taken from the pool: the pooled array
// buf points at, or a larger one that replaces it (wire.ReadBody wipes
// what it leaves behind, and all of it on an error). The caller hands it
// back with wire.PutBody once what it decoded from it is copied out (the
// decoders copy every string and byte field).
func readBody(resp *http.Response, limit int64) (buf *[]byte, data []byte, err error) {
	buf = wire.GetBody()
	size := resp.ContentLength
	if size > limit {
		size = 0 // not believed: read up to limit
	}
	data, err = wire.ReadBody(*buf, io.LimitReader(resp.Body, limit), size)
	return buf, data, err
}

// A requestBody is a request's bytes, given to net/http as readers that
// count their Close. Bytes the SDK encoded sit in a pooled array, wiped
// and pooled again once the call has released them and net/http has
// closed every reader it was given: a RoundTripper may close a body
// after RoundTrip returns, and may ask for it again (GetBody) to resend
// it on another connection.
type requestBody struct {
	b    []byte
	buf  *[]byte      // the pool's handle on b's array; nil for bytes the SDK does not own (Do's raw JSON)
	refs atomic.Int32 // the call's reference and one per reader not closed
}

// encodeBody encodes in: raw JSON as it is (Do); the hot operations'
// bodies with the hand-written codec of internal/wire (as the servers
// do), into a pooled array; anything else with encoding/json.
func encodeBody(in any) (*requestBody, error) {
	if raw, ok := in.(json.RawMessage); ok {
		return newRequestBody(raw, nil), nil
	}
	buf := wire.GetBody()
	b, ok := wire.AppendPooled(buf, in, "")
	if !ok {
		wire.PutBody(buf, *buf) // nothing was written to it
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("client: encoding the request: %w", err)
		}
		return newRequestBody(b, nil), nil
	}
	return newRequestBody(b, buf), nil
}

func newRequestBody(b []byte, buf *[]byte) *requestBody {
	r := &requestBody{b: b, buf: buf}
	r.refs.Store(1)
	return r
}

// reader returns a reader of the body for one request.
func (r *requestBody) reader() io.ReadCloser {
	r.refs.Add(1)
	return &bodyReader{Reader: bytes.NewReader(r.b), body: r}
}

// release drops the call's reference to the body.
func (r *requestBody) release() { r.unref() }

func (r *requestBody) unref() {
	if r.refs.Add(-1) == 0 && r.buf != nil {
		wire.PutBody(r.buf, r.b)
	}
}

type bodyReader struct {
	*bytes.Reader
	body   *requestBody
	closed atomic.Bool
}

// Close drops the reader's reference to the body; net/http may call it
// more than once.
func (r *bodyReader) Close() error {
	if r.closed.CompareAndSwap(false, true) {
		r.body.unref()
	}
	return nil
}

// decodeError is a 200 answer the SDK could not read: the server acted.
type decodeError struct{ error }

func (e *decodeError) Unwrap() error { return e.error }

// retryable decides whether a failed attempt is tried again:
//
//   - never once ctx has ended, nor after a 200 answer that did not decode;
//   - an API error: only 503 unavailable, and for idempotent requests also
//     a gateway's 502 and 504;
//   - a transport error: dial errors (connection refused, no route, DNS,
//     a missing Unix socket) always, since no server saw the request;
//     certificate verification errors never; anything else (reset, EOF,
//     timeout while waiting for the answer) only for idempotent requests,
//     since the server may have acted.
func retryable(ctx context.Context, class retryClass, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var de *decodeError
	if errors.As(err, &de) {
		return false
	}
	var e *Error
	if errors.As(err, &e) {
		switch e.Status {
		case http.StatusServiceUnavailable:
			return true
		case http.StatusBadGateway, http.StatusGatewayTimeout:
			return class == idempotent
		}
		return false
	}
	if isDialError(err) {
		return true
	}
	var (
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		hostname  x509.HostnameError
		verify    *tls.CertificateVerificationError
		alert     tls.AlertError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &invalid) || errors.As(err, &hostname) || errors.As(err, &verify) || errors.As(err, &alert) {
		return false
	}
	return class == idempotent
}

// isDialError reports whether err happened while connecting, before any
// byte of the request was sent.
func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// pathEscape escapes one path segment (a key id, tenant, instance id).
func pathEscape(s string) string { return url.PathEscape(s) }
