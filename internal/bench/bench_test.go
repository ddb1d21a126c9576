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
	coldPause = 0 // the flows, not their speed
	enroll, loads, err := Loading(t.Context(), env, 30, filepath.Join(t.TempDir(), "s"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var flows []string
	for _, l := range loads {
		flows = append(flows, l.Flow)
	}
	if want := "rewrap,KMS rewrap alone,KMS rewrap again,grant,seeds,seal (stateless)"; enroll <= 0 || strings.Join(flows, ",") != want {
		t.Fatalf("Loading = %v, flows %q; want %s", enroll, flows, want)
	}
	for _, l := range loads {
		if l.Keys != 30 || l.KeysPerSec <= 0 {
			t.Fatalf("loading %s: %+v", l.Flow, l)
		}
	}
	stages, err := Breakdown(t.Context(), env, 256)
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) != 7 || stages[6].Stage != "round trip" || stages[6].NsOp <= 0 {
		t.Fatalf("Breakdown = %+v", stages)
	}
	sum := 0.0
	for _, st := range stages[:6] {
		if st.NsOp < 0 || st.Stage == "" || st.What == "" {
			t.Errorf("stage %+v", st)
		}
		sum += st.NsOp
	}
	if stages[0].NsOp <= 0 || sum < stages[6].NsOp*0.99 {
		t.Errorf("the stages (%.0f ns) do not account for the round trip (%.0f ns): %+v", sum, stages[6].NsOp, stages)
	}
}
