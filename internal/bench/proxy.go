package bench

import (
	"io"
	"net"
	"net/url"
	"sync"
	"time"
)

// startDelayProxy forwards TCP on a loopback port to the host of target,
// delaying every chunk by rtt/2 in each direction — what a data-centre
// network adds to every call of the central path. It returns the URL to
// use instead of target, with the same scheme (TLS passes through).
func startDelayProxy(target string, rtt time.Duration) (string, func(), error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", u.Host)
			if err != nil {
				c.Close()
				continue
			}
			track(c)
			track(up)
			go delayedCopy(up, c, rtt/2)
			go delayedCopy(c, up, rtt/2)
		}
	}()
	stop := func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}
	return u.Scheme + "://" + ln.Addr().String(), stop, nil
}

// delayedCopy copies src to dst, holding each chunk for delay (chunks keep
// their order; the delay is per chunk, like propagation on a link).
func delayedCopy(dst, src net.Conn, delay time.Duration) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	ch := make(chan chunk, 64)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{buf[:n], time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.b); err != nil {
			break
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	} else {
		_ = dst.Close()
	}
	_, _ = io.Copy(io.Discard, src)
}
