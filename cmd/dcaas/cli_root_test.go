package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/api"
)

// TestHalfAnIdentityRefused: kms seal-status and kms ca show, given --cert
// without --key (or the other way round), say so instead of calling the KMS
// without a certificate (seal-status did).
func TestHalfAnIdentityRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  func() *cobra.Command
		args []string
	}{
		{"kms seal-status", newKMSSealStatusCmd, nil},
		{"kms ca show", newKMSCACmd, []string{"show"}},
	} {
		for _, half := range [][]string{{"--cert", "app.crt"}, {"--key", "app.key"}} {
			t.Run(tc.name+" "+half[0], func(t *testing.T) {
				t.Setenv("DCAAS_CERT", "")
				t.Setenv("DCAAS_KEY", "")
				cmd := tc.cmd()
				cmd.SetArgs(append(append(tc.args, "--kms", "https://127.0.0.1:1"), half...))
				cmd.SetOut(io.Discard)
				cmd.SetErr(io.Discard)
				err := cmd.ExecuteContext(t.Context())
				if err == nil || !strings.Contains(err.Error(), "no client identity") {
					t.Fatalf("%s %s = %v, want the missing half of the identity named", tc.name, half[0], err)
				}
			})
		}
	}
}

// TestPrintInstances: instances list shows each TPM instance's attestation
// key and vouching manufacturer in full, as --ak and --manufacturer take
// them, and "-" where there is none.
func TestPrintInstances(t *testing.T) {
	fp := strings.Repeat("ab", 32)
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	var b strings.Builder
	printInstances(&b, api.Instances{Instances: []api.Instance{
		{InstanceID: "ins_tpm", CustodianDN: "CN=a,O=t", Enclave: api.EnclaveTPM, EnrolledAt: at, AKFingerprint: fp, Manufacturer: "sim-mfr"},
		{InstanceID: "ins_token", CustodianDN: "CN=a,O=t", Enclave: api.EnclaveSoftware, EnrolledAt: at, Revoked: true},
	}})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := [][]string{
		{"INSTANCE", "CUSTODIAN", "ENCLAVE", "ENROLLED", "REVOKED", "AK", "MANUFACTURER"},
		{"ins_tpm", "CN=a,O=t", "tpm", "2026-12-04T10:00:00Z", "false", fp, "sim-mfr"},
		{"ins_token", "CN=a,O=t", "software", "2026-12-04T10:00:00Z", "true", "-", "-"},
	}
	if len(lines) != len(want) {
		t.Fatalf("instances list printed %d lines, want %d:\n%s", len(lines), len(want), b.String())
	}
	for i, l := range lines {
		if got := strings.Fields(l); !slices.Equal(got, want[i]) {
			t.Errorf("line %d = %q, want %q", i, got, want[i])
		}
	}
}
