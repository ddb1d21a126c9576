package connlimit

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dialFrom opens a TCP connection to addr from the loopback address src
// (127.0.0.0/8 is all loopback on Linux: distinct clients on one host).
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return d.Dial("tcp", addr)
}

// waitClosed reports whether the server closed c (a read ends) within d.
func waitClosed(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errorsAs(err, &ne) && ne.Timeout())
}

func errorsAs(err error, ne *net.Error) bool {
	e, ok := err.(net.Error)
	if ok {
		*ne = e
	}
	return ok
}

func TestCaps(t *testing.T) {
	for _, tt := range []struct {
		name         string
		lim          Limits
		fromA, fromB int // connections opened from two clients
		wantA, wantB int // kept open
	}{
		{"no caps", Limits{}, 30, 5, 30, 5},
		{"per client", Limits{PerClient: 10}, 30, 5, 10, 5},
		{"total", Limits{Total: 12}, 10, 5, 10, 2},
		{"both", Limits{Total: 14, PerClient: 10}, 30, 5, 10, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var refused sync.Map
			l := Wrap(ln, tt.lim, func(r Refusal) {
				n, _ := refused.LoadOrStore(r, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			})
			defer l.Close()
			var held []net.Conn
			var mu sync.Mutex
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					mu.Lock()
					held = append(held, c)
					mu.Unlock()
				}
			}()
			open := func(src string, n int) int {
				var conns []net.Conn
				for range n {
					c, err := dialFrom(src, ln.Addr().String())
					if err != nil {
						continue // reset before connect returned: refused
					}
					defer c.Close()
					conns = append(conns, c)
				}
				var kept atomic.Int64
				var wg sync.WaitGroup
				for _, c := range conns {
					wg.Go(func() {
						if !waitClosed(c, 300*time.Millisecond) {
							kept.Add(1)
						}
					})
				}
				wg.Wait()
				return int(kept.Load())
			}
			if got := open("127.0.0.2", tt.fromA); got != tt.wantA {
				t.Errorf("client A kept %d of %d connections, want %d", got, tt.fromA, tt.wantA)
			}
			if got := open("127.0.0.3", tt.fromB); got != tt.wantB {
				t.Errorf("client B kept %d of %d connections, want %d", got, tt.fromB, tt.wantB)
			}
			if got := l.Open(); got != tt.wantA+tt.wantB {
				t.Errorf("Open() = %d, want %d", got, tt.wantA+tt.wantB)
			}
			// Closing frees the slots: A gets its cap again.
			mu.Lock()
			for _, c := range held {
				c.Close()
				c.Close() // twice: released once
			}
			held = nil
			mu.Unlock()
			if got := l.Open(); got != 0 {
				t.Errorf("Open() after closing everything = %d", got)
			}
			if got := open("127.0.0.2", tt.fromA); got != tt.wantA {
				t.Errorf("after the slots were freed client A kept %d, want %d", got, tt.wantA)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, lim := range []Limits{{Total: -1}, {PerClient: -1}} {
		if lim.Validate() == nil {
			t.Errorf("Validate(%+v) = nil", lim)
		}
	}
	if err := (Limits{Total: 10, PerClient: 2}).Validate(); err != nil {
		t.Error(err)
	}
}

// TestFlood: an HTTPS server with the caps keeps answering a legitimate
// client while three other clients open a thousand idle connections each and a
// third trickles headers byte by byte (slowloris). The trickling ones are
// cut at the header timeout.
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("opens thousands of connections")
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	var refused atomic.Int64
	srv.Listener = Wrap(srv.Listener, Limits{Total: 1000, PerClient: 200}, func(Refusal) { refused.Add(1) })
	srv.Config.ReadHeaderTimeout = time.Second
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // thousands of aborted handshakes
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for _, src := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.5"} {
		for range 1000 {
			c, err := dialFrom(src, addr)
			if err != nil {
				continue // reset at once: refused
			}
			flood = append(flood, c)
		}
	}
	// Slowloris: TLS done, then a header byte every 200 ms.
	var slow []*tls.Conn
	for range 50 {
		raw, err := dialFrom("127.0.0.4", addr)
		if err != nil {
			t.Fatal(err)
		}
		c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		slow = append(slow, c)
	}
	stop := make(chan struct{})
	defer close(stop)
	var cut atomic.Int64
	for _, c := range slow {
		go func() {
			for _, b := range []byte("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa") {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				if _, err := c.Write([]byte{b}); err != nil {
					cut.Add(1)
					return
				}
			}
		}()
	}

	client := srv.Client()
	client.Timeout = 5 * time.Second
	var lat []time.Duration
	for range 200 {
		start := time.Now()
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatalf("legitimate request during the flood: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(start))
		time.Sleep(5 * time.Millisecond)
	}
	// The trickling connections are cut 1 s after they connected (the
	// header timeout); their writes fail soon after.
	for deadline := time.Now().Add(10 * time.Second); cut.Load() < int64(len(slow)) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	slices.Sort(lat)
	t.Logf("legitimate client during the flood: p50 %v, p99 %v, max %v; %d flood connections refused; %d slow ones cut",
		lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1], refused.Load(), cut.Load())
	if refused.Load() < 2400 {
		t.Errorf("%d connections refused, want at least 2400 (3 × (1000 − 200))", refused.Load())
	}
	if cut.Load() != int64(len(slow)) {
		t.Errorf("%d of %d slow connections cut at the header timeout", cut.Load(), len(slow))
	}
}
