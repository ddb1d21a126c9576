package sidecar_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/devenv"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/wire"
	"github.com/dcaas/dcaas/sidecar"
)

// The speed targets of the sidecar issue, as Go benchmarks (never timed
// unit tests). Run:
//
//	go test -run '^$' -bench . -benchtime 5s ./sidecar/
//
// Each reports ops/s and, where it runs closed-loop clients, p50/p99
// latency. Closed loop with 8 concurrent clients: b.SetParallelism(8 /
// GOMAXPROCS).

// benchFixture is a sidecar with one loaded AES key and its request log
// off, as dcaas bench runs it (BenchmarkUnixSocketEncrypt1KiBRequestLog
// measures the log).
func benchFixture(b *testing.B) (*fixture, string) {
	return benchFixtureLog(b, false)
}

func benchFixtureLog(b *testing.B, requestLog bool) (*fixture, string) {
	b.Helper()
	f := newFixture(b, func(c *sidecar.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
		c.NoRequestLog = !requestLog
	})
	dks := f.load(b, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	return f, dks[0].KeyID
}

func setClients(b *testing.B, n int) {
	p := n / runtime.GOMAXPROCS(0)
	if p < 1 {
		p = 1
	}
	b.SetParallelism(p)
}

// latencies collects per-op durations from parallel workers.
type latencies struct {
	mu  sync.Mutex
	all []time.Duration
}

func (l *latencies) add(d []time.Duration) {
	l.mu.Lock()
	l.all = append(l.all, d...)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B, opsPerCall int) {
	if len(l.all) == 0 {
		return
	}
	slices.Sort(l.all)
	q := func(p float64) float64 { return float64(l.all[int(p*float64(len(l.all)-1))].Microseconds()) }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(float64(b.N*opsPerCall)/b.Elapsed().Seconds(), "ops/s")
}

func BenchmarkLibraryEncrypt1KiB(b *testing.B) {
	f, key := benchFixture(b)
	msg := make([]byte, 1024)
	ctx := context.Background()
	setClients(b, 8)
	b.SetBytes(1024)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.sc.Encrypt(ctx, key, msg, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkLibraryEncryptAppend1KiB is library mode with the
// allocation-free API (a reused output buffer per client).
func BenchmarkLibraryEncryptAppend1KiB(b *testing.B) {
	f, key := benchFixture(b)
	msg := make([]byte, 1024)
	setClients(b, 8)
	b.SetBytes(1024)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, 2048)
		for pb.Next() {
			var err error
			if buf, err = f.sc.EncryptAppend(buf[:0], key, msg, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func BenchmarkUnixSocketEncrypt1KiB(b *testing.B) {
	f, key := benchFixture(b)
	encryptClients(b, f.socket, key)
}

// BenchmarkUnixSocketEncrypt1KiBRequestLog is the same with the sidecar's
// default request log on (one JSON line per request, written to
// io.Discard here): what `dcaas sidecar serve` does unless
// --request-log=false.
func BenchmarkUnixSocketEncrypt1KiBRequestLog(b *testing.B) {
	f, key := benchFixtureLog(b, true)
	encryptClients(b, f.socket, key)
}

// encryptClients runs 8 closed-loop clients encrypting 1 KiB with key over
// the Unix socket and reports ops/s and latencies.
func encryptClients(b *testing.B, socket, key string) {
	req := api.EncryptRequest{KeyRef: api.KeyRef{KeyID: key}, Plaintext: make([]byte, 1024)}
	closedLoop[api.EncryptResponse](b, socket, "/v1/crypto/encrypt", &req, 1) // &req, as the SDK's Encrypt sends it
}

// closedLoop runs 8 closed-loop clients that each POST req to path over the
// Unix socket, decoding the answer into a Resp of their own, and reports
// latencies per request and ops/s at opsPerReq operations a request. Pass
// req as a pointer to an api request type, as the SDK sends it: a value
// would take encoding/json, not the SDK's encoder.
func closedLoop[Resp any](b *testing.B, socket, path string, req any, opsPerReq int) {
	var lat latencies
	setClients(b, 8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := devenv.UnixClient(socket)
		var mine []time.Duration
		var out Resp
		for pb.Next() {
			start := time.Now()
			if err := c.Do(context.Background(), "POST", path, req, &out); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(start))
		}
		lat.add(mine)
	})
	b.StopTimer()
	lat.report(b, opsPerReq)
}

func BenchmarkUnixSocketBatch100Encrypt1KiB(b *testing.B) {
	f, key := benchFixture(b)
	req := api.BatchRequest{Ops: make([]api.BatchItem, 100)}
	for i := range req.Ops {
		req.Ops[i] = api.BatchItem{Op: api.OpEncrypt, KeyID: key, Plaintext: make([]byte, 1024)}
	}
	closedLoop[api.BatchResponse](b, f.socket, "/v1/crypto/batch", &req, 100) // &req, as the SDK's Batch sends it
}

// BenchmarkBootstrap1000 is start → enrolled → 1,000 keys imported by the
// rewrap flow (the KMS and the EKBs exist beforehand; the token is minted
// outside the timer).
func BenchmarkBootstrap1000(b *testing.B) {
	env, cust, creds, pipe, ekbs := loadingWorld(b)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		var tok api.EnrollmentToken
		pipe.MustDo(b, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: creds.DN}, &tok)
		dir := b.TempDir()
		b.StartTimer()
		sc, err := sidecar.New(context.Background(), sidecar.Config{KMSURL: env.URL, CAPEM: env.CAPEM, DataDir: dir, EnrollToken: sidecar.Secret([]byte(tok.Token)), Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		var wrapped api.WrappedKeys
		cust.MustDo(b, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: ekbs, WrappingCertPEM: sc.WrappingCertificatePEM()}, &wrapped)
		ids, err := sc.ImportKeys(context.Background(), &wrapped)
		if err != nil || len(ids) != 1000 {
			b.Fatalf("ImportKeys = %d, %v", len(ids), err)
		}
		b.StopTimer()
		sc.Close()
		b.StartTimer()
	}
}

// BenchmarkBareHTTPUnixEncrypt1KiB is the yardstick of
// BenchmarkUnixSocketEncrypt1KiB: a bare net/http server on a Unix socket
// doing the same work per request with nothing of dcaas's around it — the
// same JSON request and answer (the api types' fast codec), one AES-256-GCM
// encryption of the 1 KiB plaintext under a key held in memory — and the
// same client. The sidecar's figure divided by this one is what its key
// management, policy, lease and usage checks, routing and limits cost.
func BenchmarkBareHTTPUnixEncrypt1KiB(b *testing.B) {
	key, err := kcrypto.NewKey(api.KeyAES256GCM, "bare", 1, secret.New(kcrypto.Random(kcrypto.AEADKeySize)))
	if err != nil {
		b.Fatal(err)
	}
	socket := filepath.Join(b.TempDir(), "bare.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var req api.EncryptRequest
		if err != nil || !wire.Decode(body, &req) {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		ct, err := key.Encrypt(nil, req.Plaintext, req.AAD)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		out, _ := wire.Append(nil, &api.EncryptResponse{Ciphertext: ct, KeyID: key.KeyID(), KeyVersion: 1})
		_, _ = w.Write(out)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	encryptClients(b, socket, "bare")
}

// BenchmarkImport1000 is the sidecar's part of loading: opening one
// rewrapped batch of 1,000 keys (format 2) and holding every key, the
// keys evicted between iterations outside the timer.
func BenchmarkImport1000(b *testing.B) {
	env, cust, creds, pipe, ekbs := loadingWorld(b)
	var tok api.EnrollmentToken
	pipe.MustDo(b, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: creds.DN}, &tok)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sc, err := sidecar.New(context.Background(), sidecar.Config{KMSURL: env.URL, CAPEM: env.CAPEM, DataDir: b.TempDir(), EnrollToken: sidecar.Secret([]byte(tok.Token)), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	for b.Loop() {
		b.StopTimer()
		for _, k := range sc.Keys() {
			sc.Evict(k.KeyID)
		}
		var wrapped api.WrappedKeys // a fresh batch: a wrapped batch imports once
		cust.MustDo(b, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: ekbs, WrappingCertPEM: sc.WrappingCertificatePEM()}, &wrapped)
		b.StartTimer()
		if ids, err := sc.ImportKeys(context.Background(), &wrapped); err != nil || len(ids) != 1000 {
			b.Fatalf("ImportKeys = %d, %v", len(ids), err)
		}
	}
	b.ReportMetric(float64(1000*b.N)/b.Elapsed().Seconds(), "keys/s")
}

// loadingWorld is a KMS with a custodian, a pipeline app and 1,000
// aes-256-gcm EKBs of the custodian's.
func loadingWorld(b *testing.B) (env *kmstest.Env, cust *kmstest.Client, creds api.AppCredentials, pipe *kmstest.Client, ekbs [][]byte) {
	env = kmstest.Start(b, nil)
	env.Tenant(b, "acme")
	cust, creds = env.App(b, "acme", "payments-api", api.RoleCustodian)
	pipe, _ = env.App(b, "acme", "deployer", api.RolePipeline)
	ekbs = make([][]byte, 1000)
	for i := range ekbs {
		var dk api.DataKey
		cust.MustDo(b, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &dk)
		ekbs[i] = dk.EKB
	}
	return env, cust, creds, pipe, ekbs
}
