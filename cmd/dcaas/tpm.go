package main

import (
	"context"
	"errors"

	"github.com/dcaas/dcaas/internal/enclave"
)

func openTPM(ctx context.Context, f sidecarFlags) (enclave.Enclave, error) {
	return nil, errors.New("--enclave tpm is not wired yet")
}
