package secretcheck

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/ca"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/enclave/software"
	"github.com/dcaas/dcaas/internal/enclave/tpm"
	"github.com/dcaas/dcaas/internal/enclave/tpm/tpmsim"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/keyring"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/seal/file"
	"github.com/dcaas/dcaas/internal/seal/pkcs11"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/sidecar"
)

// verbs are the fmt verbs a log line or an error message might use.
var verbs = []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"}

// known returns n bytes that are easy to recognize and unlikely to occur
// by chance: SHA-256 of a label, repeated.
func known(label string, n int) []byte {
	var out []byte
	for i := 0; len(out) < n; i++ {
		h := sha256.Sum256([]byte(fmt.Sprintf("secretcheck/%s/%d", label, i)))
		out = append(out, h[:]...)
	}
	return out[:n]
}

// encodings are the ways a window of material shows up in formatted
// output: raw, hex either case, base64 (std and URL, of the whole
// material), fmt's decimal byte list and %#v's hex list, and %q's escapes.
func encodings(material []byte) []string {
	var out []string
	windows := [][]byte{material}
	if len(material) > 16 {
		windows = [][]byte{material[:12], material[len(material)-12:]}
	}
	for _, w := range windows {
		gv := fmt.Sprintf("%#v", w)
		out = append(out,
			string(w),
			hex.EncodeToString(w),
			strings.ToUpper(hex.EncodeToString(w)),
			strings.Trim(fmt.Sprint(w), "[]"),
			gv[strings.Index(gv, "{")+1:len(gv)-1],
			strings.Trim(strconv.Quote(string(w)), `"`),
		)
	}
	b64 := base64.StdEncoding.EncodeToString(material)
	url := base64.RawURLEncoding.EncodeToString(material)
	n := min(16, len(b64)-4)
	return append(out, b64[:n], url[:n])
}

// subject is a value holding material that must never be printed.
type subject struct {
	name     string
	v        any
	material [][]byte
}

// renderings formats v every way a program might let it escape: fmt
// verbs, fmt inside a struct, a slice and a map, JSON, and slog's text and
// JSON handlers.
func renderings(v any) map[string]string {
	out := map[string]string{}
	for _, verb := range verbs {
		out[verb] = fmt.Sprintf(verb, v)
		out["struct "+verb] = fmt.Sprintf(verb, struct{ V any }{v})
		out["slice "+verb] = fmt.Sprintf(verb, []any{v})
		out["map "+verb] = fmt.Sprintf(verb, map[string]any{"k": v})
	}
	out["Sprint"] = fmt.Sprint(v)
	out["error %w"] = fmt.Errorf("failed with %v", v).Error()
	if b, err := json.Marshal(v); err == nil {
		out["json"] = string(b)
	}
	if b, err := json.Marshal(struct{ V any }{v}); err == nil {
		out["json in struct"] = string(b)
	}
	var text, js bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("m", "v", v)
	slog.New(slog.NewJSONHandler(&js, nil)).Info("m", "v", v)
	out["slog text"] = text.String()
	out["slog json"] = js.String()
	return out
}

// derefSecret matches what fmt prints when it dereferences a
// *secret.Bytes itself, bypassing its Format method: a pointer field that
// fmt reaches through an unexported field and prints with a verb pointers
// do not take (%s, %q, ...), which fmt answers with %!s(*T=&{...}).
var derefSecret = regexp.MustCompile(`secret\.Bytes=&\{\[[0-9]`)

// check fails if any rendering of s.v, or of the value it points to, holds
// any of its material, or shows a secret.Bytes's contents. It reports each
// form once, with every rendering that leaked.
func check(t *testing.T, s subject) {
	t.Helper()
	forms := map[string]any{"*p": s.v}
	// The value behind a pointer: what a copy, an embedding or a
	// dereference prints.
	if rv := reflect.ValueOf(s.v); rv.Kind() == reflect.Pointer && !rv.IsNil() && rv.Elem().CanInterface() {
		forms["value *p"] = rv.Elem().Interface()
	} else {
		forms = map[string]any{"value": s.v}
	}
	for _, form := range slices.Sorted(maps.Keys(forms)) {
		var leaks []string
		var sample, as string
		r := renderings(forms[form])
		for _, how := range slices.Sorted(maps.Keys(r)) {
			text := r[how]
			enc, ok := leak(text, s.material)
			if !ok {
				continue
			}
			leaks = append(leaks, how)
			if sample == "" {
				sample, as = text, enc
			}
		}
		if len(leaks) > 0 {
			t.Errorf("%s (%s form) shows its material in %d renderings: %s\n  e.g. %s, as %q:\n  %s",
				s.name, form, len(leaks), strings.Join(leaks, ", "), leaks[0], as, cut(sample))
		}
	}
}

// leak reports whether text holds any encoding of any of material, or a
// dereferenced secret.Bytes, and which.
func leak(text string, material [][]byte) (string, bool) {
	if m := derefSecret.FindString(text); m != "" {
		return m, true
	}
	for _, m := range material {
		for _, enc := range encodings(m) {
			if strings.Contains(text, enc) {
				return enc, true
			}
		}
	}
	return "", false
}

func cut(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// TestEncodingsFindMaterial keeps the checker honest: printing a plain
// struct that holds material must be caught by every verb.
func TestEncodingsFindMaterial(t *testing.T) {
	m := known("self-test", 32)
	type leaky struct{ b []byte }
	for _, verb := range verbs {
		text := fmt.Sprintf(verb, leaky{m})
		found := false
		for _, enc := range encodings(m) {
			found = found || strings.Contains(text, enc)
		}
		if !found {
			t.Errorf("%s of a struct holding the material (%q) was not recognized", verb, cut(text))
		}
	}
}

func TestSecretBytes(t *testing.T) {
	m := known("secret.Bytes", 32)
	check(t, subject{"secret.Bytes", secret.Copy(m), [][]byte{m}})
}

func TestCryptoKeys(t *testing.T) {
	for _, typ := range []api.KeyType{api.KeyAES256GCM, api.KeyHMACSHA256, api.KeyEd25519, api.KeyECDSAP256, api.KeyMLDSA65} {
		t.Run(string(typ), func(t *testing.T) {
			material, err := kcrypto.GenerateKey(typ)
			if errors.Is(err, kcrypto.ErrNotApproved) {
				t.Skipf("%s is not available in FIPS mode", typ)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer material.Wipe()
			m := bytes.Clone(material.Expose())
			k, err := kcrypto.NewKey(typ, "key_secretcheck", 1, material)
			if err != nil {
				t.Fatal(err)
			}
			defer k.Wipe()
			check(t, subject{"crypto.Key(" + string(typ) + ")", k, [][]byte{m}})
		})
	}
}

func TestCryptoAEAD(t *testing.T) {
	m := known("aead", kcrypto.AEADKeySize)
	a, err := kcrypto.NewAEAD(secret.Copy(m))
	if err != nil {
		t.Fatal(err)
	}
	check(t, subject{"crypto.AEAD", a, [][]byte{m}})
}

// TestCryptoLogKey: the audit log's signing key, by its seed and its
// expanded private key.
func TestCryptoLogKey(t *testing.T) {
	m := known("logkey", 32)
	k, err := kcrypto.NewLogKey(secret.Copy(m))
	if err != nil {
		t.Fatal(err)
	}
	priv := ed25519.NewKeyFromSeed(m)
	check(t, subject{"crypto.LogKey", k, [][]byte{m, priv}})
}

func TestCryptoUnwrapperAndWrapItem(t *testing.T) {
	priv, err := kcrypto.GenerateKEMKey(kcrypto.DefaultKEM())
	if err != nil {
		t.Fatal(err)
	}
	privBytes, err := priv.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	dek := known("wrapped dek", 32)
	item := kcrypto.WrapItem{AAD: []byte("aad"), Key: secret.Copy(dek)}
	check(t, subject{"crypto.WrapItem", item, [][]byte{dek}})
	check(t, subject{"*crypto.WrapItem", &item, [][]byte{dek}})
	wrapped, err := kcrypto.WrapBatch(priv.PublicKey(), []byte("info"), []kcrypto.WrapItem{item})
	if err != nil {
		t.Fatal(err)
	}
	u := kcrypto.NewUnwrapper(priv, []byte("info"))
	defer u.Close()
	got, err := u.Unwrap(wrapped[0], []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	defer got.Wipe()
	// The Unwrapper now caches the batch's key-encryption key: the HPKE
	// export "dcaas/v1 batch-wrap kek" of the batch's encapsulation (see
	// crypto.WrapBatch), which the test derives the same way.
	w, err := format.ParseWrappedKey(wrapped[0])
	if err != nil {
		t.Fatal(err)
	}
	r, err := hpke.NewRecipient(w.Enc, priv, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte("info"))
	if err != nil {
		t.Fatal(err)
	}
	kek, err := r.Export("dcaas/v1 batch-wrap kek", kcrypto.AEADKeySize)
	if err != nil {
		t.Fatal(err)
	}
	check(t, subject{"crypto.Unwrapper", u, [][]byte{privBytes, dek, kek}})
}

// enclaveSubjects checks an enclave, and what it hands out, after it was
// given m to protect.
func enclaveSubjects(t *testing.T, name string, e enclave.Enclave, m []byte) {
	t.Helper()
	ctx := t.Context()
	p, err := e.Protect(secret.Copy(m))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Destroy()
	signer, err := e.IdentityKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kem := api.KEMP256
	tk, err := e.TransportKey(ctx, kem)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := e.LocalSeal(ctx, secret.Copy(m), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	opened, err := e.LocalOpen(ctx, blob, []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	defer opened.Wipe()
	for _, s := range []subject{
		{name + " enclave", e, [][]byte{m}},
		{name + " Protected", p, [][]byte{m}},
		{name + " identity key", signer, [][]byte{m}},
		{name + " transport key", tk, [][]byte{m}},
	} {
		check(t, s)
	}
	// The enclaves' private keys cannot be exported, so there is nothing to
	// print.
	if b, err := tk.Bytes(); err == nil {
		t.Errorf("%s transport key exports its private key (%d bytes)", name, len(b))
	}
}

func TestSoftwareEnclave(t *testing.T) {
	e, err := software.New()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	enclaveSubjects(t, "software", e, known("software enclave", 32))
}

func TestTPMEnclave(t *testing.T) {
	sim, err := tpmsim.Open()
	if err != nil {
		t.Fatalf("TPM simulator: %v (it needs cgo, gcc and libssl-dev: scripts/deps.sh)", err)
	}
	defer sim.Close()
	e, err := tpm.Open(t.Context(), sim, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	enclaveSubjects(t, "tpm", e, known("tpm enclave", 32))
}

func TestKeyring(t *testing.T) {
	e, err := software.New()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	m := known("keyring", 32)
	r := keyring.New(e, keyring.Config{BoundDN: "CN=payments-api,O=acme"})
	defer r.Close()
	md := api.KeyMetadata{KeyID: "key_secretcheck", Version: 1, Tenant: "acme", Type: api.KeyAES256GCM, Owner: "CN=payments-api,O=acme", CreatedAt: time.Now()}
	if err := r.Put(md, secret.Copy(m), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	h, err := r.Acquire(md.KeyID, 0, api.ActionEncrypt)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release()
	check(t, subject{"keyring.Ring", r, [][]byte{m}})
	check(t, subject{"keyring.Handle", h, [][]byte{m}})
	check(t, subject{"keyring.Ring.List()", r.List(), [][]byte{m}})
}

// TestFileSealer: the file seal's root key (in clear on disk in mode 0, so
// the test can read it) and the seal key derived from it.
func TestFileSealer(t *testing.T) {
	dir := t.TempDir()
	s, err := file.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	raw, err := os.ReadFile(filepath.Join(dir, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	const header = len("DRK1") + 1
	if len(raw) != header+32 {
		t.Fatalf("root.key is %d bytes, want the %d of mode 0 (format changed? see internal/seal/file)", len(raw), header+32)
	}
	root := raw[header:]
	sealKey, err := hkdf.Key(sha256.New, root, nil, "dcaas/v1 seal", 32)
	if err != nil {
		t.Fatal(err)
	}
	check(t, subject{"seal/file.Sealer", s, [][]byte{root, sealKey}})
}

func TestCA(t *testing.T) {
	der, key, err := ca.Generate("secretcheck CA", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.New(der, key)
	if err != nil {
		t.Fatal(err)
	}
	d, err := key.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	check(t, subject{"ca.CA", c, [][]byte{d}})
}

// TestConfigsWithSecrets: configuration structs are what programs log at
// start-up; the secrets they carry must not come out with them.
func TestConfigsWithSecrets(t *testing.T) {
	pass := known("passphrase", 24)
	check(t, subject{"kms.Options (Passphrase)", kms.Options{DataDir: "/d", Passphrase: secret.Copy(pass)}, [][]byte{pass}})
	pin := known("pin", 16)
	check(t, subject{"pkcs11.Config (PIN)", pkcs11.Config{ModulePath: "/m.so", TokenLabel: "t", PIN: secret.Copy(pin)}, [][]byte{pin}})
	// The enrollment token is secret zero: a Config printed before New
	// consumes it hands a live token to whoever reads the log.
	tok, _ := kcrypto.NewToken("dcet_")
	check(t, subject{"sidecar.Config (EnrollToken)", sidecar.Config{KMSURL: "https://kms", EnrollToken: sidecar.Secret([]byte(tok))}, [][]byte{[]byte(tok)[len("dcet_"):]}})
}

// TestSealedFormatsHoldNoMaterial: the blobs that do travel (EKB, wrapped
// key, sealed key) print as ciphertext, never as their plaintext. Here only
// the sealed key: its blob is opaque to this package.
func TestSealedFormatsHoldNoMaterial(t *testing.T) {
	e, err := software.New()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	m := known("sealed key", 32)
	blob, err := e.LocalSeal(context.Background(), secret.Copy(m), []byte("h"))
	if err != nil {
		t.Fatal(err)
	}
	sk := &format.SealedKey{Metadata: []byte(`{"key_id":"k"}`), Blob: blob}
	check(t, subject{"format.SealedKey", sk, [][]byte{m}})
}

// TestKMSAndSidecar: the long-lived server objects. The KMS caches
// unsealed tenant master keys; a sidecar holds its keyring and enclave.
// Neither may print a secret.Bytes's contents (the material itself is not
// known to this test; the dereference is).
func TestKMSAndSidecar(t *testing.T) {
	env := kmstest.Start(t, nil)
	env.Tenant(t, "acme")
	cust, creds := env.App(t, "acme", "payments-api", api.RoleCustodian)
	pipe, _ := env.App(t, "acme", "deployer", api.RolePipeline)
	var dk api.DataKey
	cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &dk) // caches acme's TMK
	srv := env.Server()
	check(t, subject{"kms.Server", srv, nil})
	check(t, subject{"kms.KMS (caching a tenant master key)", srv.KMS, nil})

	sc := e2e.EnrolledSidecar(t, env, pipe, creds.DN)
	e2e.LoadKeys(t, cust, sc, dk.EKB)
	check(t, subject{"sidecar.Sidecar (with a loaded key)", sc, nil})
}
