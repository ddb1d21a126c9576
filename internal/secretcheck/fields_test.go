package secretcheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// secretName matches field names that say a field holds a key or a
// secret.
var secretName = regexp.MustCompile(`Key|Secret|Material|Seed|Token|PIN|Pin|Passphrase|Password`)

// allowed are the exported []byte (or [N]byte) fields outside api/ whose
// names match secretName, each with why it is not secret material in
// clear. A new one must be added here, with its reason, or made a
// *secret.Bytes (or kept inside the enclave).
var allowed = map[string]string{
	"internal/ca.WrappingInfo.PublicKey":     "a sidecar's HPKE public key, read from its wrapping certificate",
	"internal/ca.wrappingKey.PublicKey":      "a sidecar's HPKE public key, the wrapping certificate's extension",
	"internal/kms.caRecord.SealedKey":        "the CA private key sealed under the root key (ciphertext)",
	"internal/kms.auditKeyRecord.SealedSeed": "the audit key's seed sealed under the root key (ciphertext)",
	"internal/store.Tenant.SealedHMACKey":    "the tenant HMAC key sealed under the root key (ciphertext)",
	// The end-to-end fixture is imported by tests only (TestOnlyTestsImportE2E):
	// its keys are throwaway test keys written to the test's temp dirs.
	"internal/e2e.KMSConfig.RootKey":    "a test KMS's root.key file contents, copied between test replicas (test-only package)",
	"internal/e2e.Endpoint.AdminKeyPEM": "the throwaway admin key of a test KMS, read from its temp data dir (test-only package)",
}

// TestNoSecretFields scans the module's non-test Go source (outside api/,
// whose wire types carry what the protocol says they carry) for exported
// struct fields of type []byte or [N]byte named like a key or secret.
// Secrets in clear belong in *secret.Bytes, which never prints; a []byte
// field prints with every fmt verb and marshals to JSON.
func TestNoSecretFields(t *testing.T) {
	root := moduleRoot(t)
	var found []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			switch {
			case rel == "api", d.Name() == "testdata", d.Name() == "vendor", strings.HasPrefix(d.Name(), ".") && rel != ".":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(filepath.Dir(rel))
		for _, decl := range f.Decls {
			g, ok := decl.(*ast.GenDecl)
			if !ok || g.Tok != token.TYPE {
				continue
			}
			for _, spec := range g.Specs {
				ts := spec.(*ast.TypeSpec)
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				for _, field := range st.Fields.List {
					if !isBytes(field.Type) {
						continue
					}
					for _, name := range field.Names {
						if name.IsExported() && secretName.MatchString(name.Name) {
							found = append(found, pkg+"."+ts.Name.Name+"."+name.Name)
						}
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range found {
		if _, ok := allowed[f]; !ok {
			t.Errorf("%s is an exported []byte field named like a secret: make it a *secret.Bytes, or add it to allowed with why it is not secret", f)
		}
	}
	for name := range allowed {
		if !slices.Contains(found, name) {
			t.Errorf("allowed lists %s, which no longer exists: remove it", name)
		}
	}
}

func isBytes(e ast.Expr) bool {
	a, ok := e.(*ast.ArrayType)
	if !ok {
		return false
	}
	id, ok := a.Elt.(*ast.Ident)
	return ok && (id.Name == "byte" || id.Name == "uint8")
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}
