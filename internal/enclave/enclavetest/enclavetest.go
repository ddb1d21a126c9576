// Package enclavetest is the conformance suite every enclave.Enclave
// implementation passes. An implementation's tests call Run with a
// function that opens a fresh enclave:
//
//	func TestConformance(t *testing.T) {
//		enclavetest.Run(t, func(t *testing.T) enclave.Enclave {
//			e, err := software.New()
//			if err != nil {
//				t.Fatal(err)
//			}
//			return e
//		})
//	}
//
// Run closes every enclave it opens. A KEM the enclave refuses with
// enclave.ErrUnsupportedKEM is skipped, except that in FIPS 140-3 mode
// (GODEBUG=fips140=on) the X25519-based KEMs must be refused.
package enclavetest

import (
	"testing"

	"github.com/dcaas/dcaas/internal/enclave"
)

// opener opens a fresh enclave, closed when its test ends.
type opener = func(t *testing.T) enclave.Enclave

// Run runs the conformance suite. It calls open once per subtest for a
// fresh enclave, and closes it when the subtest ends.
func Run(t *testing.T, open func(t *testing.T) enclave.Enclave) {
	fresh := func(t *testing.T) enclave.Enclave {
		t.Helper()
		e := open(t)
		if e == nil {
			t.Fatal("open returned a nil enclave")
		}
		t.Cleanup(func() {
			if err := e.Close(); err != nil {
				t.Errorf("Close() = %v, want nil", err)
			}
		})
		return e
	}
	t.Run("Kind", func(t *testing.T) {
		if k := fresh(t).Kind(); k == "" {
			t.Errorf("Kind() = %q, want a name", k)
		}
	})
	t.Run("IdentityKey", func(t *testing.T) { testIdentityKey(t, fresh) })
	t.Run("TransportKey", func(t *testing.T) { testTransportKey(t, fresh) })
	t.Run("Protect", func(t *testing.T) { testProtect(t, fresh) })
	t.Run("Local", func(t *testing.T) { testLocal(t, fresh) })
	t.Run("Close", func(t *testing.T) { testClose(t, fresh) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, fresh) })
}
