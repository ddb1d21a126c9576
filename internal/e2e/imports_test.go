package e2e_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const e2ePkg = "github.com/dcaas/dcaas/internal/e2e"

// TestOnlyTestsImportE2E keeps the fixture out of what dcaas ships: no
// non-test file of the module imports internal/e2e, save the package
// itself.
func TestOnlyTestsImportE2E(t *testing.T) {
	t.Parallel()
	// go test runs in the package's directory, internal/e2e.
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("the module root: %v", err)
	}
	self := filepath.Join(root, "internal", "e2e")
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || filepath.Dir(path) == self {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == e2ePkg || strings.HasPrefix(p, e2ePkg+"/") {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s imports %s: only tests may import the e2e fixture", rel, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("checked only %d non-test Go files under %s: the walk missed the module", checked, root)
	}
}
