package httpapi_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/httpapi"
)

// requestTypes are the bodies of every endpoint of both APIs.
func requestTypes() []func() any {
	return []func() any{
		func() any { return new(api.CreateTenantRequest) },
		func() any { return new(api.CreateAppRequest) },
		func() any { return new(api.RenewCertificateRequest) },
		func() any { return new(api.RevokeCertificatesRequest) },
		func() any { return new(api.CreateDataKeyRequest) },
		func() any { return new(api.NewVersionRequest) },
		func() any { return new(api.CreateTokenRequest) },
		func() any { return new(api.EnrollRequest) },
		func() any { return new(api.RewrapRequest) },
		func() any { return new(api.GrantRequest) },
		func() any { return new(api.LoadRequest) },
		func() any { return new(api.DeriveRequest) },
		func() any { return new(api.ImportKeyRequest) },
		func() any { return new(api.ExportRequest) },
		func() any { return new(api.ImportKeysRequest) },
		func() any { return new(api.SidecarLoadRequest) },
		func() any { return new(api.SidecarDeriveRequest) },
		func() any { return new(api.SealRequest) },
		func() any { return new(api.EncryptRequest) },
		func() any { return new(api.DecryptRequest) },
		func() any { return new(api.SignRequest) },
		func() any { return new(api.VerifyRequest) },
		func() any { return new(api.MACRequest) },
		func() any { return new(api.MACVerifyRequest) },
		func() any { return new(api.HashRequest) },
		func() any { return new(api.RandomRequest) },
		func() any { return new(api.TranslateRequest) },
		func() any { return new(api.BatchRequest) },
	}
}

// FuzzDecodeRequests feeds arbitrary bytes to the strict decoder of every
// request type. Property: no panic; every refusal is an *api.Error with a
// 400 or 413 status (never a 500, never another error type).
func FuzzDecodeRequests(f *testing.F) {
	for _, s := range []string{
		`{"name":"acme"}`, `{"type":"aes-256-gcm","policy":{"rules":[{"principals":["CN=a,O=b"],"actions":["encrypt"]}]}}`,
		`{"csr_pem":"x","wrapping_public_key":{"kem":"x25519","public_key":"AAAA"},"token":"t","attestation":{"nonce":"AA==","pcrs":{"0":"AA=="}}}`,
		`{"ops":[{"op":"encrypt","key_id":"k","plaintext":"AA=="}]}`, `{"key_id":"k","plaintext":"!!"}`,
		`{"a":1}`, `[]`, `null`, `{"ops":[` + "\x00", `{"expires_at":"2030-01-01T00:00:00Z"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, mk := range requestTypes() {
			v := mk()
			r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
			err := httpapi.Decode(httptest.NewRecorder(), r, 1<<16, v)
			if err == nil {
				continue
			}
			var e *api.Error
			if !errors.As(err, &e) {
				t.Fatalf("Decode(%T, %q) = %v, not an API error", v, body, err)
			}
			if s := e.Code.Status(); s != http.StatusBadRequest && s != http.StatusRequestEntityTooLarge {
				t.Fatalf("Decode(%T, %q) = %s (%d), want 400 or 413", v, body, e.Code, s)
			}
		}
	})
}
