package httpapi

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
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
