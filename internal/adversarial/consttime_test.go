package adversarial_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Timing-safe comparison of secrets. Where dcaas compares a secret with
// something an attacker sent, the comparison must not stop at the first
// differing byte. The sites (docs/threat-model.md, "Secret comparisons"):
//
//   - enrollment tokens, grants, challenge nonces: never compared in Go; the
//     store looks up SHA-256(secret) as a database key (ConsumeOneTime);
//   - MAC verification: crypto.Key.VerifyMAC (hmac.Equal), reached from
//     ops.Engine.MACVerify and the batch's mac_verify;
//   - AEAD tags (ciphertexts, EKBs, wrapped and sealed keys): inside
//     crypto/cipher's GCM;
//   - secret.Bytes.Equal, crypto.Equal: subtle.ConstantTimeCompare;
//   - attestation evidence digests: internal/attest's equal;
//   - the RFC 5649 integrity check of imported keys: crypto.UnwrapKeyPadded.
//
// TestConstantTimeComparisons reads those functions' source and checks
// that each calls a constant-time primitive and no variable-time one.
// Grepping every `==` in the tree for secrets would be brittle; this pins
// the few places that matter.
func TestConstantTimeComparisons(t *testing.T) {
	root := moduleRoot(t)
	constantTime := []string{"crypto/subtle.ConstantTimeCompare", "crypto/hmac.Equal"}
	for _, tc := range []struct {
		dir      string // package directory, from the module root
		recv     string // receiver type name, "" for a function
		name     string
		optional bool     // checked only if the function exists
		calls    []string // one of these must be called
	}{
		{dir: "internal/crypto", name: "Equal", calls: constantTime},
		// VerifyMAC may also use the package's own Equal, checked above.
		{dir: "internal/crypto", recv: "Key", name: "VerifyMAC", calls: append([]string{"Equal"}, constantTime...)},
		{dir: "internal/secret", recv: "Bytes", name: "Equal", calls: constantTime},
		{dir: "internal/attest", name: "equal", calls: constantTime},
		{dir: "internal/crypto", name: "UnwrapKeyPadded", optional: true, calls: []string{"crypto/subtle.ConstantTimeCompare"}},
		// The operation engine must delegate MAC verification, not
		// recompute the tag and compare it itself.
		{dir: "internal/ops", recv: "Engine", name: "MACVerify", calls: []string{".VerifyMAC"}},
	} {
		name := tc.name
		if tc.recv != "" {
			name = "(*" + tc.recv + ")." + name
		}
		t.Run(tc.dir+"."+name, func(t *testing.T) {
			fn, imports := findFunc(t, filepath.Join(root, tc.dir), tc.recv, tc.name)
			if fn == nil {
				if tc.optional {
					t.Skipf("%s not found in %s (optional)", name, tc.dir)
				}
				t.Fatalf("%s not found in %s: update this test and docs/threat-model.md", name, tc.dir)
			}
			called := calledNames(fn, imports)
			found := false
			for _, want := range tc.calls {
				for _, c := range called {
					if c == want || (strings.HasPrefix(want, ".") && strings.HasSuffix(c, want)) {
						found = true
					}
				}
			}
			if !found {
				t.Errorf("%s calls %v, none of %v", name, called, tc.calls)
			}
			for _, c := range called {
				switch c {
				case "bytes.Equal", "bytes.Compare", "reflect.DeepEqual", "strings.EqualFold", "slices.Equal":
					t.Errorf("%s compares with the variable-time %s", name, c)
				}
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				if b, ok := n.(*ast.BinaryExpr); ok && (b.Op == token.EQL || b.Op == token.NEQ) && isStringConv(b.X) && isStringConv(b.Y) {
					t.Errorf("%s compares string conversions with %s", name, b.Op)
				}
				return true
			})
		})
	}
}

// moduleRoot is the module's root: go test runs a package's tests in its
// directory, two levels below it.
func moduleRoot(*testing.T) string { return filepath.Join("..", "..") }

// findFunc parses the non-test Go files of dir and returns the declaration
// of recv.name (or the function name) and its file's imports (local name →
// path).
func findFunc(t *testing.T, dir, recv, name string) (*ast.FuncDecl, map[string]string) {
	t.Helper()
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Name.Name != name || fn.Body == nil || receiverName(fn) != recv {
				continue
			}
			return fn, importNames(f)
		}
	}
	return nil, nil
}

func receiverName(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return ""
	}
	typ := fn.Recv.List[0].Type
	if s, ok := typ.(*ast.StarExpr); ok {
		typ = s.X
	}
	if id, ok := typ.(*ast.Ident); ok {
		return id.Name
	}
	return "?"
}

func importNames(f *ast.File) map[string]string {
	m := map[string]string{}
	for _, im := range f.Imports {
		path, _ := strconv.Unquote(im.Path.Value)
		local := path[strings.LastIndex(path, "/")+1:]
		if im.Name != nil {
			local = im.Name.Name
		}
		m[local] = path
	}
	return m
}

// calledNames lists the calls in fn as "importpath.Func" for package
// functions and ".Method" for method calls.
func calledNames(fn *ast.FuncDecl, imports map[string]string) []string {
	var out []string
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		switch f := call.Fun.(type) {
		case *ast.SelectorExpr:
			if id, ok := f.X.(*ast.Ident); ok {
				if path, ok := imports[id.Name]; ok {
					out = append(out, path+"."+f.Sel.Name)
					return true
				}
			}
			out = append(out, "."+f.Sel.Name)
		case *ast.Ident:
			out = append(out, f.Name)
		}
		return true
	})
	return out
}

func isStringConv(e ast.Expr) bool {
	c, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	id, ok := c.Fun.(*ast.Ident)
	return ok && id.Name == "string" && len(c.Args) == 1
}

// TestConstantTimeCheckerSeesVariableTime keeps the checker above honest:
// it must notice the bytes.Equal in Key.Decrypt (which compares a public
// ciphertext header, so it is fine there).
func TestConstantTimeCheckerSeesVariableTime(t *testing.T) {
	fn, imports := findFunc(t, filepath.Join(moduleRoot(t), "internal/crypto"), "Key", "Decrypt")
	if fn == nil {
		t.Skip("(*Key).Decrypt not found")
	}
	for _, c := range calledNames(fn, imports) {
		if c == "bytes.Equal" {
			return
		}
	}
	t.Fatalf("calledNames((*Key).Decrypt) = %v: the bytes.Equal call was not seen", calledNames(fn, imports))
}
