package demo

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo builds the dcaas binary and runs the whole story against real
// processes: every step must pass.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts processes")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "dcaas")
	build := exec.Command("go", "build", "-o", bin, "github.com/dcaas/dcaas/cmd/dcaas")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var out bytes.Buffer
	rep, err := Run(t.Context(), Options{Binary: bin, Dir: filepath.Join(dir, "work"), Out: &out})
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	if !rep.OK || len(rep.Steps) != 16 {
		t.Fatalf("report = %+v", rep)
	}
	if got := strings.Count(out.String(), "\nok "); got != 15 { // 16 lines, the first has no leading newline
		t.Fatalf("printed %d ok lines:\n%s", got+1, out.String())
	}
}
