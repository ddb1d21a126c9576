package tpm

import (
	"crypto"
	"crypto/hpke"
	"fmt"
	"os"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/enclave/tpm/tpmsim"
)

// sim is the one simulator every test shares: the simulator is process
// global, and a restart test needs the same TPM across two enclaves.
var sim transport.TPMCloser

func TestMain(m *testing.M) {
	var err error
	if sim, err = tpmsim.Open(); err != nil {
		fmt.Fprintln(os.Stderr, "TPM simulator:", err, "(it needs cgo, gcc and libssl-dev: scripts/deps.sh)")
		os.Exit(1)
	}
	code := m.Run()
	sim.Close()
	os.Exit(code)
}

// openEnclave opens an enclave over the shared simulator in dir (a new
// temporary directory when dir is empty) and closes it when the test ends.
func openEnclave(t *testing.T, dir string) *Enclave {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	e, err := Open(t.Context(), sim, dir)
	if err != nil {
		t.Fatalf("Open(%s) = %v", dir, err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// keys returns e's identity key and its P-256 transport key, making them
// on first use; the test fails if either cannot be had.
func keys(t *testing.T, e *Enclave) (crypto.Signer, hpke.PrivateKey) {
	t.Helper()
	id, err := e.IdentityKey(t.Context())
	if err != nil {
		t.Fatalf("IdentityKey() = %v", err)
	}
	tk, err := e.TransportKey(t.Context(), api.KEMP256)
	if err != nil {
		t.Fatalf("TransportKey() = %v", err)
	}
	return id, tk
}

// transientObjects counts the objects loaded in the simulator.
func transientObjects(t *testing.T) int {
	t.Helper()
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapHandles,
		Property:      uint32(tpm2.TPMHTTransient) << 24,
		PropertyCount: 64,
	}.Execute(sim)
	if err != nil {
		t.Fatalf("GetCapability(handles) = %v", err)
	}
	h, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		t.Fatalf("GetCapability(handles) = %v", err)
	}
	return len(h.Handle)
}
