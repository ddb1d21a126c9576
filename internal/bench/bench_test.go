package bench

import (
	"bytes"
	"image/png"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/devenv"
)

// TestRunSmoke runs every mode and the loading benchmark briefly against a
// real local dcaas: each must complete operations without errors. (It
// checks that the harness works, not speed: figures come from `dcaas
// bench`.)
func TestRunSmoke(t *testing.T) {
	env, err := devenv.Start(t.Context(), devenv.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	for _, op := range []string{"encrypt", "decrypt", "mac", "sign"} {
		t.Run(op, func(t *testing.T) {
			res, err := Run(t.Context(), env, Options{Concurrency: 2, Duration: 150 * time.Millisecond, Op: op, Batch: 10, RTT: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			want := 8 // the KMS plugin only encrypts and decrypts
			if op == "mac" || op == "sign" {
				want = 7
			}
			if len(res) != want {
				t.Fatalf("Run returned %d modes, want %d", len(res), want)
			}
			for _, r := range res {
				if r.Ops == 0 || r.Errors != 0 || r.OpsPerSec <= 0 || r.P50us <= 0 || r.P99us < r.P50us {
					t.Fatalf("mode %s: %+v", r.Mode, r)
				}
				if r.Mode == ModeCentral && r.VsCentral != 1 {
					t.Fatalf("central vs central = %v", r.VsCentral)
				}
			}
			var buf bytes.Buffer
			if err := Plot(&buf, "smoke", res); err != nil {
				t.Fatal(err)
			}
			if _, err := png.Decode(&buf); err != nil {
				t.Fatalf("Plot wrote an invalid PNG: %v", err)
			}
		})
	}
	if _, err := Run(t.Context(), env, Options{Op: "bogus"}); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("Run(op bogus) = %v", err)
	}
	enroll, loads, err := Loading(t.Context(), env, 30, filepath.Join(t.TempDir(), "s"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if enroll <= 0 || len(loads) != 5 {
		t.Fatalf("Loading = %v, %+v", enroll, loads)
	}
	for _, l := range loads {
		if l.Keys != 30 || l.KeysPerSec <= 0 {
			t.Fatalf("loading %s: %+v", l.Flow, l)
		}
	}
}
