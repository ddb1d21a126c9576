package adversarial_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
)

// Oversized and deeply nested request bodies. The KMS's /v1/datakeys is
// covered by internal/kms TestBadInput (oversized_body, deep_nesting);
// these cover the sidecar, the KMS's anonymous and batch endpoints, bodies
// without a Content-Length, and what a small body can make a server
// allocate.

// repeat is a reader of n copies of s, so a huge body is streamed, not
// held in memory.
func repeat(s string, n int) io.Reader {
	return io.LimitReader(&cycle{s: s}, int64(len(s)*n))
}

type cycle struct {
	s string
	i int
}

func (c *cycle) Read(p []byte) (int, error) {
	for k := range p {
		p[k] = c.s[c.i]
		c.i = (c.i + 1) % len(c.s)
	}
	return len(p), nil
}

// body is prefix, n copies of s, suffix.
func body(prefix, s string, n int, suffix string) (io.Reader, int64) {
	return io.MultiReader(strings.NewReader(prefix), repeat(s, n), strings.NewReader(suffix)),
		int64(len(prefix) + len(s)*n + len(suffix))
}

func nested(depth int) string {
	return strings.Repeat("[", depth) + strings.Repeat("]", depth)
}

// bodyCase is one hostile body for one endpoint.
type bodyCase struct {
	name    string
	path    string
	body    func() (io.Reader, int64)
	chunked bool // no Content-Length: only the reading limit stops it
	want    apiErr
}

var (
	tooLarge   = apiErr{413, api.CodeTooLarge}
	badRequest = apiErr{400, api.CodeBadRequest}
)

func runBodyCases(t *testing.T, hc *http.Client, base string, cases []bodyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, n := tc.body()
			if tc.chunked {
				n = -1
			}
			wantOneOf(t, raw(t.Context(), hc, base+tc.path, r, n), tc.want)
		})
	}
}

// TestSidecarHostileBodies: the bound custodian (or anything that got
// through the socket) sends bodies over the sidecar's limits (1 MiB, 64
// MiB for key loading and batches) or nested past encoding/json's depth.
func TestSidecarHostileBodies(t *testing.T) {
	w := newWorld(t)
	s := w.sidecar(t, w.payCreds.DN, "", nil)
	dk := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	s.load(t, w.pay, dk)
	enc := `{"key_id":"` + dk.KeyID + `","plaintext":"`
	cases := []bodyCase{
		{"encrypt over 1 MiB", "/v1/crypto/encrypt", func() (io.Reader, int64) { return body(enc, "AAAA", 300_000, `"}`) }, false, tooLarge},
		{"encrypt over 1 MiB, chunked", "/v1/crypto/encrypt", func() (io.Reader, int64) { return body(enc, "AAAA", 300_000, `"}`) }, true, tooLarge},
		{"hash over 1 MiB, chunked", "/v1/crypto/hash", func() (io.Reader, int64) {
			return body(`{"algorithm":"sha-256","message":"`, "AAAA", 300_000, `"}`)
		}, true, tooLarge},
		{"import over 64 MiB, chunked", "/v1/keys/import", func() (io.Reader, int64) {
			return body(`{"keys":[{"key_id":"`, "a", 65<<20, `"}]}`)
		}, true, tooLarge},
		{"batch over 64 MiB, chunked", "/v1/crypto/batch", func() (io.Reader, int64) {
			return body(`{"ops":[`, `{"op":"hash","algorithm":"sha-256","message":"AAAA"},`, (65<<20)/50, `{}]}`)
		}, true, tooLarge},
		{"encrypt nested 20000 deep", "/v1/crypto/encrypt", func() (io.Reader, int64) {
			s := `{"key_id":"` + dk.KeyID + `","aad":` + nested(20000) + `}`
			return strings.NewReader(s), int64(len(s))
		}, false, badRequest},
		{"encrypt with a nested unknown field", "/v1/crypto/encrypt", func() (io.Reader, int64) {
			s := `{"key_id":"` + dk.KeyID + `","x":` + strings.Repeat(`{"a":`, 20000) + `1` + strings.Repeat(`}`, 20000) + `}`
			return strings.NewReader(s), int64(len(s))
		}, false, badRequest},
		{"batch item nested 20000 deep", "/v1/crypto/batch", func() (io.Reader, int64) {
			s := `{"ops":[{"op":"hash","algorithm":"sha-256","message":` + nested(20000) + `}]}`
			return strings.NewReader(s), int64(len(s))
		}, false, badRequest},
		{"import nested 20000 deep", "/v1/keys/import", func() (io.Reader, int64) {
			s := `{"keys":[{"metadata":{"labels":` + strings.Repeat(`{"a":`, 20000) + `1` + strings.Repeat(`}`, 20000) + `}}]}`
			return strings.NewReader(s), int64(len(s))
		}, false, badRequest},
		{"load with 500000 nested arrays", "/v1/keys/load", func() (io.Reader, int64) {
			s := `{"grant":"x","ekbs":` + nested(500_000) + `}`
			return strings.NewReader(s), int64(len(s))
		}, false, badRequest},
		{"random of a gigabyte", "/v1/crypto/random", func() (io.Reader, int64) {
			s := `{"bytes":1073741824}`
			return strings.NewReader(s), int64(len(s))
		}, false, apiErr{400, api.CodeInvalidArgument}},
	}
	runBodyCases(t, s.http, "http://sidecar", cases)
	// Still serving.
	var out api.EncryptResponse
	s.must(t, "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{KeyID: dk.KeyID}, Plaintext: []byte("ok")}, &out)
}

// TestKMSHostileBodies: the same at the KMS, on the endpoints anyone may
// call (enrollment) and on the batch endpoints (32 MiB limit).
func TestKMSHostileBodies(t *testing.T) {
	w := newWorld(t)
	anon := w.env.Anonymous().HTTP
	cust := w.pay.HTTP
	anonCases := []bodyCase{
		{"enrollment over 1 MiB", "/v1/enrollment", func() (io.Reader, int64) {
			return body(`{"csr_pem":"`, "A", 2<<20, `"}`)
		}, false, tooLarge},
		{"enrollment over 1 MiB, chunked", "/v1/enrollment", func() (io.Reader, int64) {
			return body(`{"csr_pem":"`, "A", 2<<20, `"}`)
		}, true, tooLarge},
		{"enrollment nested 20000 deep", "/v1/enrollment", func() (io.Reader, int64) {
			s := `{"wrapping_public_key":` + strings.Repeat(`{"kem":`, 20000) + `1` + strings.Repeat(`}`, 20000) + `}`
			return strings.NewReader(s), int64(len(s))
		}, false, badRequest},
		{"challenge with a huge body", "/v1/enrollment/challenge", func() (io.Reader, int64) {
			return body(`{"x":"`, "A", 2<<20, `"}`)
		}, true, tooLarge},
	}
	t.Run("anonymous", func(t *testing.T) { runBodyCases(t, anon, w.env.URL, anonCases) })
	custCases := []bodyCase{
		{"rewrap over 32 MiB, chunked", "/v1/keys/rewrap", func() (io.Reader, int64) {
			return body(`{"wrapping_cert_pem":"x","ekbs":["`, "AAAA", (33<<20)/4, `"]}`)
		}, true, tooLarge},
		{"central batch over 32 MiB, chunked", "/v1/crypto/batch", func() (io.Reader, int64) {
			return body(`{"ops":[`, `{"op":"hash","algorithm":"sha-256","message":"AAAA"},`, (33<<20)/50, `{}]}`)
		}, true, tooLarge},
		{"central batch nested 20000 deep", "/v1/crypto/batch", func() (io.Reader, int64) {
			s := `{"ops":[` + nested(20000) + `]}`
			return strings.NewReader(s), int64(len(s))
		}, false, badRequest},
		{"grant nested 20000 deep", "/v1/grants", func() (io.Reader, int64) {
			s := `{"instance_id":"x","key_ids":` + nested(20000) + `}`
			return strings.NewReader(s), int64(len(s))
		}, false, badRequest},
		{"central random of a gigabyte", "/v1/crypto/random", func() (io.Reader, int64) {
			s := `{"bytes":1073741824}`
			return strings.NewReader(s), int64(len(s))
		}, false, apiErr{400, api.CodeInvalidArgument}},
	}
	t.Run("custodian", func(t *testing.T) { runBodyCases(t, cust, w.env.URL, custCases) })
	var h api.Health
	w.env.Anonymous().MustDo(t, "GET", "/healthz", nil, &h)
}

// TestBatchAllocationBounded: a batch may hold at most 10,000 operations
// (ops.MaxBatch), so a legitimate batch request costs the server at most
// about 10,000 decoded items. A hostile one lists 300,000 empty items in
// 900 KB — under even the 1 MiB limit of ordinary requests, a 36th of the
// KMS's 32 MiB batch limit — and the server must refuse it (413) without
// first decoding every item. The bound below allows 64 MiB of allocation
// for the whole request, twenty times what a maximal legitimate batch's
// 10,000 items take (296 bytes each).
func TestBatchAllocationBounded(t *testing.T) {
	const items = 300_000
	const budget = 64 << 20
	w := newWorld(t)
	s := w.sidecar(t, w.payCreds.DN, "", nil)
	for _, tc := range []struct {
		name string
		hc   *http.Client
		url  string
	}{
		{"KMS central batch (any custodian)", w.pay.HTTP, w.env.URL + "/v1/crypto/batch"},
		{"sidecar batch", s.http, "http://sidecar/v1/crypto/batch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := []byte(`{"ops":[` + strings.Repeat(`{},`, items-1) + `{}]}`)
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := raw(t.Context(), tc.hc, tc.url, bytes.NewReader(payload), int64(len(payload)))
			runtime.ReadMemStats(&after)
			wantOneOf(t, err, tooLarge)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("a %d-byte body of %d empty ops: %s allocated by the request", len(payload), items, mib(alloc))
			if alloc > budget {
				t.Errorf("refusing %d ops allocated %s (%d bytes per body byte), want at most %s: the count is checked only after every item was decoded (wire.Decode / encoding/json, then ops.Engine.Batch)",
					items, mib(alloc), alloc/uint64(len(payload)), mib(budget))
			}
		})
	}
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
