//go:build cgo

package pkcs11

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/dcaas/dcaas/internal/seal"
	"github.com/dcaas/dcaas/internal/seal/file"
	"github.com/dcaas/dcaas/internal/seal/pkcs11/pkcs11test"
	"github.com/dcaas/dcaas/internal/seal/sealtest"
	"github.com/dcaas/dcaas/internal/secret"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pkcs11test.Cleanup()
	os.Exit(code)
}

// config is a Config for the test token and a root key of t's own.
func config(t *testing.T, create bool) Config {
	t.Helper()
	tk := pkcs11test.Start(t)
	pin := tk.PIN()
	t.Cleanup(pin.Wipe)
	return Config{ModulePath: tk.Module, TokenLabel: tk.Label, PIN: pin, KeyLabel: pkcs11test.KeyLabel(t), Create: create}
}

func mustOpen(t *testing.T, cfg Config) *Sealer {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open() error %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConformance runs sealtest.Run with one root key per test: the first
// Open for a test generates it, later ones find it.
func TestConformance(t *testing.T) {
	sealtest.Run(t, func(t *testing.T) seal.Sealer {
		s, err := Open(config(t, true))
		if err != nil {
			t.Fatalf("Open() error %v", err)
		}
		return s
	})
	if n := len(registry.modules); n != 0 {
		t.Errorf("after every Sealer closed, %d modules are still loaded", n)
	}
}

// withSession runs fn on a read-write session of s's token.
func withSession(t *testing.T, s *Sealer, fn func(c *p11.Ctx, sh p11.SessionHandle)) {
	t.Helper()
	c := s.tok.mod.ctx
	sh, err := c.OpenSession(s.tok.slot, p11.CKF_SERIAL_SESSION|p11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseSession(sh)
	fn(c, sh)
}

func TestGeneratedKeyStaysInTheToken(t *testing.T) {
	s := mustOpen(t, config(t, true))
	withSession(t, s, func(c *p11.Ctx, sh p11.SessionHandle) {
		if _, err := c.GetAttributeValue(sh, s.key, []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)}); !errors.Is(err, p11.Error(p11.CKR_ATTRIBUTE_SENSITIVE)) {
			t.Errorf("reading CKA_VALUE: error %v, want CKR_ATTRIBUTE_SENSITIVE", err)
		}
		attrs, err := c.GetAttributeValue(sh, s.key, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_SENSITIVE, nil), p11.NewAttribute(p11.CKA_EXTRACTABLE, nil),
			p11.NewAttribute(p11.CKA_ALWAYS_SENSITIVE, nil), p11.NewAttribute(p11.CKA_NEVER_EXTRACTABLE, nil),
			p11.NewAttribute(p11.CKA_TOKEN, nil), p11.NewAttribute(p11.CKA_PRIVATE, nil),
			p11.NewAttribute(p11.CKA_WRAP, nil), p11.NewAttribute(p11.CKA_VALUE_LEN, nil),
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []bool{true, false, true, true, true, true, false}
		for i, w := range want {
			if got := boolean(attrs[i].Value); got != w {
				t.Errorf("attribute %#x = %v, want %v", attrs[i].Type, got, w)
			}
		}
		if n := ulong(attrs[7].Value); n != keySize {
			t.Errorf("CKA_VALUE_LEN = %d, want %d", n, keySize)
		}
		// Wrapping it out under another key is refused too.
		kek, err := c.GenerateKey(sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_VALUE_LEN, 32), p11.NewAttribute(p11.CKA_WRAP, true), p11.NewAttribute(p11.CKA_TOKEN, false),
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.WrapKey(sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_WRAP, nil)}, kek, s.key); err == nil {
			t.Error("WrapKey(root key) succeeded")
		}
	})
}

// createKey makes a secret key in the token with the root key's template
// changed by edit.
func createKey(t *testing.T, s *Sealer, label string, edit map[uint]any) {
	t.Helper()
	withSession(t, s, func(c *p11.Ctx, sh p11.SessionHandle) {
		tmpl := keyTemplate(label, []byte(label))
		for i, a := range tmpl {
			if v, ok := edit[a.Type]; ok {
				tmpl[i] = p11.NewAttribute(a.Type, v)
			}
		}
		if _, err := c.GenerateKey(sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}, tmpl); err != nil {
			t.Fatalf("creating key %q: %v", label, err)
		}
	})
}

func TestOpenErrors(t *testing.T) {
	good := config(t, true)
	held := mustOpen(t, good) // the token stays logged in meanwhile
	for label, edit := range map[string]map[uint]any{
		"extractable":   {p11.CKA_EXTRACTABLE: true},
		"not sensitive": {p11.CKA_SENSITIVE: false},
		"aes-128":       {p11.CKA_VALUE_LEN: 16},
		"no decrypt":    {p11.CKA_DECRYPT: false},
		"twice":         nil,
	} {
		createKey(t, held, label, edit)
	}
	createKey(t, held, "twice", nil)
	notLib := filepath.Join(t.TempDir(), "lib.so")
	os.WriteFile(notLib, []byte("not a library"), 0o600)

	tests := []struct {
		name string
		edit func(*Config)
		want error
	}{
		{"no module", func(c *Config) { c.ModulePath = "" }, ErrModule},
		{"missing module", func(c *Config) { c.ModulePath = "/nonexistent/libpkcs11.so" }, ErrModule},
		{"not a library", func(c *Config) { c.ModulePath = notLib }, ErrModule},
		{"no token label", func(c *Config) { c.TokenLabel = "" }, ErrToken},
		{"unknown token", func(c *Config) { c.TokenLabel = "no-such-token" }, ErrToken},
		{"no PIN", func(c *Config) { c.PIN = nil }, ErrPIN},
		{"wrong PIN, token logged in", func(c *Config) { c.PIN = secret.Copy([]byte("0000")) }, ErrPIN},
		{"missing key", func(c *Config) { c.KeyLabel, c.Create = "absent", false }, ErrNoKey},
		{"extractable key", func(c *Config) { c.KeyLabel = "extractable" }, ErrKey},
		{"key not sensitive", func(c *Config) { c.KeyLabel = "not sensitive" }, ErrKey},
		{"AES-128 key", func(c *Config) { c.KeyLabel = "aes-128" }, ErrKey},
		{"key cannot decrypt", func(c *Config) { c.KeyLabel = "no decrypt" }, ErrKey},
		{"two keys with the label", func(c *Config) { c.KeyLabel = "twice" }, ErrKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.edit(&cfg)
			s, err := Open(cfg)
			if !errors.Is(err, tt.want) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("Open() error = %v, want %v", err, tt.want)
			}
		})
	}
	// The refused opens left the token logged in and the module loaded.
	sealed, err := held.Seal(t.Context(), secret.Copy([]byte("x")), nil)
	if err != nil {
		t.Fatalf("Seal() after refused opens: %v", err)
	}
	got, err := held.Open(t.Context(), sealed, nil)
	if err != nil {
		t.Fatalf("Open() after refused opens: %v", err)
	}
	got.Wipe()
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	// With no Sealer open, a wrong PIN is refused by the token itself.
	cfg := good
	cfg.PIN = secret.Copy([]byte("0000"))
	if _, err := Open(cfg); !errors.Is(err, ErrPIN) {
		t.Errorf("Open(wrong PIN), token logged out: error = %v, want ErrPIN", err)
	}
	if n := len(registry.modules); n != 0 {
		t.Errorf("%d modules still loaded after the last Close", n)
	}
}

func TestCreateOnlyWhenAbsent(t *testing.T) {
	cfg := config(t, true)
	first := mustOpen(t, cfg)
	sealed, err := first.Seal(t.Context(), secret.Copy([]byte("tmk")), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Create = true // finds the key; makes no second one
	second := mustOpen(t, cfg)
	cfg.Create = false
	third := mustOpen(t, cfg)
	for i, s := range []*Sealer{second, third} {
		got, err := s.Open(t.Context(), sealed, []byte("aad"))
		if err != nil || string(got.Expose()) != "tmk" {
			t.Fatalf("Sealer %d: Open() = %v", i+2, err)
		}
		got.Wipe()
	}
	withSession(t, first, func(c *p11.Ctx, sh p11.SessionHandle) {
		keys, err := findKeys(c, sh, cfg.KeyLabel)
		if err != nil || len(keys) != 1 {
			t.Errorf("keys labeled %q: %d, %v; want 1", cfg.KeyLabel, len(keys), err)
		}
	})
}

func TestSealFormat(t *testing.T) {
	s := mustOpen(t, config(t, true))
	sealed, err := s.Seal(t.Context(), secret.Copy([]byte("abc")), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed) != overhead+3 || sealed[0] != format {
		t.Errorf("sealed = %x, want format %#x and %d bytes", sealed, format, overhead+3)
	}
	// A file-seal blob (format 0x01) is not this seal's.
	fs, err := file.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	other, err := fs.Seal(t.Context(), secret.Copy([]byte("abc")), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(t.Context(), other, nil); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("Open(file-seal blob) = %v, want seal.ErrOpen", err)
	}
	relabeled := bytes.Clone(other)
	relabeled[0] = format
	if _, err := s.Open(t.Context(), relabeled, nil); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("Open(file-seal blob with format 0x02) = %v, want seal.ErrOpen", err)
	}
}

// TestRecoversLostLogin logs the token out behind the Sealer's back, as a
// token reset would: the next operation logs in again and succeeds.
func TestRecoversLostLogin(t *testing.T) {
	s := mustOpen(t, config(t, true))
	sealed, err := s.Seal(t.Context(), secret.Copy([]byte("k")), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.tok.mod.ctx.Logout(s.tok.login); err != nil {
		t.Fatal(err)
	}
	got, err := s.Open(t.Context(), sealed, nil)
	if err != nil {
		t.Fatalf("Open() after the token was logged out: %v", err)
	}
	got.Wipe()
	if _, err := s.Seal(t.Context(), secret.Copy([]byte("k")), nil); err != nil {
		t.Fatalf("Seal() after the token was logged out: %v", err)
	}
}

// TestManySealers opens, uses and closes Sealers of one token from many
// goroutines at once: the shared module and login survive every
// interleaving, and the last Close unloads the module.
func TestManySealers(t *testing.T) {
	cfg := config(t, true)
	first := mustOpen(t, cfg)
	sealed, err := first.Seal(t.Context(), secret.Copy([]byte("shared")), nil)
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 5 {
				s, err := Open(cfg)
				if err != nil {
					t.Errorf("goroutine %d: Open() = %v", i, err)
					return
				}
				got, err := s.Open(context.Background(), sealed, nil)
				if err != nil || string(got.Expose()) != "shared" {
					t.Errorf("goroutine %d: Open(sealed) = %v", i, err)
				}
				got.Wipe()
				if err := s.Close(); err != nil {
					t.Errorf("goroutine %d: Close() = %v", i, err)
				}
			}
		})
	}
	wg.Wait()
	registry.mu.Lock()
	n := len(registry.modules)
	registry.mu.Unlock()
	if n != 0 {
		t.Errorf("%d modules still loaded after the last Close", n)
	}
}

// TestCloseWaitsForOperations closes a Sealer while operations run: each
// either completes or fails with ErrClosed, never anything else.
func TestCloseWaitsForOperations(t *testing.T) {
	s, err := Open(config(t, true))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				sealed, err := s.Seal(context.Background(), secret.Copy([]byte("x")), nil)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Seal() = %v, want nil or ErrClosed", err)
					return
				}
				got, err := s.Open(context.Background(), sealed, nil)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Open() = %v, want nil or ErrClosed", err)
					return
				}
				got.Wipe()
			}
		})
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
}
