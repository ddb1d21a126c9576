package client

import (
	"context"
	"fmt"

	"github.com/dcaas/dcaas/api"
)

// MaxBatch is the most keys one step of a loading flow carries: one
// rewrap + import, one grant + load, one grant + derive, or one seal.
const MaxBatch = 1000

// FlowOption adjusts LoadByRewrap, LoadByGrant, LoadBySeeds and Stateless.
type FlowOption func(*flowOptions)

type flowOptions struct {
	batch    int
	progress func(done, total int)
}

// WithBatchSize sets how many keys each step of a flow carries (default
// and at most MaxBatch).
func WithBatchSize(n int) FlowOption {
	return func(o *flowOptions) {
		if n > 0 && n <= MaxBatch {
			o.batch = n
		}
	}
}

// WithProgress has a flow call fn after each batch with how many of the
// total inputs (EKBs, key ids, seeds) are done. fn runs on the calling
// goroutine.
func WithProgress(fn func(done, total int)) FlowOption {
	return func(o *flowOptions) { o.progress = fn }
}

func flowOpts(opts []FlowOption) flowOptions {
	o := flowOptions{batch: MaxBatch, progress: func(int, int) {}}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// batches calls fn for each [lo, hi) window of n items, reporting progress.
func (o flowOptions) batches(n int, fn func(lo, hi int) error) error {
	for lo := 0; lo < n; lo += o.batch {
		hi := min(lo+o.batch, n)
		if err := fn(lo, hi); err != nil {
			return err
		}
		o.progress(hi, n)
	}
	return nil
}

// pipelined is batches with fetching one window ahead: while apply works
// on window k (a sidecar importing it), fetch already works on window k+1
// (the KMS rewrapping it), so neither side waits for the other's round
// trip, fsync and CPU. It stops at the first error; a fetch still in
// flight then is cancelled and waited for.
func pipelined[T any](ctx context.Context, o flowOptions, n int, fetch func(ctx context.Context, lo, hi int) (T, error), apply func(v T, lo, hi int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	start := func(lo int) chan result {
		ch := make(chan result, 1)
		go func() {
			v, err := fetch(ctx, lo, min(lo+o.batch, n))
			ch <- result{v, err}
		}()
		return ch
	}
	pending := start(0)
	for lo := 0; lo < n; lo += o.batch {
		hi := min(lo+o.batch, n)
		r := <-pending
		if r.err != nil {
			return r.err
		}
		pending = nil
		if hi < n {
			pending = start(hi)
		}
		if err := apply(r.v, lo, hi); err != nil {
			if pending != nil {
				cancel()
				<-pending
			}
			return err
		}
		o.progress(hi, n)
	}
	return nil
}

// idSet collects distinct key ids in first-seen order.
type idSet struct {
	seen map[string]bool
	ids  []string
}

func (s *idSet) add(ids []string) {
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	for _, id := range ids {
		if !s.seen[id] {
			s.seen[id] = true
			s.ids = append(s.ids, id)
		}
	}
}

// LoadByRewrap loads ekbs into sc by the primary flow (docs/design.md, "Rewrap to a wrapping certificate"):
// it fetches sc's wrapping certificate, has kms rewrap the EKBs to it and
// imports the result into sc, MaxBatch EKBs at a time. The custodian
// behind kms must be the one sc is bound to. Give every version of a key
// that old ciphertexts need.
//
// The KMS rewraps the next batch while sc imports the current one.
//
// It returns the distinct key ids loaded, in first-seen order. When a
// batch fails, the earlier batches stay loaded: the ids loaded so far are
// returned with the error, which wraps the *Error of the refusal. (The
// batch after a failed import may have been rewrapped already: its answer
// is dropped, unimported, and expires.)
func LoadByRewrap(ctx context.Context, kms *KMS, sc *Sidecar, ekbs [][]byte, opts ...FlowOption) ([]string, error) {
	if len(ekbs) == 0 {
		return nil, nil
	}
	o := flowOpts(opts)
	cert, err := sc.WrappingCertificate(ctx)
	if err != nil {
		return nil, fmt.Errorf("client: the sidecar's wrapping certificate: %w", err)
	}
	var loaded idSet
	err = pipelined(ctx, o, len(ekbs), func(ctx context.Context, lo, hi int) (*api.WrappedKeys, error) {
		wrapped, err := kms.Rewrap(ctx, cert, ekbs[lo:hi])
		if err != nil {
			return nil, fmt.Errorf("client: rewrap of EKBs %d..%d: %w", lo, hi-1, err)
		}
		return wrapped, nil
	}, func(wrapped *api.WrappedKeys, lo, hi int) error {
		ids, err := sc.Import(ctx, wrapped)
		if err != nil {
			return fmt.Errorf("client: import of EKBs %d..%d: %w", lo, hi-1, err)
		}
		loaded.add(ids)
		return nil
	})
	return loaded.ids, err
}

// LoadByGrant loads ekbs and retained keyIDs into sc by the grant flow
// (docs/design.md, "Grant and secure channel"): for each batch, kms mints a single-use grant bound to
// sc's instance and exactly those keys, and sc presents it to the KMS
// itself. A retained key id loads every version of the key.
//
// The KMS mints the next batch's grant while sc loads the current one.
// Results and partial failures are as for LoadByRewrap (the grant minted
// for the batch after a failed load is dropped, unused, and expires).
func LoadByGrant(ctx context.Context, kms *KMS, sc *Sidecar, ekbs [][]byte, keyIDs []string, opts ...FlowOption) ([]string, error) {
	n := len(ekbs) + len(keyIDs)
	if n == 0 {
		return nil, nil
	}
	o := flowOpts(opts)
	inst, err := instanceOf(ctx, sc)
	if err != nil {
		return nil, err
	}
	// The window runs over the EKBs first, then the key ids.
	window := func(lo, hi int) ([][]byte, []string) {
		return ekbs[min(lo, len(ekbs)):min(hi, len(ekbs))], keyIDs[max(lo-len(ekbs), 0):max(hi-len(ekbs), 0)]
	}
	var loaded idSet
	err = pipelined(ctx, o, n, func(ctx context.Context, lo, hi int) (*api.Grant, error) {
		e, k := window(lo, hi)
		g, err := kms.CreateGrant(ctx, api.GrantRequest{InstanceID: inst, EKBs: e, KeyIDs: k})
		if err != nil {
			return nil, fmt.Errorf("client: grant for keys %d..%d: %w", lo, hi-1, err)
		}
		return g, nil
	}, func(g *api.Grant, lo, hi int) error {
		e, k := window(lo, hi)
		ids, err := sc.Load(ctx, g.Grant, e, k)
		if err != nil {
			return fmt.Errorf("client: load of keys %d..%d: %w", lo, hi-1, err)
		}
		loaded.add(ids)
		return nil
	})
	return loaded.ids, err
}

// LoadBySeeds loads keys derived from seeds into sc (docs/design.md, "Seed derivation"): for
// each batch, kms mints a grant bound to sc's instance and the seeds, and
// sc has the KMS derive them. Under SeedKDF v2 (the default; a seed's KDF
// field may ask for v1, for data derived before v2) the same custodian,
// seed, type and policy always give the same key, on any sidecar of the
// custodian, and another custodian gets another key. Seeds are secret.
//
// The KMS mints the next batch's grant while sc derives the current one.
// It returns one key id per seed, in order (distinct seeds give distinct
// ids); on a failed batch, the ids of the earlier batches with the error.
func LoadBySeeds(ctx context.Context, kms *KMS, sc *Sidecar, seeds []api.Seed, opts ...FlowOption) ([]string, error) {
	if len(seeds) == 0 {
		return nil, nil
	}
	o := flowOpts(opts)
	inst, err := instanceOf(ctx, sc)
	if err != nil {
		return nil, err
	}
	var loaded []string
	err = pipelined(ctx, o, len(seeds), func(ctx context.Context, lo, hi int) (*api.Grant, error) {
		raw := make([][]byte, 0, hi-lo)
		for _, s := range seeds[lo:hi] {
			raw = append(raw, s.Seed)
		}
		g, err := kms.CreateGrant(ctx, api.GrantRequest{InstanceID: inst, Seeds: raw})
		if err != nil {
			return nil, fmt.Errorf("client: grant for seeds %d..%d: %w", lo, hi-1, err)
		}
		return g, nil
	}, func(g *api.Grant, lo, hi int) error {
		ids, err := sc.Derive(ctx, g.Grant, seeds[lo:hi])
		if err != nil {
			return fmt.Errorf("client: derivation of seeds %d..%d: %w", lo, hi-1, err)
		}
		loaded = append(loaded, ids...)
		return nil
	})
	return loaded, err
}

// Stateless moves loaded keys to the stateless mode (docs/design.md, "Stateless sealed keys"): sc
// seals each under its local master key and forgets it. Operations then
// carry the blob as api.KeyRef{SealedKey: …}.
//
// The blobs are now the only way to use the keys in sc: on a failed batch
// the blobs of the earlier batches are returned with the error, and must
// be kept.
func Stateless(ctx context.Context, sc *Sidecar, keyIDs []string, opts ...FlowOption) ([]api.SealedKey, error) {
	o := flowOpts(opts)
	var sealed []api.SealedKey
	err := o.batches(len(keyIDs), func(lo, hi int) error {
		s, err := sc.Seal(ctx, keyIDs[lo:hi])
		if err != nil {
			return fmt.Errorf("client: seal of keys %d..%d: %w", lo, hi-1, err)
		}
		sealed = append(sealed, s...)
		return nil
	})
	return sealed, err
}

func instanceOf(ctx context.Context, sc *Sidecar) (string, error) {
	st, err := sc.Status(ctx)
	if err != nil {
		return "", fmt.Errorf("client: the sidecar's status: %w", err)
	}
	return st.InstanceID, nil
}
