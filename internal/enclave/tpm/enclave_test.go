package tpm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/hpke"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/secret"
)

func TestKind(t *testing.T) {
	e := openEnclave(t, "")
	if got := e.Kind(); got != api.EnclaveTPM {
		t.Errorf("Kind() = %q, want %q", got, api.EnclaveTPM)
	}
}

func TestIdentityKeySigns(t *testing.T) {
	e := openEnclave(t, "")
	s, err := e.IdentityKey(t.Context())
	if err != nil {
		t.Fatalf("IdentityKey() = %v", err)
	}
	pub, ok := s.Public().(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("Public() is %T, want *ecdsa.PublicKey", s.Public())
	}
	digest := sha256.Sum256([]byte("csr to be signed"))
	sig, err := s.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign() = %v", err)
	}
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Error("VerifyASN1(Sign(digest)) = false, want true")
	}
	other := sha256.Sum256([]byte("something else"))
	if ecdsa.VerifyASN1(pub, other[:], sig) {
		t.Error("signature verifies for another digest")
	}

	again, err := e.IdentityKey(t.Context())
	if err != nil {
		t.Fatalf("IdentityKey() again = %v", err)
	}
	if !again.Public().(*ecdsa.PublicKey).Equal(pub) {
		t.Error("second IdentityKey() returned another key")
	}
}

func TestIdentityKeyRejectsOtherHashes(t *testing.T) {
	e := openEnclave(t, "")
	s, err := e.IdentityKey(t.Context())
	if err != nil {
		t.Fatalf("IdentityKey() = %v", err)
	}
	d384 := sha512.Sum384([]byte("x"))
	d256 := sha256.Sum256([]byte("x"))
	for _, tc := range []struct {
		name   string
		digest []byte
		opts   crypto.SignerOpts
	}{
		{"sha384", d384[:], crypto.SHA384},
		{"nil opts", d256[:], nil},
		{"short digest", d256[:16], crypto.SHA256},
		{"unhashed", d256[:], crypto.Hash(0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Sign(nil, tc.digest, tc.opts); err == nil {
				t.Error("Sign() = nil error, want an error")
			}
		})
	}
}

func TestKeysSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	e1, err := Open(ctx, sim, dir)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	id1, tk1 := keys(t, e1)
	ak1, err := e1.AKPublic(ctx)
	if err != nil {
		t.Fatalf("AKPublic() = %v", err)
	}
	secretText := secret.Copy([]byte("survives a restart"))
	defer secretText.Wipe()
	blob, err := e1.LocalSeal(ctx, secretText, []byte("aad"))
	if err != nil {
		t.Fatalf("LocalSeal() = %v", err)
	}
	wrapped := hpkeSeal(t, tk1.PublicKey(), []byte("wrapped before restart"))
	if err := e1.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	e2 := openEnclave(t, dir)
	id2, err := e2.IdentityKey(ctx)
	if err != nil {
		t.Fatalf("IdentityKey() after reopen = %v", err)
	}
	if !id2.Public().(*ecdsa.PublicKey).Equal(id1.Public()) {
		t.Error("identity key changed across reopen")
	}
	tk2, err := e2.TransportKey(ctx, api.KEMP256)
	if err != nil {
		t.Fatalf("TransportKey() after reopen = %v", err)
	}
	if !bytes.Equal(tk2.PublicKey().Bytes(), tk1.PublicKey().Bytes()) {
		t.Error("transport key changed across reopen")
	}
	if got := hpkeOpen(t, tk2, wrapped); string(got) != "wrapped before restart" {
		t.Errorf("hpke.Open after reopen = %q", got)
	}
	ak2, err := e2.AKPublic(ctx)
	if err != nil {
		t.Fatalf("AKPublic() after reopen = %v", err)
	}
	if !bytes.Equal(ak1, ak2) {
		t.Error("attestation key changed across reopen")
	}
	pt, err := e2.LocalOpen(ctx, blob, []byte("aad"))
	if err != nil {
		t.Fatalf("LocalOpen(blob from before restart) = %v", err)
	}
	defer pt.Wipe()
	if !pt.Equal(secretText) {
		t.Error("LocalOpen after reopen returned other bytes")
	}
}

func TestTamperedBlobIsAnError(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	e := openEnclave(t, dir)
	keys(t, e)
	e.Close()
	good, err := os.ReadFile(filepath.Join(dir, identityFile))
	if err != nil {
		t.Fatal(err)
	}
	transportBlob, err := os.ReadFile(filepath.Join(dir, transportFile))
	if err != nil {
		t.Fatal(err)
	}

	flipped := bytes.Clone(good)
	flipped[len(flipped)-5] ^= 1 // in the encrypted private area
	for _, tc := range []struct {
		name string
		blob []byte
	}{
		{"flipped private bit", flipped},
		{"truncated", good[:len(good)-1]},
		{"another key's blob", transportBlob}, // a decryption key as identity
		{"empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, identityFile), tc.blob, 0o600); err != nil {
				t.Fatal(err)
			}
			e := openEnclave(t, dir)
			if _, err := e.IdentityKey(ctx); err == nil {
				t.Fatal("IdentityKey() over a bad blob = nil error, want an error")
			}
			got, err := os.ReadFile(filepath.Join(dir, identityFile))
			if err != nil || !bytes.Equal(got, tc.blob) {
				t.Error("IdentityKey() replaced the bad blob, want it left for the operator")
			}
		})
	}
}

func TestLocalSeal(t *testing.T) {
	ctx := t.Context()
	e := openEnclave(t, "")
	pt := secret.Copy([]byte("stateless key material"))
	defer pt.Wipe()
	aad := []byte("key-id v1")
	blob, err := e.LocalSeal(ctx, pt, aad)
	if err != nil {
		t.Fatalf("LocalSeal() = %v", err)
	}
	if bytes.Contains(blob, pt.Expose()) {
		t.Fatal("LocalSeal blob contains the plaintext")
	}
	got, err := e.LocalOpen(ctx, blob, aad)
	if err != nil {
		t.Fatalf("LocalOpen() = %v", err)
	}
	if !got.Equal(pt) {
		t.Error("LocalOpen(LocalSeal(pt)) != pt")
	}
	got.Wipe()

	other := openEnclave(t, "") // same TPM, other directory: another LMK
	for _, tc := range []struct {
		name string
		e    *Enclave
		blob []byte
		aad  []byte
	}{
		{"other aad", e, blob, []byte("key-id v2")},
		{"nil aad", e, blob, nil},
		{"flipped tag", e, flip(blob, len(blob)-1), aad},
		{"flipped version", e, flip(blob, 0), aad},
		{"flipped nonce", e, flip(blob, 3), aad},
		{"truncated", e, blob[:len(blob)-1], aad},
		{"version only", e, blob[:1], aad},
		{"empty", e, nil, aad},
		{"other LMK", other, blob, aad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.e.LocalOpen(ctx, tc.blob, tc.aad); !errors.Is(err, enclave.ErrOpen) {
				t.Errorf("LocalOpen() = %v, want ErrOpen", err)
			}
		})
	}
}

func TestProtect(t *testing.T) {
	e := openEnclave(t, "")
	material := secret.Copy([]byte("0123456789abcdef0123456789abcdef"))
	raw := material.Expose()
	p, err := e.Protect(material)
	if err != nil {
		t.Fatalf("Protect() = %v", err)
	}
	if material.Len() != 0 || !bytes.Equal(raw, make([]byte, len(raw))) {
		t.Error("Protect() left the caller's copy unwiped")
	}
	for range 2 {
		got, err := p.Open()
		if err != nil {
			t.Fatalf("Open() = %v", err)
		}
		if string(got.Expose()) != "0123456789abcdef0123456789abcdef" {
			t.Error("Open() returned other bytes")
		}
		got.Wipe()
	}
	p.Destroy()
	p.Destroy()
	if _, err := p.Open(); !errors.Is(err, ErrDestroyed) {
		t.Errorf("Open() after Destroy = %v, want ErrDestroyed", err)
	}
	if _, err := e.Protect(secret.Copy(nil)); err == nil {
		t.Error("Protect(empty) = nil error, want an error")
	}
}

func TestClosed(t *testing.T) {
	ctx := t.Context()
	e := openEnclave(t, "")
	id, tk := keys(t, e)
	p, err := e.Protect(secret.Copy([]byte("data key")))
	if err != nil {
		t.Fatalf("Protect() = %v", err)
	}
	wrapped := hpkeSeal(t, tk.PublicKey(), []byte("x"))
	if err := e.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}

	digest := sha256.Sum256(nil)
	checks := map[string]func() error{
		"IdentityKey": func() error { _, err := e.IdentityKey(ctx); return err },
		"TransportKey": func() error {
			_, err := e.TransportKey(ctx, api.KEMP256)
			return err
		},
		"Protect": func() error { _, err := e.Protect(secret.Copy([]byte("k"))); return err },
		"LocalSeal": func() error {
			_, err := e.LocalSeal(ctx, secret.Copy([]byte("k")), nil)
			return err
		},
		"LocalOpen":      func() error { _, err := e.LocalOpen(ctx, []byte{1}, nil); return err },
		"Attest":         func() error { _, err := e.Attest(ctx, []byte("n"), nil, api.PublicKey{}); return err },
		"Protected.Open": func() error { _, err := p.Open(); return err },
		"Signer.Sign":    func() error { _, err := id.Sign(nil, digest[:], crypto.SHA256); return err },
		"hpke.Open":      func() error { _, err := hpkeOpenErr(tk, wrapped); return err },
	}
	for name, f := range checks {
		if err := f(); !errors.Is(err, enclave.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

func TestFlushesTransientObjects(t *testing.T) {
	ctx := t.Context()
	before := transientObjects(t)
	e, err := Open(ctx, sim, t.TempDir())
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	if got := transientObjects(t); got != before+1 {
		t.Errorf("objects after Open = %d, want %d (the SRK)", got, before+1)
	}
	id, _ := e.IdentityKey(ctx)
	digest := sha256.Sum256(nil)
	if _, err := id.Sign(nil, digest[:], crypto.SHA256); err != nil {
		t.Fatalf("Sign() = %v", err)
	}
	tk, _ := e.TransportKey(ctx, api.KEMP256)
	hpkeOpen(t, tk, hpkeSeal(t, tk.PublicKey(), []byte("x")))
	if _, err := e.Attest(ctx, []byte("nonce"), nil, api.PublicKey{}); err != nil {
		t.Fatalf("Attest() = %v", err)
	}
	if got := transientObjects(t); got != before+1 {
		t.Errorf("objects after operations = %d, want %d (the SRK)", got, before+1)
	}
	e.Close()
	if got := transientObjects(t); got != before {
		t.Errorf("objects after Close = %d, want %d", got, before)
	}
}

func TestConcurrentUse(t *testing.T) {
	ctx := t.Context()
	e := openEnclave(t, "")
	id, tk := keys(t, e)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Go(func() {
			digest := sha256.Sum256([]byte{byte(i)})
			sig, err := id.Sign(nil, digest[:], crypto.SHA256)
			if err != nil || !ecdsa.VerifyASN1(id.Public().(*ecdsa.PublicKey), digest[:], sig) {
				errs <- fmt.Errorf("Sign: %v", err)
			}
		})
		wg.Go(func() {
			msg := []byte{byte(i)}
			ct, err := hpke.Seal(tk.PublicKey(), hpke.HKDFSHA256(), hpke.AES256GCM(), hpkeInfo, msg)
			if err != nil {
				errs <- err
				return
			}
			if got, err := hpkeOpenErr(tk, ct); err != nil || !bytes.Equal(got, msg) {
				errs <- fmt.Errorf("hpke.Open: %v", err)
			}
		})
		wg.Go(func() {
			pt := secret.Copy([]byte{byte(i), 1, 2, 3})
			defer pt.Wipe()
			blob, err := e.LocalSeal(ctx, pt, nil)
			if err != nil {
				errs <- err
				return
			}
			got, err := e.LocalOpen(ctx, blob, nil)
			if err != nil || !got.Equal(pt) {
				errs <- fmt.Errorf("LocalOpen: %v", err)
			}
			got.Wipe()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestNeverPrintsSecrets(t *testing.T) {
	e := openEnclave(t, "")
	p, err := e.Protect(secret.Copy([]byte("0123456789abcdef")))
	if err != nil {
		t.Fatalf("Protect() = %v", err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%d", "%q"} {
		for _, v := range []any{e, p} {
			out := fmt.Sprintf(verb, v)
			if !strings.HasPrefix(out, "tpm.") {
				t.Errorf("Sprintf(%q, %T) = %q, want a redacted name", verb, v, out)
			}
		}
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x80
	return c
}
