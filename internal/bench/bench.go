// Package bench measures dcaas side by side on one machine: the same
// operation through every deployment shape (library mode, the sidecar over
// its Unix socket single and batched, through its transit API and its
// Kubernetes KMS v2 plugin, over loopback mTLS, the KMS central path, and
// the central path behind a delay proxy that adds a stated round-trip
// time), closed loop, and key loading by every flow.
// `dcaas bench` prints, serializes and plots what Run returns.
package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/devenv"
)

// Options configure a run. Zero values mean the defaults noted.
type Options struct {
	Concurrency int           // closed-loop clients per mode (default 8)
	Duration    time.Duration // per mode (default 5 s)
	Size        int           // message size in bytes (default 1024)
	Op          string        // encrypt (default), decrypt, mac, sign
	Batch       int           // operations per batch request (default 100)
	RTT         time.Duration // > 0 adds the "central + RTT" mode
	Modes       []string      // subset of mode names to run (default all)
	// Progress, if set, is told each mode's name and elapsed fraction.
	Progress func(mode string, done float64)
}

func (o *Options) defaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Size <= 0 {
		o.Size = 1024
	}
	if o.Op == "" {
		o.Op = "encrypt"
	}
	if o.Batch <= 0 {
		o.Batch = 100
	}
}

// Result is one mode's figures.
type Result struct {
	Mode      string  `json:"mode"`
	Ops       int64   `json:"ops"`
	Errors    int64   `json:"errors"`
	Seconds   float64 `json:"seconds"`
	OpsPerSec float64 `json:"ops_per_sec"`
	// Latencies of one request (a whole batch in batch mode), in µs.
	P50us  float64 `json:"p50_us"`
	P99us  float64 `json:"p99_us"`
	P999us float64 `json:"p999_us"`
	// VsCentral is OpsPerSec divided by the central path's.
	VsCentral float64 `json:"vs_central"`
}

// Mode names.
const (
	ModeLibrary    = "library"
	ModeUnix       = "unix"
	ModeUnixBatch  = "unix-batch"
	ModeMTLS       = "mtls"
	ModeCentral    = "central"
	ModeCentralRTT = "central+rtt"
)

// call performs one request of a mode and reports how many operations it
// carried.
type call func(ctx context.Context) (int, error)

// mode is a prepared benchmark mode: newCall builds one worker's call.
type mode struct {
	name    string
	newCall func() call
}

// Run measures every mode against env, which must have its KMS running.
func Run(ctx context.Context, env *devenv.Env, o Options) ([]Result, error) {
	o.defaults()
	w, err := prepare(ctx, env, o)
	if err != nil {
		return nil, err
	}
	defer w.close()
	var out []Result
	for _, m := range w.modes {
		if len(o.Modes) > 0 && !slices.Contains(o.Modes, m.name) {
			continue
		}
		r, err := measure(ctx, m, o)
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", m.name, err)
		}
		out = append(out, r)
	}
	var central float64
	for _, r := range out {
		if r.Mode == ModeCentral {
			central = r.OpsPerSec
		}
	}
	for i := range out {
		if central > 0 {
			out[i].VsCentral = out[i].OpsPerSec / central
		}
	}
	return out, nil
}

// measure runs one mode closed loop for o.Duration.
func measure(ctx context.Context, m mode, o Options) (Result, error) {
	// Warm up each worker's connection first and check the call works.
	calls := make([]call, o.Concurrency)
	for i := range calls {
		calls[i] = m.newCall()
		if _, err := calls[i](ctx); err != nil {
			return Result{}, err
		}
	}
	// Each worker counts its own operations and reads the clock twice per
	// call (the end of one call is also the deadline check): in library
	// mode, where a call takes about a microsecond, a third clock read and
	// a counter shared by all workers (its cache line moving between the
	// cores at every operation) were a sixth of the profile, the harness's
	// cost counted as the sidecar's.
	var ops, errs atomic.Int64
	lat := make([][]time.Duration, o.Concurrency)
	start := time.Now()
	deadline := start.Add(o.Duration)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			mine := make([]time.Duration, 0, 1<<14)
			var done, failed int64
			for t0 := time.Now(); t0.Before(deadline) && ctx.Err() == nil; {
				n, err := calls[i](ctx)
				t1 := time.Now()
				if err != nil {
					failed++
				} else {
					mine = append(mine, t1.Sub(t0))
					done += int64(n)
				}
				t0 = t1
			}
			lat[i] = mine
			ops.Add(done)
			errs.Add(failed)
		}(i)
	}
	if o.Progress != nil {
		go func() {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					o.Progress(m.name, min(1, float64(time.Since(start))/float64(o.Duration)))
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	elapsed := time.Since(start).Seconds()
	all := slices.Concat(lat...)
	slices.Sort(all)
	q := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[int(p*float64(len(all)-1))].Nanoseconds()) / 1e3
	}
	return Result{
		Mode: m.name, Ops: ops.Load(), Errors: errs.Load(), Seconds: elapsed,
		OpsPerSec: float64(ops.Load()) / elapsed, P50us: q(0.50), P99us: q(0.99), P999us: q(0.999),
	}, ctx.Err()
}

// world is what the modes share: keys, ciphertexts, listeners.
type world struct {
	modes   []mode
	closers []func()
}

func (w *world) close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
	}
}

// prepare creates the key the run uses, loads it into the sidecar, and
// builds every mode.
func prepare(ctx context.Context, env *devenv.Env, o Options) (*world, error) {
	keyType := map[string]api.KeyType{"encrypt": api.KeyAES256GCM, "decrypt": api.KeyAES256GCM, "mac": api.KeyHMACSHA256, "sign": api.KeyEd25519}[o.Op]
	if keyType == "" {
		return nil, fmt.Errorf("bench: unknown --op %q: use encrypt, decrypt, mac or sign", o.Op)
	}
	keys, err := env.NewKeys(ctx, keyType, 1, false)
	if err != nil {
		return nil, err
	}
	dk := keys[0]
	if err := env.LoadByRewrap(ctx, [][]byte{dk.EKB}); err != nil {
		return nil, err
	}
	msg := make([]byte, o.Size)
	var ct []byte
	if o.Op == "decrypt" {
		if ct, err = env.Sidecar.Encrypt(ctx, dk.KeyID, msg, nil); err != nil {
			return nil, err
		}
	}
	// item is the operation as a batch item; req the single request.
	item := api.BatchItem{Op: o.Op, KeyID: dk.KeyID}
	switch o.Op {
	case "encrypt":
		item.Plaintext = msg
	case "decrypt":
		item.Ciphertext = ct
	default:
		item.Message = msg
	}
	// single is one operation at a time through the public SDK, as an
	// application calls a sidecar or the KMS's central path.
	single := func(c opsClient, err error, ref api.KeyRef) call {
		if err != nil {
			return func(context.Context) (int, error) { return 0, err }
		}
		return func(ctx context.Context) (int, error) { return 1, sdkCall(ctx, c, o.Op, ref, msg, ct) }
	}
	w := &world{}
	w.modes = append(w.modes, mode{name: ModeLibrary, newCall: func() call {
		return func(ctx context.Context) (int, error) { return 1, libraryCall(ctx, env, o.Op, dk.KeyID, msg, ct) }
	}})
	w.modes = append(w.modes, mode{name: ModeUnix, newCall: func() call {
		c, err := client.NewSidecarUnix(env.Socket, client.WithRetry(1, 0, 0))
		return single(c, err, api.KeyRef{KeyID: dk.KeyID})
	}})
	w.modes = append(w.modes, mode{name: ModeUnixBatch, newCall: func() call {
		c, err := client.NewSidecarUnix(env.Socket, client.WithRetry(1, 0, 0))
		if err != nil {
			return func(context.Context) (int, error) { return 0, err }
		}
		items := slices.Repeat([]api.BatchItem{item}, o.Batch)
		return func(ctx context.Context) (int, error) {
			results, err := c.Batch(ctx, items)
			if err != nil {
				return 0, err
			}
			for _, r := range results {
				if err := client.BatchError(r); err != nil {
					return 0, err
				}
			}
			return len(results), nil
		}
	}})
	tm, err := transitMode(ctx, env, o.Op, dk.KeyID, msg)
	if err != nil {
		return nil, err
	}
	w.modes = append(w.modes, tm)
	km, stopPlugin, ok, err := kmsPluginMode(ctx, env, o.Op, dk, o.Size)
	if err != nil {
		return nil, err
	}
	if ok {
		w.closers = append(w.closers, stopPlugin)
		w.modes = append(w.modes, km)
	}
	mtlsURL, closeMTLS, err := startMTLS(ctx, env)
	if err != nil {
		return nil, err
	}
	w.closers = append(w.closers, closeMTLS)
	w.modes = append(w.modes, mode{name: ModeMTLS, newCall: func() call {
		c, err := mtlsClient(env, mtlsURL)
		return single(c, err, api.KeyRef{KeyID: dk.KeyID})
	}})
	w.modes = append(w.modes, mode{name: ModeCentral, newCall: func() call {
		c, err := centralClient(env, env.KMSURL)
		return single(c, err, api.KeyRef{EKB: dk.EKB})
	}})
	if o.RTT > 0 {
		proxyURL, closeProxy, err := startDelayProxy(env.KMSURL, o.RTT)
		if err != nil {
			return nil, err
		}
		w.closers = append(w.closers, closeProxy)
		w.modes = append(w.modes, mode{name: fmt.Sprintf("%s (%s)", ModeCentralRTT, o.RTT), newCall: func() call {
			c, err := centralClient(env, proxyURL)
			return single(c, err, api.KeyRef{EKB: dk.EKB})
		}})
	}
	return w, nil
}

// opsClient is the operations API of the SDK's sidecar and KMS clients.
type opsClient interface {
	Encrypt(ctx context.Context, key api.KeyRef, plaintext, aad []byte) (*api.EncryptResponse, error)
	Decrypt(ctx context.Context, key api.KeyRef, ciphertext, aad []byte) ([]byte, error)
	MAC(ctx context.Context, key api.KeyRef, message []byte) (*api.MACResponse, error)
	Sign(ctx context.Context, key api.KeyRef, message []byte) (*api.SignResponse, error)
}

// sdkCall is one operation op through c.
func sdkCall(ctx context.Context, c opsClient, op string, ref api.KeyRef, msg, ct []byte) error {
	var err error
	switch op {
	case "decrypt":
		_, err = c.Decrypt(ctx, ref, ct, nil)
	case "mac":
		_, err = c.MAC(ctx, ref, msg)
	case "sign":
		_, err = c.Sign(ctx, ref, msg)
	default:
		_, err = c.Encrypt(ctx, ref, msg, nil)
	}
	return err
}

func libraryCall(ctx context.Context, env *devenv.Env, op, keyID string, msg, ct []byte) error {
	var err error
	switch op {
	case "decrypt":
		_, err = env.Sidecar.Decrypt(ctx, ct, nil)
	case "mac":
		_, err = env.Sidecar.MAC(ctx, keyID, msg)
	case "sign":
		_, err = env.Sidecar.Sign(ctx, keyID, msg)
	default:
		_, err = env.Sidecar.Encrypt(ctx, keyID, msg, nil)
	}
	return err
}

// startMTLS serves the sidecar on a loopback mTLS listener.
func startMTLS(ctx context.Context, env *devenv.Env) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	tln, err := env.Sidecar.TLSListener(ctx, ln)
	if err != nil {
		ln.Close()
		return "", nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = env.Sidecar.Serve(sctx, tln) }()
	return "https://" + ln.Addr().String(), func() { cancel(); <-done }, nil
}

// mtlsClient is the custodian calling its sidecar over mTLS, through the
// SDK, without retries (a failure counts).
func mtlsClient(env *devenv.Env, url string) (*client.Sidecar, error) {
	certPEM, keyPEM, err := custodianPEM(env)
	if err != nil {
		return nil, err
	}
	return client.NewSidecarTLS(url, env.CAPEM, certPEM, keyPEM, env.Sidecar.ServerName(), client.WithRetry(1, 0, 0))
}

// centralClient is the custodian calling the KMS's central path at url
// (the KMS, or a proxy in front of it), through the SDK, without retries.
func centralClient(env *devenv.Env, url string) (*client.KMS, error) {
	certPEM, keyPEM, err := custodianPEM(env)
	if err != nil {
		return nil, err
	}
	return client.NewKMS([]string{url}, env.CAPEM, certPEM, keyPEM, client.WithRetry(1, 0, 0))
}

func custodianPEM(env *devenv.Env) (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(env.CustodianCert); err != nil {
		return nil, nil, err
	}
	keyPEM, err = os.ReadFile(env.CustodianKey)
	return certPEM, keyPEM, err
}
