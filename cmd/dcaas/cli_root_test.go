package main

import (
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"
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
