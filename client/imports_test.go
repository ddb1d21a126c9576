package client

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportsOnlyAPI keeps the SDK small: its non-test files import the
// api package and the standard library, nothing else of dcaas or beyond.
func TestImportsOnlyAPI(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") || name == "gen_errors.go" {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(path, "/")
			if path != "github.com/dcaas/dcaas/api" && strings.Contains(first, ".") {
				t.Errorf("%s imports %s: the SDK may import only api/ and the standard library", name, path)
			}
		}
	}
}
