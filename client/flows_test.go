package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
)

// TestPipelined: windows are applied in order, each once, with at most
// one fetch ahead of the apply in progress; the first error ends it, and
// a fetch in flight when an apply fails is cancelled and waited for.
func TestPipelined(t *testing.T) {
	errFetch, errApply := errors.New("fetch failed"), errors.New("apply failed")
	cases := []struct {
		name                 string
		n, batch             int
		failFetch, failApply int // window index that fails, -1 for none
		wantApplied          []string
		wantErr              error
		wantFetchedAtMost    int
	}{
		{"all", 5, 2, -1, -1, []string{"0-2", "2-4", "4-5"}, nil, 3},
		{"one window", 1, 2, -1, -1, []string{"0-1"}, nil, 1},
		{"fetch fails", 6, 2, 1, -1, []string{"0-2"}, errFetch, 2},
		{"first fetch fails", 6, 2, 0, -1, nil, errFetch, 1},
		{"apply fails", 6, 2, -1, 1, []string{"0-2"}, errApply, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var fetched, applied []string
			inFlight, maxAhead := 0, 0
			fetch := func(ctx context.Context, lo, hi int) (string, error) {
				mu.Lock()
				w := fmt.Sprintf("%d-%d", lo, hi)
				fetched = append(fetched, w)
				inFlight++
				maxAhead = max(maxAhead, inFlight)
				mu.Unlock()
				defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
				if lo/tc.batch == tc.failFetch {
					return "", errFetch
				}
				if tc.failApply >= 0 && lo/tc.batch == tc.failApply+1 {
					<-ctx.Done() // the window after a failing apply: cancelled
					return "", ctx.Err()
				}
				return w, nil
			}
			apply := func(v string, lo, hi int) error {
				if v != fmt.Sprintf("%d-%d", lo, hi) {
					t.Errorf("apply(%q) for window %d-%d", v, lo, hi)
				}
				if lo/tc.batch == tc.failApply {
					return errApply
				}
				mu.Lock()
				applied = append(applied, v)
				mu.Unlock()
				return nil
			}
			o := flowOptions{batch: tc.batch, progress: func(int, int) {}}
			err := pipelined(t.Context(), o, tc.n, fetch, apply)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("pipelined = %v, want %v", err, tc.wantErr)
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(applied, tc.wantApplied) {
				t.Errorf("applied %v, want %v", applied, tc.wantApplied)
			}
			if len(fetched) > tc.wantFetchedAtMost || maxAhead > 1 {
				t.Errorf("fetched %v (at most %d wanted), %d at once", fetched, tc.wantFetchedAtMost, maxAhead)
			}
			if inFlight != 0 {
				t.Errorf("%d fetches still running after pipelined returned", inFlight)
			}
		})
	}
}
