package parallel

import (
	"sync/atomic"
	"testing"
)

// TestFor: every index is called exactly once, whatever the batch size and
// threshold; below the threshold, in order.
func TestFor(t *testing.T) {
	for _, tc := range []struct{ n, per int }{{0, 1}, {1, 1}, {5, 64}, {100, 1}, {1000, 64}, {1000, 0}} {
		calls := make([]atomic.Int32, tc.n)
		For(tc.n, tc.per, func(i int) { calls[i].Add(1) })
		for i := range calls {
			if got := calls[i].Load(); got != 1 {
				t.Fatalf("For(%d, %d): index %d called %d times", tc.n, tc.per, i, got)
			}
		}
	}
	var order []int
	For(5, 64, func(i int) { order = append(order, i) })
	for i, got := range order {
		if got != i {
			t.Fatalf("For(5, 64) order = %v, want 0..4", order)
		}
	}
}
