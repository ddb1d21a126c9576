package kms

import (
	"fmt"
	"testing"

	"github.com/dcaas/dcaas/api"
)

// TestCovers: every asked item must be bound; the first that is not is
// named by its index in a batch; an empty item is never bound.
func TestCovers(t *testing.T) {
	bound := []string{"d1", "d2", "d3"}
	for _, tt := range []struct {
		asked   []string
		wantErr string
	}{
		{[]string{"d3", "d1"}, ""},
		{[]string{"d2"}, ""},
		{nil, ""},
		{[]string{"d1", "d4", "d9"}, "EKB 1: The grant does not cover this EKB."},
		{[]string{"d5"}, "The grant does not cover this EKB."},
		{[]string{""}, "The grant does not cover this EKB."},
	} {
		err := covers(bound, tt.asked, "EKB")
		got := ""
		if err != nil {
			got = err.(*api.Error).Message
			if api.CodeOf(err) != api.CodeForbidden {
				t.Errorf("covers(%v) code %s, want forbidden", tt.asked, api.CodeOf(err))
			}
		}
		if got != tt.wantErr {
			t.Errorf("covers(%v) = %q, want %q", tt.asked, got, tt.wantErr)
		}
	}
}

func BenchmarkCovers1000(b *testing.B) {
	bound := make([]string, 1000)
	for i := range bound {
		bound[i] = fmt.Sprintf("%064x", i)
	}
	for b.Loop() {
		if err := covers(bound, bound, "EKB"); err != nil {
			b.Fatal(err)
		}
	}
}
