package peer

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// CredOf returns the credentials of the process at the other end of c, a
// Unix socket connection (or a *tls.Conn, or anything with a NetConn
// method, over one), from SO_PEERCRED. Errors wrap ErrNoCred.
func CredOf(c net.Conn) (Cred, error) {
	uc, ok := unwrap(c).(*net.UnixConn)
	if !ok {
		return Cred{}, fmt.Errorf("%w: %T is not a Unix socket connection", ErrNoCred, unwrap(c))
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("%w: %w", ErrNoCred, err)
	}
	var ucred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		ucred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Cred{}, fmt.Errorf("%w: %w", ErrNoCred, err)
	}
	if serr != nil {
		return Cred{}, fmt.Errorf("%w: SO_PEERCRED: %w", ErrNoCred, serr)
	}
	return Cred{PID: ucred.Pid, UID: ucred.Uid, GID: ucred.Gid}, nil
}

// unwrap peels *tls.Conn and similar wrappers off c.
func unwrap(c net.Conn) net.Conn {
	for {
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		inner := w.NetConn()
		if inner == nil || inner == c {
			return c
		}
		c = inner
	}
}
