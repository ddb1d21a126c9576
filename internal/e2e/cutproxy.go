package e2e

import (
	"io"
	"net"
	"sync"
	"testing"
)

// CutProxy forwards TCP connections from a loopback port to a server
// until it is cut: then it closes every connection it carries and refuses
// new ones (it accepts and closes them), as a network partition, a KMS
// restart or a database host that went away looks to a client, until it
// is restored.
type CutProxy struct {
	ln     net.Listener
	dial   func() (net.Conn, error)
	mu     sync.Mutex
	down   bool
	closed bool
	conns  map[net.Conn]struct{}
}

// NewCutProxy starts a proxy whose connections go to what dial connects
// to; it stops when t ends.
func NewCutProxy(t testing.TB, dial func() (net.Conn, error)) *CutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &CutProxy{ln: ln, dial: dial, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// Addr is the host:port the proxy listens on.
func (p *CutProxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every connection the proxy carries and refuses new ones
// until Restore.
func (p *CutProxy) Cut() { p.set(true) }

// Restore lets connections through again after Cut.
func (p *CutProxy) Restore() { p.set(false) }

func (p *CutProxy) set(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *CutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.down || p.closed
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		go p.pipe(c)
	}
}

// pipe copies between c and a new connection to the server until either
// side ends or the proxy is cut.
func (p *CutProxy) pipe(c net.Conn) {
	s, err := p.dial()
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down || p.closed { // cut while dialling
		p.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	p.conns[c], p.conns[s] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(s, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, s); done <- struct{}{} }()
	<-done
	c.Close()
	s.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}

func (p *CutProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.set(true)
}
