package client

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestImportsOnlyAPI keeps the SDK small: its non-test files import the
// api package, the standard library and internal/wire (the hot
// operations' JSON codec, shared with the servers), which itself imports
// only api and the standard library: nothing else of dcaas or beyond.
func TestImportsOnlyAPI(t *testing.T) {
	checkImports(t, ".", "github.com/dcaas/dcaas/internal/wire")
	checkImports(t, "../internal/wire")
}

// checkImports fails for a non-test file of dir that imports anything but
// the standard library, api and the paths of also.
func checkImports(t *testing.T, dir string, also ...string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	for _, name := range files {
		if base := filepath.Base(name); strings.HasSuffix(base, "_test.go") || base == "gen_errors.go" {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(path, "/")
			if path != "github.com/dcaas/dcaas/api" && !slices.Contains(also, path) && strings.Contains(first, ".") {
				t.Errorf("%s imports %s: the SDK may import only api/, internal/wire and the standard library", name, path)
			}
		}
	}
}
