package tpm

import (
	"fmt"
	"io/fs"
	"os"
	"sync"

	"github.com/google/go-tpm/tpm2/transport"
)

// DefaultDevice is the Linux kernel's TPM resource manager, which lets
// several processes share the TPM. /dev/tpm0 (no resource manager) works
// too if nothing else uses the TPM.
const DefaultDevice = "/dev/tpmrm0"

// OpenDevice opens the TPM character device at path (normally
// DefaultDevice) and returns a connection that is safe for concurrent use.
// The caller closes it after every Enclave opened over it.
func OpenDevice(path string) (transport.TPMCloser, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tpm: open device: %w", err)
	}
	if fi.Mode()&fs.ModeCharDevice == 0 {
		return nil, fmt.Errorf("tpm: open device: %s is not a character device", path)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("tpm: open device: %w", err)
	}
	return &locked{tpm: transport.FromReadWriteCloser(f)}, nil
}

// locked serializes commands on a connection: a TPM device must not see
// two commands at once.
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
