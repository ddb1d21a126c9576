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
