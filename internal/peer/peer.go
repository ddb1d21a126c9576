// Package peer binds callers of the sidecar's Unix socket: who is on the
// other end of a connection (SO_PEERCRED), and whether that uid may call.
//
// Start with ListenUnix for the socket, ConnContext as the
// http.Server.ConnContext that records each connection's credentials, and
// CheckUID in each request. The idea follows SPIRE's peertracker: the
// kernel, not the caller, says who the caller is.
package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
)

// Errors, to branch on with errors.Is.
var (
	// ErrNoCred: the connection's peer credentials are unknown (not a
	// Unix socket, SO_PEERCRED failed, or ConnContext did not run).
	ErrNoCred = errors.New("peer: no peer credentials")
	// ErrUIDNotAllowed: the caller's uid is not one the sidecar serves.
	ErrUIDNotAllowed = errors.New("peer: caller uid not allowed")
	// ErrPathInUse: ListenUnix found a live socket or a file that is not
	// a socket at the path, and left it alone.
	ErrPathInUse = errors.New("peer: socket path in use")
)

// Cred is what the kernel recorded about the process that connected, at
// connect(2) time. UID and GID are in the listener's user namespace: a
// peer whose ids do not map there shows as the overflow id (65534 by
// default), so never allow that uid. PID is for audit only: it may have
// exited and been reused since.
type Cred struct {
	PID int32
	UID uint32
	GID uint32
}

type ctxKey struct{}

// record is what ConnContext stores: the credentials or why there are none.
type record struct {
	cred Cred
	err  error
}

// ConnContext looks up c's peer credentials once, when the connection is
// accepted, and records them (or the failure) in the returned context. Use
// it as http.Server.ConnContext; *tls.Conn is unwrapped.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	cred, err := CredOf(c)
	return context.WithValue(ctx, ctxKey{}, record{cred, err})
}

// FromContext returns the credentials ConnContext recorded, and false if
// it recorded none.
func FromContext(ctx context.Context) (Cred, bool) {
	r, ok := ctx.Value(ctxKey{}).(record)
	if !ok || r.err != nil {
		return Cred{}, false
	}
	return r.cred, true
}

// CheckUID returns nil if the connection ConnContext recorded in ctx comes
// from one of the allowed uids, an error wrapping ErrUIDNotAllowed if it
// comes from another, and one wrapping ErrNoCred if its credentials are
// unknown. An empty allowed list allows nobody.
func CheckUID(ctx context.Context, allowed []uint32) error {
	r, ok := ctx.Value(ctxKey{}).(record)
	switch {
	case !ok:
		return fmt.Errorf("%w: connection not recorded by peer.ConnContext", ErrNoCred)
	case r.err != nil:
		return r.err
	case !slices.Contains(allowed, r.cred.UID):
		return fmt.Errorf("%w: uid %d", ErrUIDNotAllowed, r.cred.UID)
	}
	return nil
}
