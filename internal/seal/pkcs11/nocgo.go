//go:build !cgo

package pkcs11

import (
	"context"
	"fmt"

	"github.com/dcaas/dcaas/internal/seal"
	"github.com/dcaas/dcaas/internal/secret"
)

// Sealer is the PKCS#11-backed seal.Sealer; this build (without cgo)
// cannot make one.
type Sealer struct{}

var _ seal.Sealer = (*Sealer)(nil)

// Open fails: PKCS#11 modules are C libraries, and this binary was built
// without cgo.
func Open(Config) (*Sealer, error) {
	return nil, fmt.Errorf("%w: this binary was built without cgo (CGO_ENABLED=0)", ErrModule)
}

// Name is "pkcs11".
func (*Sealer) Name() string { return "pkcs11" }

// Seal fails with ErrClosed.
func (*Sealer) Seal(context.Context, *secret.Bytes, []byte) ([]byte, error) { return nil, ErrClosed }

// Open fails with ErrClosed.
func (*Sealer) Open(context.Context, []byte, []byte) (*secret.Bytes, error) { return nil, ErrClosed }

// Close does nothing.
func (*Sealer) Close() error { return nil }
