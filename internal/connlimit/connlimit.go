// Package connlimit caps the connections a listener holds open, in all and
// per client address, so a flood of idle or slow connections from one
// place cannot take every file descriptor of a KMS or a sidecar and starve
// everyone else.
//
// A connection over a cap is accepted and closed at once (the kernel has
// already completed its handshake): the flooder sees a reset, a legitimate
// client from elsewhere keeps being served, and a client whose SDK retries
// tries another replica. Limits count open connections, not requests: an
// HTTP client reuses a few keep-alive connections for all its requests.
//
// Behind a TCP load balancer every connection comes from the balancer's
// address: set the per-client cap to 0 there (or at least as high as the
// total), and cap clients at the balancer.
package connlimit

import (
	"errors"
	"net"
	"sync"
)

// Limits are the caps of one listener. Zero means no cap.
type Limits struct {
	// Total caps the connections open at once.
	Total int
	// PerClient caps the connections open at once from one client: one IP
	// address for TCP (the port is ignored), one Unix peer for a socket is
	// not distinguished (all share the Total cap).
	PerClient int
}

// Refusal names why a connection was refused, for metrics.
type Refusal string

const (
	RefusedTotal     Refusal = "total"
	RefusedPerClient Refusal = "per_client"
)

// Listener is a net.Listener that enforces Limits.
type Listener struct {
	net.Listener
	lim     Limits
	refused func(Refusal) // may be nil

	mu     sync.Mutex
	open   int
	client map[string]int
}

// Wrap caps the connections of ln. refused, if not nil, is called for each
// connection refused (from Accept's goroutine).
func Wrap(ln net.Listener, lim Limits, refused func(Refusal)) *Listener {
	return &Listener{Listener: ln, lim: lim, refused: refused, client: map[string]int{}}
}

// Accept returns the next connection within the caps; connections over a
// cap are closed and not returned.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := clientKey(c.RemoteAddr())
		if why, ok := l.admit(key); !ok {
			if tc, isTCP := c.(*net.TCPConn); isTCP {
				_ = tc.SetLinger(0) // a reset, not a lingering close
			}
			c.Close()
			if l.refused != nil {
				l.refused(why)
			}
			continue
		}
		return &conn{Conn: c, l: l, key: key}, nil
	}
}

// Open reports the connections open now.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

func (l *Listener) admit(key string) (Refusal, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lim.Total > 0 && l.open >= l.lim.Total {
		return RefusedTotal, false
	}
	if key != "" && l.lim.PerClient > 0 && l.client[key] >= l.lim.PerClient {
		return RefusedPerClient, false
	}
	l.open++
	if key != "" {
		l.client[key]++
	}
	return "", true
}

func (l *Listener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if key == "" {
		return
	}
	if l.client[key]--; l.client[key] <= 0 {
		delete(l.client, key)
	}
}

// clientKey is the address a per-client cap counts: the IP of a TCP peer,
// "" (no per-client cap) for anything else.
func clientKey(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	return ""
}

// conn releases its slot once, on the first Close.
type conn struct {
	net.Conn
	l    *Listener
	key  string
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key) })
	return err
}

// Unwrap returns the underlying connection (for peer credentials of a Unix
// socket, or a TCP connection's options).
func (c *conn) Unwrap() net.Conn { return c.Conn }

// ErrInvalid is returned by Validate for a negative cap.
var ErrInvalid = errors.New("connlimit: a cap must be 0 (none) or positive")

// Validate checks lim.
func (lim Limits) Validate() error {
	if lim.Total < 0 || lim.PerClient < 0 {
		return ErrInvalid
	}
	return nil
}
