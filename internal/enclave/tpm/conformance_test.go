package tpm

import (
	"testing"

	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/enclave/enclavetest"
)

// TestConformance runs the enclave contract suite, each subtest on a fresh
// directory over the shared simulator (Run closes the enclaves).
func TestConformance(t *testing.T) {
	enclavetest.Run(t, func(t *testing.T) enclave.Enclave {
		e, err := Open(t.Context(), sim, t.TempDir())
		if err != nil {
			t.Fatalf("Open() = %v", err)
		}
		return e
	})
}
