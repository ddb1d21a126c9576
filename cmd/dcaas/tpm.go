package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/enclave/tpm"
)

// tpmEnclave is a TPM enclave that also owns its device connection.
type tpmEnclave struct {
	*tpm.Enclave
	closeDev func() error
}

func (t *tpmEnclave) Close() error { return errors.Join(t.Enclave.Close(), t.closeDev()) }

// openTPM opens the TPM device and the enclave whose TPM-wrapped key blobs
// live in DATA-DIR/tpm (so a restart on the same TPM keeps its keys).
func openTPM(ctx context.Context, f sidecarFlags) (enclave.Enclave, error) {
	dev, err := tpm.OpenDevice(f.tpmDevice)
	if err != nil {
		return nil, fmt.Errorf("--tpm-device %s: %w", f.tpmDevice, err)
	}
	enc, err := tpm.Open(ctx, dev, filepath.Join(f.dataDir, "tpm"))
	if err != nil {
		dev.Close()
		return nil, err
	}
	return &tpmEnclave{Enclave: enc, closeDev: dev.Close}, nil
}
