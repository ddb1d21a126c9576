package archtest

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/dcaas/dcaas"

// A rule forbids some imports to every package of the module but the ones
// it allows, each with its reason.
type rule struct {
	name   string
	reason string
	fix    string // what to do instead
	// forbids reports whether the rule is about importing path (a full
	// import path).
	forbids func(path string) bool
	// tests: whether the imports of _test.go files count. Where they do,
	// an allowed entry "pkg (tests)" allows them for the tests of pkg only.
	tests bool
	// applies, when set, limits the rule to the packages it reports
	// (module-relative paths); otherwise it applies to every package.
	applies func(pkg string) bool
	// allowed are the packages (module-relative, "." for the root) that
	// may, each with why.
	allowed map[string]string
}

// primitives are the standard library's building blocks that only
// internal/crypto (and the enclaves, which hold raw keys by design) may
// put together: a second AES-GCM or HPKE construction elsewhere is a
// second place to get nonces, labels or key handling wrong.
var primitives = []string{"crypto/aes", "crypto/cipher", "crypto/hpke", "crypto/mlkem", "crypto/pbkdf2", "crypto/hkdf"}

// concrete are the implementations of the store and seal interfaces, and
// the packages that open them for a data dir.
var concrete = []string{"internal/store/sqlstore", "internal/seal/file", "internal/seal/pkcs11", "internal/datadir"}

// bottom is the layer everything else builds on; it must not reach up.
var bottom = []string{"api", "internal/crypto", "internal/format", "internal/secret"}

var rules = []rule{
	{
		name: "crypto primitives",
		reason: "internal/crypto is the only code that builds constructions from primitives " +
			"(docs/formats.md describes each one); callers hold its handles (AEAD, KEMPrivateKey, Unwrapper)",
		fix:     "use (or add) a function of internal/crypto",
		forbids: func(p string) bool { return slices.Contains(primitives, p) },
		tests:   true,
		allowed: map[string]string{
			"internal/crypto":           "the crypto boundary itself",
			"internal/enclave/software": "builds the sidecar's HPKE transport keys (crypto/hpke over crypto/mlkem and crypto/ecdh) inside the enclave that holds them",
			"internal/enclave/tpm":      "implements an HPKE DHKEM private key whose ECDH runs inside the TPM (hpke.NewDHKEMPrivateKey)",
			// Tests that check dcaas's output with the standard library
			// itself, an oracle independent of internal/crypto.
			"internal/kms (tests)":         "byok_e2e_test opens an HPKE export with crypto/hpke directly, so the wire format is checked against RFC 9180, not against our own code",
			"internal/ca (tests)":          "sidecar_test makes wrapping keys of every KEM with crypto/hpke directly, FIPS or not, to check the certificate parser",
			"internal/secretcheck (tests)": "derives the file seal's key (crypto/hkdf) and a batch KEK (crypto/hpke) independently, to look for them in printed output",
		},
	},
	{
		name: "concrete stores and seals",
		reason: "the domain (kms, sidecar, ops, ...) depends on the store.Store and seal.Sealer interfaces; " +
			"which database and which root of trust is decided where the process is wired",
		fix:     "take a store.Store / seal.Sealer and let the wiring (internal/datadir, cmd/dcaas) pass it in",
		forbids: func(p string) bool { return slices.Contains(concrete, strings.TrimPrefix(p, module+"/")) },
		allowed: map[string]string{
			"cmd/dcaas":            "the process: --store and --seal choose the implementations",
			"internal/datadir":     "opens a data dir's own file seal and SQLite database for kms.Open",
			"internal/devenv":      "wires a development KMS and sidecar in one process (through internal/datadir)",
			"internal/kms/kmstest": "test helper: starts a real KMS on a temp data dir (through internal/datadir)",
		},
	},
	{
		name:   "the SDK stands alone",
		reason: "client is the public Go SDK: it speaks the wire contract (api) and nothing internal but internal/wire, the hot operations' JSON codec it shares with the servers (which imports only api and the standard library: client's TestImportsOnlyAPI), so client, api and wire can move to their own module together",
		fix:    "put what the SDK needs into api, or into client itself",
		forbids: func(p string) bool {
			return strings.HasPrefix(p, module+"/") && p != module+"/api" && p != module+"/internal/wire"
		},
		applies: func(pkg string) bool { return pkg == "client" || strings.HasPrefix(pkg, "client/") },
		allowed: map[string]string{},
	},
	{
		name:   "the bottom layer does not reach up",
		reason: "api, crypto, format and secret are what every other package builds on; an import upwards would be a cycle waiting to happen",
		fix:    "move the code up, or what it needs down",
		forbids: func(p string) bool {
			rel, ok := strings.CutPrefix(p, module+"/")
			return ok && !slices.Contains(bottom, rel)
		},
		applies: func(pkg string) bool { return slices.Contains(bottom, pkg) },
		allowed: map[string]string{},
	},
}

// pkg is what go list says about one package.
type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// TestArchitecture checks every package of the module against rules, and
// that every exception in rules is still needed.
func TestArchitecture(t *testing.T) {
	pkgs := list(t)
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages: the test would prove nothing", len(pkgs))
	}
	for _, r := range rules {
		t.Run(r.name, func(t *testing.T) {
			used := make(map[string]bool)
			for _, p := range pkgs {
				rel := relative(p.ImportPath)
				if r.applies != nil && !r.applies(rel) {
					continue
				}
				check := func(imports []string, who string) {
					for _, imp := range imports {
						if !r.forbids(imp) {
							continue
						}
						if _, ok := r.allowed[who]; ok {
							used[who] = true
							continue
						}
						t.Errorf("%s imports %s: %s. Instead, %s (or add %q to the rule's allow-list with why)",
							who, imp, r.reason, r.fix, who)
					}
				}
				check(p.Imports, rel)
				if r.tests {
					if _, ok := r.allowed[rel]; ok {
						check(append(p.TestImports, p.XTestImports...), rel)
					} else {
						check(append(p.TestImports, p.XTestImports...), rel+" (tests)")
					}
				}
			}
			for who, why := range r.allowed {
				if !used[who] {
					t.Errorf("the allow-list names %s (%s), which imports nothing the rule forbids: remove it", who, why)
				}
			}
		})
	}
}

func relative(path string) string {
	if path == module {
		return "."
	}
	return strings.TrimPrefix(path, module+"/")
}

// list runs go list on the whole module.
func list(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,TestImports,XTestImports", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}
