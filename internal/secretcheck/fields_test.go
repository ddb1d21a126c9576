package secretcheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// secretName matches field names that say a field holds a key or a
// secret.
var secretName = regexp.MustCompile(`Key|Secret|Material|Seed|Token|PIN|Pin|Passphrase|Password`)

// secretStringName matches the names of string fields that say the field
// holds a credential: a token, a grant, a PIN, a passphrase or password, a
// secret, key material, a DSN (which may carry a password). Names that
// only start so (TokenLabel, PINFile, GrantID) describe something else.
var secretStringName = regexp.MustCompile(`(Token|Grant|PIN|Pin|Passphrase|Password|Secret|Material|DSN)$`)

// allowed are the exported []byte (or [N]byte) fields outside api/ whose
// names match secretName, and the exported string fields whose names match
// secretStringName, each with why it is not secret material in clear (or
// why it is a wire type). A new one must be added here, with its reason,
// or made a *secret.Bytes (or kept inside the enclave).
var allowed = map[string]string{
	"internal/ca.WrappingInfo.PublicKey":      "a sidecar's HPKE public key, read from its wrapping certificate",
	"internal/ca.wrappingKey.PublicKey":       "a sidecar's HPKE public key, the wrapping certificate's extension",
	"internal/kms.caRecord.SealedKey":         "the CA private key sealed under the root key (ciphertext)",
	"internal/kms.auditKeyRecord.SealedSeed":  "the audit key's seed sealed under the root key (ciphertext)",
	"internal/store.Tenant.SealedHMACKey":     "the tenant HMAC key sealed under the root key (ciphertext)",
	"internal/tr31.KeyBlock.EncryptedKeyData": "a TR-31 key block's encrypted key data (AES-CBC ciphertext under the KBEK), public in the block",
	"internal/kms.seedKeyRecord.SealedKey":    "a custodian seed key sealed under the root key (ciphertext)",
	// The end-to-end fixture is imported by tests only (TestOnlyTestsImportE2E):
	// its keys are throwaway test keys written to the test's temp dirs.
	"internal/e2e.KMSConfig.RootKey":     "a test KMS's root.key file contents, copied between test replicas (test-only package)",
	"internal/e2e.Endpoint.AdminKeyPEM":  "the throwaway admin key of a test KMS, read from its temp data dir (test-only package)",
	"internal/e2e.KMSConfig.PostgresDSN": "the DSN of a throwaway pgtest database, no password (test-only package)",
	"internal/e2e.SidecarConfig.Token":   "a test enrollment token, handed to a sidecar process in DCAAS_ENROLL_TOKEN (test-only package)",
	// Strings that are wire types: what the program prints or sends on
	// purpose. (api/, the wire contract, is not scanned at all.)
	"cmd/dcaas.tokenOutput.Token": "the JSON output of dcaas token: the new enrollment token, printed on purpose for the admin who minted it",
}

// TestNoSecretFields scans the module's non-test Go source (outside api/,
// whose wire types carry what the protocol says they carry) for exported
// struct fields of type []byte or [N]byte named like a key or secret, and
// exported string fields named like a credential (a token, grant, PIN,
// passphrase, password, secret, key material or DSN). Secrets in clear
// belong in *secret.Bytes, which never prints and can be wiped; a []byte
// or string field prints with every fmt verb and marshals to JSON, and a
// string cannot be wiped at all.
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
					var named *regexp.Regexp
					switch {
					case isBytes(field.Type):
						named = secretName
					case isString(field.Type):
						named = secretStringName
					default:
						continue
					}
					for _, name := range field.Names {
						if name.IsExported() && named.MatchString(name.Name) {
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
			t.Errorf("%s is an exported []byte or string field named like a secret: make it a *secret.Bytes, or add it to allowed with why it is not secret", f)
		}
	}
	for name := range allowed {
		if !slices.Contains(found, name) {
			t.Errorf("allowed lists %s, which no longer exists: remove it", name)
		}
	}
}

func isString(e ast.Expr) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == "string"
}

func isBytes(e ast.Expr) bool {
	a, ok := e.(*ast.ArrayType)
	if !ok {
		return false
	}
	id, ok := a.Elt.(*ast.Ident)
	return ok && (id.Name == "byte" || id.Name == "uint8")
}

// moduleRoot is the module's root: go test runs a package's tests in its
// directory, two levels below it.
func moduleRoot(*testing.T) string { return filepath.Join("..", "..") }
