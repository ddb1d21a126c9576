// Package tpmsim opens Microsoft's reference TPM 2.0 simulator, embedded
// in the test binary through cgo (github.com/google/go-tpm-tools/simulator),
// for tests of code that talks to a TPM. It is testing-only: the simulator's
// secrets live in this process's memory, so it protects nothing. Production
// code opens a real TPM with tpm.OpenDevice and never imports this package,
// which also keeps cgo and OpenSSL out of the product binary.
//
// The simulator is one process-global resource: Open blocks until the
// previous simulator is closed, and every Open starts from a freshly
// manufactured TPM (new hierarchy seeds), so keys wrapped by one simulator
// do not load in the next. Tests that need a TPM across several enclaves
// (a restart, two instances) share one simulator.
package tpmsim

import (
	"sync"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/simulator"
)

// Open starts the simulator and returns a connection to it that is safe
// for concurrent use (commands are serialized). Close it when done: until
// then another Open in the same process blocks.
func Open() (transport.TPMCloser, error) {
	sim, err := simulator.OpenSimulator()
	if err != nil {
		return nil, err
	}
	return &locked{tpm: sim}, nil
}

// locked serializes commands: the simulator, like a TPM device file, must
// not see two commands at once.
type locked struct {
	mu  sync.Mutex
	tpm transport.TPMCloser
}

func (l *locked) Send(cmd []byte) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tpm.Send(cmd)
}

func (l *locked) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tpm.Close()
}
