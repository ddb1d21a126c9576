// Package parallel runs the items of a batch on every core.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// For calls f(i) once for each i in [0, n) and returns when every call has
// returned. With at least perWorker items for each goroutine beyond the
// first, the calls run on up to GOMAXPROCS goroutines, in no particular
// order; otherwise they run in order on the caller's goroutine. f must be
// safe to call concurrently for different i.
func For(n, perWorker int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n/max(perWorker, 1))
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		})
	}
	wg.Wait()
}
