//go:build !linux

package peer

import (
	"fmt"
	"net"
)

// CredOf returns the credentials of the process at the other end of c.
// SO_PEERCRED is Linux-only: elsewhere it always fails with ErrNoCred, so
// CheckUID refuses every caller.
func CredOf(c net.Conn) (Cred, error) {
	return Cred{}, fmt.Errorf("%w: peer credentials are supported on Linux only", ErrNoCred)
}
