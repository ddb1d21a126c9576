package attest

import (
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/enclave/tpm"
	"github.com/dcaas/dcaas/internal/enclave/tpm/tpmsim"
)

// The simulator is process global: one for the whole test binary, opened
// by the first test that needs it (fuzzing and golden tests do not).
var (
	simOnce sync.Once
	sim     transport.TPMCloser
	simErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sim != nil {
		sim.Close()
	}
	os.Exit(code)
}

func simulator(t testing.TB) transport.TPM {
	t.Helper()
	simOnce.Do(func() { sim, simErr = tpmsim.Open() })
	if simErr != nil {
		t.Fatalf("TPM simulator: %v (it needs cgo, gcc and libssl-dev: scripts/deps.sh)", simErr)
	}
	return sim
}

// fixture is evidence from a TPM enclave on the simulator, what it must
// answer, and a verifier that allows its AK.
type fixture struct {
	enclave  *tpm.Enclave
	ev       *api.Attestation
	want     Expected
	spki     []byte
	tp       api.PublicKey
	verifier *TPMVerifier
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	e, err := tpm.Open(t.Context(), simulator(t), t.TempDir())
	if err != nil {
		t.Fatalf("tpm.Open() = %v", err)
	}
	t.Cleanup(func() { e.Close() })
	f := &fixture{
		enclave: e,
		spki:    []byte("identity SPKI of the CSR"),
		tp:      api.PublicKey{KEM: api.KEMP256, PublicKey: []byte("transport public key")},
	}
	nonce := []byte("fresh KMS challenge")
	f.ev = f.attest(t, nonce)
	f.want = Expected{Nonce: nonce, QualifyingData: enclave.QualifyingData(nonce, f.spki, f.tp)}
	f.verifier = &TPMVerifier{AllowedAKs: map[string]bool{AKFingerprint(f.ev.AKPublic): true}}
	return f
}

func (f *fixture) attest(t *testing.T, nonce []byte) *api.Attestation {
	t.Helper()
	ev, err := f.enclave.Attest(t.Context(), nonce, f.spki, f.tp)
	if err != nil {
		t.Fatalf("Attest() = %v", err)
	}
	return ev
}

var sentinels = []error{ErrMalformed, ErrUnknownAK, ErrBadSignature, ErrNonceMismatch, ErrPCRMismatch}

// isSentinel reports whether err wraps one of the package's errors.
func isSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// clone deep-copies evidence so a test case can alter it.
func clone(ev *api.Attestation) *api.Attestation {
	c := *ev
	c.Nonce = append([]byte(nil), ev.Nonce...)
	c.AKPublic = append([]byte(nil), ev.AKPublic...)
	c.Quote = append([]byte(nil), ev.Quote...)
	c.Signature = append([]byte(nil), ev.Signature...)
	if ev.PCRs != nil {
		c.PCRs = make(map[int][]byte, len(ev.PCRs))
		for i, v := range ev.PCRs {
			c.PCRs[i] = append([]byte(nil), v...)
		}
	}
	return &c
}
