package adversarial_test

import (
	"math"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// TestTTLOverflow: a lifetime so large that seconds × 10^9 overflows an
// int64 must be refused, not wrapped around into the past (an already
// expired token) or into a short window (2^55 + 3600 s once gave a one-hour
// token).
func TestTTLOverflow(t *testing.T) {
	w := newWorld(t)
	a := w.sidecar(t, w.payCreds.DN, "", nil)
	dk := dataKey(t, w.pay, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	for _, ttl := range []int{math.MaxInt64, 1<<55 + 3600, math.MaxInt64 / 1_000_000_000, 1 << 40} {
		t.Run("token", func(t *testing.T) {
			err := w.pipe.Do("POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: w.payCreds.DN, TTLSeconds: ttl}, nil)
			kmstest.WantError(t, err, 400, api.CodeInvalidArgument)
		})
		t.Run("grant", func(t *testing.T) {
			_, err := grant(w.pay, api.GrantRequest{InstanceID: a.id, EKBs: [][]byte{dk.EKB}, TTLSeconds: ttl})
			kmstest.WantError(t, err, 400, api.CodeInvalidArgument)
		})
	}
	// The bounds themselves still work.
	var tok api.EnrollmentToken
	w.pipe.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: w.payCreds.DN, TTLSeconds: 86400}, &tok)
	if d := tok.ExpiresAt.Sub(w.clock.Now()); d < 86399e9 || d > 86401e9 {
		t.Errorf("a 24-hour token expires in %v", d)
	}
}
