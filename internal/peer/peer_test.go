package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
)

// server is an http.Server on a Unix socket that answers 200 to callers
// whose uid is in its allowed list and 403 to others, and remembers what
// it saw last.
type server struct {
	path    string
	allowed atomic.Pointer[[]uint32]
	seen    chan seen
}

type seen struct {
	cred Cred
	ok   bool
	err  error
}

func newServer(t *testing.T, path string, mode os.FileMode, allowed ...uint32) *server {
	t.Helper()
	s := &server{path: path, seen: make(chan seen, 16)}
	s.allowed.Store(&allowed)
	l, err := ListenUnix(path, mode)
	if err != nil {
		t.Fatalf("ListenUnix() = %v", err)
	}
	hs := &http.Server{
		ConnContext: ConnContext,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cred, ok := FromContext(r.Context())
			err := CheckUID(r.Context(), *s.allowed.Load())
			s.seen <- seen{cred, ok, err}
			if err != nil {
				http.Error(w, "forbidden", http.StatusForbidden)
				return
			}
			_, _ = io.WriteString(w, "ok")
		}),
	}
	go func() { _ = hs.Serve(l) }()
	t.Cleanup(func() { _ = hs.Close() })
	return s
}

func (s *server) allow(uids ...uint32) { s.allowed.Store(&uids) }

// get calls the server over its socket and returns the status code.
func get(t *testing.T, path string) int {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://sidecar/")
	if err != nil {
		t.Fatalf("GET = %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestCheckUIDOverHTTP(t *testing.T) {
	uid := uint32(os.Getuid())
	s := newServer(t, filepath.Join(t.TempDir(), "s"), 0)
	for _, tc := range []struct {
		name    string
		allowed []uint32
		status  int
		err     error
	}{
		{"Allowed", []uint32{uid}, http.StatusOK, nil},
		{"AmongOthers", []uint32{uid + 1, uid}, http.StatusOK, nil},
		{"NotAllowed", []uint32{uid + 1}, http.StatusForbidden, ErrUIDNotAllowed},
		{"EmptyPolicy", nil, http.StatusForbidden, ErrUIDNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.allow(tc.allowed...)
			if got := get(t, s.path); got != tc.status {
				t.Errorf("status = %d, want %d", got, tc.status)
			}
			got := <-s.seen
			if !errors.Is(got.err, tc.err) || (tc.err == nil) != (got.err == nil) {
				t.Errorf("CheckUID() = %v, want %v", got.err, tc.err)
			}
			want := Cred{PID: int32(os.Getpid()), UID: uid, GID: uint32(os.Getgid())}
			if !got.ok || got.cred != want {
				t.Errorf("FromContext() = %+v, %v; want %+v, true", got.cred, got.ok, want)
			}
		})
	}
}

func TestCredOf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	l, err := ListenUnix(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	conn, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	want := Cred{PID: int32(os.Getpid()), UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	for _, tc := range []struct {
		name string
		conn net.Conn
	}{
		{"UnixConn", conn},
		{"TLSConn", tls.Server(conn, &tls.Config{})},
		{"ClientSide", client},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CredOf(tc.conn)
			if err != nil || got != want {
				t.Errorf("CredOf() = %+v, %v; want %+v", got, err, want)
			}
		})
	}
}

func TestNoCred(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := CredOf(a); !errors.Is(err, ErrNoCred) {
		t.Errorf("CredOf(pipe) = %v, want ErrNoCred", err)
	}

	uid := []uint32{uint32(os.Getuid())}
	for _, tc := range []struct {
		name string
		ctx  context.Context
	}{
		{"NoConnContext", context.Background()},
		{"NotUnix", ConnContext(context.Background(), a)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckUID(tc.ctx, uid); !errors.Is(err, ErrNoCred) {
				t.Errorf("CheckUID() = %v, want ErrNoCred", err)
			}
			if c, ok := FromContext(tc.ctx); ok {
				t.Errorf("FromContext() = %+v, true; want false", c)
			}
		})
	}
}

// TestOtherUIDFileMode: with the default 0600 mode, another uid cannot
// even connect.
func TestOtherUIDFileMode(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a child as another uid")
	}
	dir := nobodyDir(t)
	bin := copyExecutable(t, dir)
	s := newServer(t, filepath.Join(dir, "s"), 0, 0, 65534)
	out, err := runAsNobody(t, bin, s.path, 65534)
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if string(out) != denied {
		t.Errorf("child got %q through a 0600 socket, want it denied", out)
	}
}

// TestOtherUID proves the uid check does not depend on the socket's file
// mode: a child process running as nobody connects to a 0666 socket and
// the server sees, and refuses, uid 65534.
func TestOtherUID(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a child as another uid")
	}
	const nobody = 65534
	dir := nobodyDir(t)
	bin := copyExecutable(t, dir)
	s := newServer(t, filepath.Join(dir, "s"), 0o666, 0)

	for _, tc := range []struct {
		name    string
		allowed []uint32
		status  int
		err     error
	}{
		{"Refused", []uint32{0}, http.StatusForbidden, ErrUIDNotAllowed},
		{"Allowed", []uint32{0, nobody}, http.StatusOK, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.allow(tc.allowed...)
			out, err := runAsNobody(t, bin, s.path, nobody)
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			if got, _ := strconv.Atoi(string(out)); got != tc.status {
				t.Errorf("child got status %q, want %d", out, tc.status)
			}
			got := <-s.seen
			if !got.ok || got.cred.UID != nobody || got.cred.GID != nobody {
				t.Errorf("server saw %+v (ok %v), want uid and gid %d", got.cred, got.ok, nobody)
			}
			if !errors.Is(got.err, tc.err) || (tc.err == nil) != (got.err == nil) {
				t.Errorf("CheckUID() = %v, want %v", got.err, tc.err)
			}
		})
	}
}
