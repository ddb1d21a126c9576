package kms_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// TestSysRoutesOnAnUnsealedKMS: a KMS whose root key is not split answers
// the /v1/sys routes too: seal-status to anyone (sealed false, no share
// set), unseal to an admin only, counting nothing.
func TestSysRoutesOnAnUnsealedKMS(t *testing.T) {
	env := kmstest.Start(t, nil)
	var st api.SealStatus
	env.Anonymous().MustDo(t, "GET", "/v1/sys/seal-status", nil, &st)
	if st.Sealed || st.ShareSet != "" || st.Threshold != 0 || st.Progress != 0 {
		t.Fatalf("seal-status of an ordinary KMS: %+v", st)
	}
	env.Admin.MustDo(t, "POST", "/v1/sys/unseal", api.UnsealRequest{Share: "anything"}, &st)
	if st.Sealed {
		t.Fatalf("unseal on an open KMS: %+v", st)
	}
	env.Server().KMS.SetShareSet(api.SealStatus{Sealed: true, ShareSet: "00112233445566778899aabbccddeeff", Threshold: 3, Shares: 5, Progress: 2, Posted: []int{1, 2}})
	env.Anonymous().MustDo(t, "GET", "/v1/sys/seal-status", nil, &st)
	if st.Sealed || st.ShareSet != "00112233445566778899aabbccddeeff" || st.Threshold != 3 || st.Shares != 5 || st.Progress != 0 || st.Posted != nil {
		t.Fatalf("seal-status of an unsealed share-sealed KMS: %+v", st)
	}
	env.Tenant(t, "acme")
	cust, _ := env.App(t, "acme", "payments-api", api.RoleCustodian)
	var e *api.Error
	if err := cust.Do("POST", "/v1/sys/unseal", api.UnsealRequest{Share: "x"}, nil); !errors.As(err, &e) || e.Status != http.StatusForbidden {
		t.Fatalf("unseal as a custodian: %v, want 403", err)
	}
	if err := env.Anonymous().Do("POST", "/v1/sys/unseal", api.UnsealRequest{Share: "x"}, nil); !errors.As(err, &e) || e.Status != http.StatusUnauthorized {
		t.Fatalf("unseal without a certificate: %v, want 401", err)
	}
}
