package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/wire"
)

func TestDecodeRefusesDuplicateKeys(t *testing.T) {
	type inner struct {
		A int `json:"a"`
	}
	type body struct {
		Name  string  `json:"name"`
		Inner inner   `json:"inner"`
		List  []inner `json:"list"`
	}
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"plain", `{"name":"x","inner":{"a":1},"list":[{"a":1},{"a":2}]}`, true},
		{"same key in sibling objects", `{"list":[{"a":1},{"a":1}],"inner":{"a":1}}`, true},
		{"a key that is also a value", `{"name":"name"}`, true},
		{"top-level repeat", `{"name":"x","name":"y"}`, false},
		{"nested repeat", `{"inner":{"a":1,"a":2}}`, false},
		{"repeat inside an array", `{"list":[{"a":1},{"a":2,"a":3}]}`, false},
		{"repeat after a nested object", `{"inner":{"a":1},"name":"x","inner":{"a":2}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", strings.NewReader(tc.in))
			var v body
			err := Decode(httptest.NewRecorder(), r, 0, &v)
			if tc.ok && err != nil {
				t.Fatalf("Decode(%s) = %v, want nil", tc.in, err)
			}
			if !tc.ok && api.CodeOf(err) != api.CodeBadRequest {
				t.Fatalf("Decode(%s) = %v, want bad_request", tc.in, err)
			}
		})
	}
}

// TestDecodeDuplicateFastPath: the hot operations' fast decoder leaves a
// repeated key to the strict decoder, which refuses it.
func TestDecodeDuplicateFastPath(t *testing.T) {
	r := httptest.NewRequest("POST", "/", strings.NewReader(`{"key_id":"a","key_id":"b","plaintext":"AA=="}`))
	var v api.EncryptRequest
	if err := Decode(httptest.NewRecorder(), r, 0, &v); api.CodeOf(err) != api.CodeBadRequest {
		t.Fatalf("Decode(encrypt with key_id twice) = %v (key_id %q), want bad_request", err, v.KeyID)
	}
}

// TestDecodeBatchTooLarge: a batch of more than api.MaxBatchOps items is
// refused with too_large, whether or not its shape suits the fast path,
// and one at the limit is decoded.
func TestDecodeBatchTooLarge(t *testing.T) {
	many := func(n int, item string) string {
		return `{"ops":[` + strings.TrimSuffix(strings.Repeat(item+",", n), ",") + `]}`
	}
	for _, tc := range []struct {
		name, in string
		code     api.Code // "" = decoded
	}{
		{"at the limit, fast path", many(api.MaxBatchOps, `{"op":"random","bytes":1}`), ""},
		{"at the limit, strict decoder", many(api.MaxBatchOps, `{"op":"r\u0061ndom","bytes":1}`), ""},
		{"one over, fast shape", many(api.MaxBatchOps+1, `{"op":"random","bytes":1}`), api.CodeTooLarge},
		{"one over, strict shape", many(api.MaxBatchOps+1, `{"op":"r\u0061ndom"}`), api.CodeTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", strings.NewReader(tc.in))
			var v api.BatchRequest
			err := Decode(httptest.NewRecorder(), r, 1<<20, &v)
			if tc.code == "" {
				if err != nil || len(v.Ops) != api.MaxBatchOps {
					t.Fatalf("Decode = %v, %d ops; want nil, %d", err, len(v.Ops), api.MaxBatchOps)
				}
				return
			}
			if api.CodeOf(err) != tc.code {
				t.Fatalf("Decode = %v, want %s", err, tc.code)
			}
		})
	}
}

// TestWriteJSONBytes: the hot answers are written by internal/wire with a
// Content-Length; anything else (a struct value included) by
// encoding/json. Both end in a newline and mean the same.
func TestWriteJSONBytes(t *testing.T) {
	resp := &api.EncryptResponse{Ciphertext: []byte{1, 2, 3}, KeyID: "key_a", KeyVersion: 2}
	fast, _ := wire.Append(nil, resp)
	slow, _ := json.Marshal(resp)
	for _, tc := range []struct {
		name   string
		v      any
		body   string
		length bool
	}{
		{"pointer: internal/wire", resp, string(fast) + "\n", true},
		{"value: encoding/json", *resp, string(slow) + "\n", false},
		{"other type: encoding/json", &api.ErrorBody{Error: &api.Error{Code: api.CodeNotFound, Message: "No."}}, `{"error":{"code":"not_found","message":"No."}}` + "\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			WriteJSON(w, http.StatusOK, tc.v)
			if got := w.Body.String(); got != tc.body {
				t.Fatalf("body = %q, want %q", got, tc.body)
			}
			if got := w.Header().Get("Content-Length"); (got != "") != tc.length || (tc.length && got != strconv.Itoa(len(tc.body))) {
				t.Fatalf("Content-Length = %q, want set: %v", got, tc.length)
			}
		})
	}
}

// BenchmarkDecodeAfterLargeBody is the decode of a 1 KiB encrypt request
// on a server whose buffer pool has held a large body (a sidecar after a
// load of thousands of keys, a KMS after a rewrap of 10,000 EKBs): the
// wipe of a pooled buffer must cost what the request wrote, not what
// the largest request ever grew it to.
func BenchmarkDecodeAfterLargeBody(b *testing.B) {
	large := `{"key_id":"k","plaintext":"` + strings.Repeat("A", 2<<20) + `"}`
	small, _ := wire.Append(nil, &api.EncryptRequest{KeyRef: api.KeyRef{KeyID: "key_a"}, Plaintext: make([]byte, 1024)})
	decode := func(body string) {
		r := httptest.NewRequest(http.MethodPost, "/v1/crypto/encrypt", strings.NewReader(body))
		var req api.EncryptRequest
		if err := Decode(httptest.NewRecorder(), r, 4<<20, &req); err != nil {
			b.Fatal(err)
		}
	}
	decode(large)
	for b.Loop() {
		decode(string(small))
	}
}

// keepWrites is a ResponseWriter that keeps the slices it is given, which
// alias WriteJSON's pooled buffer.
type keepWrites struct {
	httptest.ResponseRecorder
	got [][]byte
}

func (k *keepWrites) Write(p []byte) (int, error) {
	k.got = append(k.got, p)
	return k.ResponseRecorder.Write(p)
}

// keepReads is a request body that keeps the slices Read fills, which
// alias Decode's pooled buffer, and can fail after its data.
type keepReads struct {
	r   *strings.Reader
	got [][]byte
}

func (k *keepReads) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	k.got = append(k.got, p[:n])
	return n, err
}

func (k *keepReads) Close() error { return nil }

// TestPooledBuffersWiped: the buffers Decode reads a request into and
// WriteJSON encodes an answer into (they hold plaintexts) are wiped before
// they are pooled again: a body that decodes, one over the limit, one that
// is not JSON, and an answer.
func TestPooledBuffersWiped(t *testing.T) {
	secret := strings.Repeat("pan 4111 1111 1111 1111 ", 40)
	zero := func(what string, parts [][]byte) {
		t.Helper()
		for _, p := range parts {
			if strings.Trim(string(p), "\x00") != "" {
				t.Errorf("%s: a pooled buffer still holds %q", what, p)
			}
		}
	}
	body, _ := wire.Append(nil, &api.EncryptRequest{KeyRef: api.KeyRef{KeyID: "key_a"}, Plaintext: []byte(secret)})
	for _, tc := range []struct {
		name  string
		body  string
		limit int64
	}{
		{"decoded", string(body), 1 << 20},
		{"over the limit", string(body), int64(len(body)) / 2},
		{"not JSON", secret, 1 << 20},
	} {
		rd := &keepReads{r: strings.NewReader(tc.body)}
		r := httptest.NewRequest(http.MethodPost, "/v1/crypto/encrypt", nil)
		r.Body, r.ContentLength = rd, -1 // read to the end, as a chunked body is
		var req api.EncryptRequest
		err := Decode(httptest.NewRecorder(), r, tc.limit, &req)
		if (err == nil) != (tc.name == "decoded") {
			t.Fatalf("%s: Decode = %v", tc.name, err)
		}
		zero("request "+tc.name, rd.got)
	}

	w := &keepWrites{ResponseRecorder: *httptest.NewRecorder()}
	WriteJSON(w, http.StatusOK, &api.DecryptResponse{Plaintext: []byte(secret)})
	if !strings.Contains(w.Body.String(), "cGFuIDQxMTE") { // the answer went out whole
		t.Fatalf("answer = %s", w.Body)
	}
	zero("answer", w.got)
}
