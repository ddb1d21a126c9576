package crypto

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// The files in testdata/*_vectors.json were produced once, by
// `go test -run TestGenerateVectors -generate-vectors`, and must keep
// opening/verifying to the same values forever: a change that breaks them
// breaks every EKB, wrapped key and ciphertext already stored. The
// generator never overwrites a file; add new vectors in new files.
var generateVectors = flag.Bool("generate-vectors", false, "write testdata vector files that do not exist yet")

// hexBytes is a []byte that is hex in JSON.
type hexBytes []byte

func (h hexBytes) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

// readVectors decodes testdata/name into v.
func readVectors(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// writeVectors writes v to testdata/name unless the file exists.
func writeVectors(t *testing.T, name string, v any) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if _, err := os.Stat(path); err == nil {
		t.Logf("%s exists; not overwritten", path)
		return
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

func TestGenerateVectors(t *testing.T) {
	if !*generateVectors {
		t.Skip("run with -generate-vectors to write missing vector files")
	}
	if FIPS() {
		t.Fatal("generate vectors outside FIPS mode (it needs every KEM)")
	}
	writeVectors(t, "ekb_vectors.json", makeEKBVectors(t))
	writeVectors(t, "message_vectors.json", makeMessageVectors(t))
	writeVectors(t, "key_vectors.json", makeKeyVectors(t))
	writeVectors(t, "wrap_vectors.json", makeWrapVectors(t))
	writeVectors(t, "wrap_batch_vectors.json", makeBatchVectors(t))
}
