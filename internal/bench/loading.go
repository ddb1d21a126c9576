package bench

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/devenv"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/sidecar"
)

// LoadResult is how fast one flow loads keys into a fresh sidecar.
type LoadResult struct {
	Flow       string  `json:"flow"`
	Keys       int     `json:"keys"`
	Seconds    float64 `json:"seconds"`
	KeysPerSec float64 `json:"keys_per_sec"`
	// CPUSeconds is the CPU time the whole process (KMS, sidecar and
	// client share it) spent meanwhile, user and system: steadier than
	// Seconds on a shared machine, and what a change to the work shows.
	CPUSeconds float64 `json:"cpu_seconds"`
}

// coldPause is how long Loading waits before a flow that must be a first
// load: until the KMS has forgotten the registry entries it read
// (kms.ReadCacheTTL). The package's test, which checks the flows and not
// their speed, sets it to 0.
var coldPause = kms.ReadCacheTTL + 100*time.Millisecond

// measureLoad runs f and returns its result for n keys as flow.
func measureLoad(flow string, n int, f func() error) (LoadResult, error) {
	cpu0, t0 := cpuSeconds(), time.Now()
	if err := f(); err != nil {
		return LoadResult{}, fmt.Errorf("%s: %w", flow, err)
	}
	s := time.Since(t0).Seconds()
	return LoadResult{Flow: flow, Keys: n, Seconds: s, KeysPerSec: float64(n) / s, CPUSeconds: cpuSeconds() - cpu0}, nil
}

// cpuSeconds is the CPU time the process has used, user and system.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// Loading measures start → enrolled (a new sidecar enrolling with a
// token), then loading n keys by each flow: rewrap (the SDK's
// LoadByRewrap over the sidecar's Unix socket, as `dcaas load rewrap`),
// the KMS's rewraps alone (a first load, then the same keys again at
// once), grant and seeds (the SDK's LoadByGrant and
// LoadBySeeds over the same socket; the sidecar talks to the KMS itself),
// and sealing them for the stateless mode. Keys are created beforehand and not timed. progress (optional)
// hears each flow's name and done fraction.
func Loading(ctx context.Context, env *devenv.Env, n int, dataDir string, progress func(string, float64)) (time.Duration, []LoadResult, error) {
	if progress == nil {
		progress = func(string, float64) {}
	}
	ekbs, err := createKeys(ctx, env, n, progress)
	if err != nil {
		return 0, nil, err
	}
	var tok api.EnrollmentToken
	if err := env.Pipeline.Do(ctx, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: env.CustodianDN}, &tok); err != nil {
		return 0, nil, err
	}
	start := time.Now()
	sc, err := sidecar.New(ctx, sidecar.Config{KMSURL: env.KMSURL, CAPEM: env.CAPEM, DataDir: dataDir, EnrollToken: sidecar.Secret([]byte(tok.Token)),
		Logger: slog.New(slog.DiscardHandler), NoRequestLog: true})
	if err != nil {
		return 0, nil, err
	}
	enroll := time.Since(start)
	defer sc.Close()

	var out []LoadResult
	// cold lets the KMS forget the registry entries the last flow read,
	// so that each flow is a first load.
	cold := func() { time.Sleep(coldPause) }
	// timed evicts every key, then times load (all n keys) as flow, a
	// first load.
	timed := func(flow string, load func() error) error {
		for _, id := range sc.Keys() {
			sc.Evict(id.KeyID)
		}
		cold()
		r, err := measureLoad(flow, n, load)
		if err == nil {
			out = append(out, r)
		}
		return err
	}
	cert := sc.WrappingCertificatePEM()
	// Rewrap as `dcaas load rewrap` does it: the SDK's LoadByRewrap over
	// the sidecar's Unix socket, the KMS rewrapping the next batch while
	// the sidecar imports the current one.
	local, stop, err := serveUnix(sc, filepath.Join(dataDir, "bench.sock"))
	if err != nil {
		return 0, nil, err
	}
	defer stop()
	err = timed("rewrap", func() error {
		_, err := client.LoadByRewrap(ctx, env.Custodian, local, ekbs, client.WithBatchSize(1000),
			client.WithProgress(func(done, total int) { progress("rewrap", float64(done)/float64(total)) }))
		return err
	})
	// The KMS's part alone: the same rewraps, one after another, each
	// answer received and decoded, none imported; first as a first load,
	// then again at once, as a rollout loading the same keys into many
	// sidecars does (the KMS remembers their registry entries for
	// kms.ReadCacheTTL).
	rewrapAll := func() error {
		for i := 0; i < n; i += 1000 {
			if _, err := env.Custodian.Rewrap(ctx, cert, ekbs[i:min(i+1000, n)]); err != nil {
				return err
			}
		}
		return nil
	}
	for _, flow := range []string{"KMS rewrap alone", "KMS rewrap again"} {
		if err != nil {
			break
		}
		if flow == "KMS rewrap alone" {
			cold()
		}
		var r LoadResult
		if r, err = measureLoad(flow, n, rewrapAll); err == nil {
			out = append(out, r)
		}
	}
	if err == nil {
		// Grant and seeds as `dcaas load grant` and `dcaas load seeds` do
		// them: the SDK's flows over the Unix socket, the KMS minting the
		// next batch's grant while the sidecar loads the current one.
		err = timed("grant", func() error {
			_, err := client.LoadByGrant(ctx, env.Custodian, local, ekbs, nil, client.WithBatchSize(1000),
				client.WithProgress(func(done, total int) { progress("grant", float64(done)/float64(total)) }))
			return err
		})
	}
	if err == nil {
		seeds := make([]api.Seed, n)
		for i := range seeds {
			seeds[i] = api.Seed{Seed: kcrypto.Random(32), Type: api.KeyAES256GCM}
		}
		err = timed("seeds", func() error {
			_, err := client.LoadBySeeds(ctx, env.Custodian, local, seeds, client.WithBatchSize(1000),
				client.WithProgress(func(done, total int) { progress("seeds", float64(done)/float64(total)) }))
			return err
		})
	}
	if err == nil {
		// Stateless: seal keys loaded by rewrap (loading is not timed here).
		for _, k := range sc.Keys() {
			sc.Evict(k.KeyID)
		}
		for i := 0; i < n && err == nil; i += 1000 {
			var w api.WrappedKeys
			if err = env.Custodian.Do(ctx, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: ekbs[i:min(i+1000, n)], WrappingCertPEM: cert}, &w); err == nil {
				_, err = sc.ImportKeys(ctx, &w)
			}
		}
		if err == nil {
			ids := make([]string, 0, n)
			for _, k := range sc.Keys() {
				ids = append(ids, k.KeyID)
			}
			var r LoadResult
			r, err = measureLoad("seal (stateless)", len(ids), func() error {
				for i := 0; i < len(ids); i += 1000 {
					if _, err := sc.Seal(ctx, ids[i:min(i+1000, len(ids))]); err != nil {
						return err
					}
					progress("seal", float64(min(i+1000, len(ids)))/float64(len(ids)))
				}
				return nil
			})
			out = append(out, r)
		}
	}
	return enroll, out, err
}

// createKeys makes n AES data keys with a few concurrent clients.
func createKeys(ctx context.Context, env *devenv.Env, n int, progress func(string, float64)) ([][]byte, error) {
	ekbs := make([][]byte, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	done := 0
	next := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				var dk api.DataKey
				err := env.Custodian.Do(ctx, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &dk)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				ekbs[i] = dk.EKB
				done++
				if done%100 == 0 {
					progress("creating keys", float64(done)/float64(n))
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return ekbs, firstErr
}

// serveUnix serves sc on a Unix socket at path and returns an SDK client
// of it (one attempt per call) and the function that stops serving.
func serveUnix(sc *sidecar.Sidecar, path string) (*client.Sidecar, func(), error) {
	ln, err := sidecar.ListenUnix(path)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = sc.Serve(ctx, ln) }()
	local, err := client.NewSidecarUnix(path, client.WithRetry(1, 0, 0))
	if err != nil {
		cancel()
		<-done
		return nil, nil, err
	}
	return local, func() { local.Close(); cancel(); <-done }, nil
}
