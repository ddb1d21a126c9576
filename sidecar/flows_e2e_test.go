package sidecar_test

// End-to-end tests of the key-loading flows of docs/design.md (grant + secure
// channel, seed derivation, stateless sealed keys, retained keys, the
// central path), of key policies and of leases and revocation:
// a real KMS over mTLS (kmstest) and real sidecars on Unix sockets, driven
// through the JSON APIs of docs/api.md.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/devenv"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/sidecar"
)

// waitLimit bounds every wait for a background effect (a poll, an
// eviction).
const waitLimit = 10 * time.Second

// kmsClock runs the fixture's KMS on clock.
func kmsClock(clock *kmstest.Clock) func(*kms.Options) {
	return func(o *kms.Options) { o.Now = clock.Now }
}

// requester sends one JSON request to a sidecar or to the KMS; kmstest.Client.Do
// is one, side.call makes others.
type requester func(method, path string, in, out any) error

// side is a running sidecar reached over its Unix socket.
type side struct {
	sc    *sidecar.Sidecar
	local *client.Sidecar
	id    string // instance id, as GET /v1/status reports it
}

func newSide(t testing.TB, sc *sidecar.Sidecar, local *client.Sidecar) *side {
	t.Helper()
	s := &side{sc: sc, local: local}
	var st api.Status
	s.must(t, "GET", "/v1/status", nil, &st)
	if st.InstanceID == "" {
		t.Fatalf("status = %+v: no instance id", st)
	}
	s.id = st.InstanceID
	return s
}

// main is the fixture's own sidecar.
func (f *fixture) main(t testing.TB) *side { return newSide(t, f.sc, f.local) }

// startSidecar enrolls another sidecar bound to dn (with a pipeline token)
// and serves it on its own Unix socket until the test ends.
func (f *fixture) startSidecar(t testing.TB, dn string, mutate func(*sidecar.Config)) *side {
	t.Helper()
	cfg := e2e.InProcessConfig(t, f.env, f.pipe.EnrollmentToken(t, dn))
	if mutate != nil {
		mutate(&cfg)
	}
	sc, socket := e2e.ServeSidecar(t, cfg, "")
	return newSide(t, sc, devenv.UnixClient(socket))
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (s *side) call(t testing.TB) requester {
	ctx := t.Context()
	return func(method, path string, in, out any) error { return s.local.Do(ctx, method, path, in, out) }
}

func (s *side) try(t testing.TB, method, path string, in, out any) error {
	return s.local.Do(t.Context(), method, path, in, out)
}

func (s *side) must(t testing.TB, method, path string, in, out any) {
	t.Helper()
	if err := s.try(t, method, path, in, out); err != nil {
		t.Fatalf("sidecar %s %s: %v", method, path, err)
	}
}

// load presents a grant to the sidecar's POST /v1/keys/load.
func (s *side) load(t testing.TB, grant string, ekbs [][]byte, keyIDs []string) ([]string, error) {
	var out api.Loaded
	err := s.try(t, "POST", "/v1/keys/load", api.SidecarLoadRequest{Grant: grant, EKBs: ekbs, KeyIDs: keyIDs}, &out)
	return out.Loaded, err
}

func (s *side) derive(t testing.TB, grant string, seeds ...api.Seed) ([]string, error) {
	var out api.Loaded
	err := s.try(t, "POST", "/v1/keys/derive", api.SidecarDeriveRequest{Grant: grant, Seeds: seeds}, &out)
	return out.Loaded, err
}

func (s *side) keys(t testing.TB) []api.LoadedKey {
	t.Helper()
	var out api.LoadedKeys
	s.must(t, "GET", "/v1/keys", nil, &out)
	return out.Keys
}

// grant asks the KMS for a grant as custodian c.
func grant(c *kmstest.Client, req api.GrantRequest) (string, error) { return c.Grant(req) }

func mustGrant(t testing.TB, c *kmstest.Client, req api.GrantRequest) string {
	t.Helper()
	return c.MustGrant(t, req)
}

func dataKey(t testing.TB, c *kmstest.Client, req api.CreateDataKeyRequest) api.DataKey {
	t.Helper()
	return c.DataKey(t, req)
}

// grantLoad loads data keys into s by the grant flow, as the fixture's
// custodian.
func (f *fixture) grantLoad(t testing.TB, s *side, dks ...api.DataKey) {
	t.Helper()
	var ekbs [][]byte
	var want []string
	for _, dk := range dks {
		ekbs = append(ekbs, dk.EKB)
		want = append(want, dk.KeyID)
	}
	g := mustGrant(t, f.cust, api.GrantRequest{InstanceID: s.id, EKBs: ekbs})
	got, err := s.load(t, g, ekbs, nil)
	if err != nil {
		t.Fatalf("sidecar POST /v1/keys/load: %v", err)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("loaded %v, want %v", got, want)
	}
}

func encrypt(c requester, ref api.KeyRef, pt, aad []byte) (api.EncryptResponse, error) {
	var out api.EncryptResponse
	err := c("POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: ref, Plaintext: pt, AAD: aad}, &out)
	return out, err
}

func decrypt(c requester, ref api.KeyRef, ct, aad []byte) ([]byte, error) {
	var out api.DecryptResponse
	err := c("POST", "/v1/crypto/decrypt", api.DecryptRequest{KeyRef: ref, Ciphertext: ct, AAD: aad}, &out)
	return out.Plaintext, err
}

func mustEncrypt(t testing.TB, c requester, ref api.KeyRef, pt, aad []byte) api.EncryptResponse {
	t.Helper()
	out, err := encrypt(c, ref, pt, aad)
	if err != nil {
		t.Fatalf("encrypt(%s): %v", refName(ref), err)
	}
	return out
}

func mustDecrypt(t testing.TB, c requester, ref api.KeyRef, ct, aad, want []byte) {
	t.Helper()
	pt, err := decrypt(c, ref, ct, aad)
	if err != nil {
		t.Fatalf("decrypt(%s): %v", refName(ref), err)
	}
	if !bytes.Equal(pt, want) {
		t.Fatalf("decrypt(%s) = %q, want %q", refName(ref), pt, want)
	}
}

func refName(ref api.KeyRef) string {
	switch {
	case len(ref.SealedKey) > 0:
		return "sealed_key"
	case len(ref.EKB) > 0:
		return "ekb"
	case ref.KeyID != "":
		return ref.KeyID
	}
	return "key from the ciphertext"
}

// roundTrip encrypts and decrypts under keyID through c.
func roundTrip(t testing.TB, c requester, keyID string) {
	t.Helper()
	pt := []byte("pay 100 EUR to " + keyID)
	ct := mustEncrypt(t, c, api.KeyRef{KeyID: keyID}, pt, []byte("aad"))
	if ct.KeyID != keyID {
		t.Fatalf("encrypt answered key %s, want %s", ct.KeyID, keyID)
	}
	mustDecrypt(t, c, api.KeyRef{}, ct.Ciphertext, []byte("aad"), pt)
}

// tamperMetadata flips one bit inside the metadata region of an EKB; the
// result still parses.
func tamperMetadata(t testing.TB, ekb []byte) []byte {
	t.Helper()
	e, err := format.ParseEKB(ekb)
	if err != nil {
		t.Fatal(err)
	}
	off := bytes.Index(ekb, e.Metadata)
	if off < 0 || len(e.Metadata) < 2 {
		t.Fatalf("metadata not found in the EKB")
	}
	out := bytes.Clone(ekb)
	out[off+len(e.Metadata)/2] ^= 0x01
	if _, err := format.ParseEKB(out); err != nil {
		t.Fatalf("the tampered EKB no longer parses: %v", err)
	}
	return out
}

// eventually retries cond until it holds or waitLimit passes.
func eventually(t testing.TB, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, still not %s: %v", waitLimit, what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// isError reports whether err is the API error status/code (for
// eventually).
func isError(err error, status int, code api.Code) error {
	var e *api.Error
	if err == nil {
		return fmt.Errorf("no error, want %d %s", status, code)
	}
	if !errors.As(err, &e) || e.Status != status || e.Code != code {
		return fmt.Errorf("error = %v, want %d %s", err, status, code)
	}
	return nil
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func ed25519Public(t testing.TB, pemText string) ed25519.PublicKey {
	t.Helper()
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		t.Fatalf("public_key_pem is not PEM: %q", pemText)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	k, ok := pub.(ed25519.PublicKey)
	if !ok {
		t.Fatalf("public key is %T, want ed25519", pub)
	}
	return k
}

// TestGrantFlow is docs/design.md, "Grant and secure channel": the custodian asks the KMS for a grant
// bound to (instance, EKB digests); the sidecar presents grant + EKBs to
// the KMS with a fresh ephemeral key.
func TestGrantFlow(t *testing.T) {
	clock := kmstest.NewClock()
	f := newFixture(t, nil, kmsClock(clock))
	a := f.main(t)
	x := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	y := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	forX := api.GrantRequest{InstanceID: a.id, EKBs: [][]byte{x.EKB}}

	g := mustGrant(t, f.cust, forX)
	loaded, err := a.load(t, g, [][]byte{x.EKB}, nil)
	if err != nil || len(loaded) != 1 || loaded[0] != x.KeyID {
		t.Fatalf("load = %v, %v; want [%s]", loaded, err, x.KeyID)
	}
	roundTrip(t, a.call(t), x.KeyID)

	t.Run("replayed grant", func(t *testing.T) {
		_, err := a.load(t, g, [][]byte{x.EKB}, nil)
		kmstest.WantError(t, err, 409, api.CodeAlreadyUsed)
	})
	t.Run("grant for X loading Y", func(t *testing.T) {
		_, err := a.load(t, mustGrant(t, f.cust, forX), [][]byte{y.EKB}, nil)
		kmstest.WantError(t, err, 403, api.CodeForbidden)
		if ks := a.keys(t); len(ks) != 1 || ks[0].KeyID != x.KeyID {
			t.Fatalf("keys after a refused load = %+v, want only %s", ks, x.KeyID)
		}
	})
	t.Run("tampered EKB", func(t *testing.T) {
		bad := tamperMetadata(t, x.EKB)
		// The grant binds the original digest: the tampered EKB is not
		// covered (403 forbidden) or, if the KMS opened it first, it does
		// not open (400 invalid_ekb).
		_, err := a.load(t, mustGrant(t, f.cust, forX), [][]byte{bad}, nil)
		var e *api.Error
		if !errors.As(err, &e) || !(e.Status == 403 && e.Code == api.CodeForbidden || e.Status == 400 && e.Code == api.CodeInvalidEKB) {
			t.Fatalf("load(tampered EKB) = %v, want 403 forbidden or 400 invalid_ekb", err)
		}
		t.Logf("tampered EKB under the original's grant: %d %s", e.Status, e.Code)
		// A grant for the tampered EKB itself: covered, but it does not open.
		gBad := mustGrant(t, f.cust, api.GrantRequest{InstanceID: a.id, EKBs: [][]byte{bad}})
		_, err = a.load(t, gBad, [][]byte{bad}, nil)
		kmstest.WantError(t, err, 400, api.CodeInvalidEKB)
	})

	b := f.startSidecar(t, f.creds.DN, nil)
	t.Run("grant for A presented by B", func(t *testing.T) {
		gA := mustGrant(t, f.cust, forX)
		_, err := b.load(t, gA, [][]byte{x.EKB}, nil)
		kmstest.WantError(t, err, 403, api.CodeForbidden)
		if ks := b.keys(t); len(ks) != 0 {
			t.Fatalf("B loaded %+v with A's grant", ks)
		}
		// B's attempt did not use the grant up (another instance cannot
		// burn it): A loads with it, once.
		if ids, err := a.load(t, gA, [][]byte{x.EKB}, nil); err != nil || len(ids) != 1 || ids[0] != x.KeyID {
			t.Fatalf("A's load with its grant after B's refused attempt = %v, %v; want [%s]", ids, err, x.KeyID)
		}
		_, err = a.load(t, gA, [][]byte{x.EKB}, nil)
		kmstest.WantError(t, err, 409, api.CodeAlreadyUsed)
	})
	t.Run("instance of another custodian", func(t *testing.T) {
		rep, _ := f.env.App(t, "acme", "reporting", api.RoleCustodian)
		_, err := grant(rep, forX)
		kmstest.WantError(t, err, 403, api.CodeForbidden)
	})
	t.Run("revoked instance", func(t *testing.T) {
		gB := mustGrant(t, f.cust, api.GrantRequest{InstanceID: b.id, EKBs: [][]byte{x.EKB}})
		f.cust.MustDo(t, "DELETE", "/v1/instances/"+b.id, nil, nil)
		_, err := grant(f.cust, api.GrantRequest{InstanceID: b.id, EKBs: [][]byte{x.EKB}})
		kmstest.WantError(t, err, 403, api.CodeRevoked)
		// The revoked sidecar presents the grant it got before.
		_, err = b.load(t, gB, [][]byte{x.EKB}, nil)
		kmstest.WantError(t, err, 403, api.CodeRevoked)
	})
	t.Run("expired grant", func(t *testing.T) {
		gExp := mustGrant(t, f.cust, forX)
		clock.Advance(5*time.Minute + time.Second)
		defer clock.Advance(-(5*time.Minute + time.Second))
		_, err := a.load(t, gExp, [][]byte{x.EKB}, nil)
		kmstest.WantError(t, err, 410, api.CodeExpired)
	})
}

// TestSeedDerivation is docs/design.md, "Seed derivation": the same seed yields the same key
// (id and material) on every sidecar of the custodian.
func TestSeedDerivation(t *testing.T) {
	f := newFixture(t, nil)
	a := f.main(t)
	b := f.startSidecar(t, f.creds.DN, nil)
	seed := randomBytes(t, 32)
	aesSeed := api.Seed{Seed: seed, Type: api.KeyAES256GCM}

	ga := mustGrant(t, f.cust, api.GrantRequest{InstanceID: a.id, Seeds: [][]byte{seed}})
	ids, err := a.derive(t, ga, aesSeed)
	if err != nil || len(ids) != 1 || !strings.HasPrefix(ids[0], "drv_") {
		t.Fatalf("derive = %v, %v; want one drv_ key id", ids, err)
	}
	id := ids[0]
	pt := []byte("derived, not stored")
	ct := mustEncrypt(t, a.call(t), api.KeyRef{KeyID: id}, pt, nil)

	gb := mustGrant(t, f.cust, api.GrantRequest{InstanceID: b.id, Seeds: [][]byte{seed}})
	idsB, err := b.derive(t, gb, aesSeed)
	if err != nil || len(idsB) != 1 || idsB[0] != id {
		t.Fatalf("second sidecar derive = %v, %v; want [%s]", idsB, err, id)
	}
	mustDecrypt(t, b.call(t), api.KeyRef{}, ct.Ciphertext, nil, pt)
	ctB := mustEncrypt(t, b.call(t), api.KeyRef{KeyID: id}, pt, nil)
	mustDecrypt(t, a.call(t), api.KeyRef{}, ctB.Ciphertext, nil, pt)

	t.Run("seed not in the grant", func(t *testing.T) {
		g := mustGrant(t, f.cust, api.GrantRequest{InstanceID: a.id, Seeds: [][]byte{seed}})
		_, err := a.derive(t, g, api.Seed{Seed: randomBytes(t, 32), Type: api.KeyAES256GCM})
		kmstest.WantError(t, err, 403, api.CodeForbidden)
	})
	t.Run("short seed", func(t *testing.T) {
		short := randomBytes(t, kcrypto.MinSeedLen-1)
		_, err := grant(f.cust, api.GrantRequest{InstanceID: a.id, Seeds: [][]byte{short}})
		kmstest.WantError(t, err, 400, api.CodeInvalidArgument)
		g := mustGrant(t, f.cust, api.GrantRequest{InstanceID: a.id, Seeds: [][]byte{seed}})
		_, err = a.derive(t, g, api.Seed{Seed: short, Type: api.KeyAES256GCM})
		kmstest.WantError(t, err, 400, api.CodeInvalidArgument)
	})
	t.Run("custodian of another tenant", func(t *testing.T) {
		f.env.Tenant(t, "globex")
		gx, _ := f.env.App(t, "globex", "payments-api", api.RoleCustodian)
		_, err := grant(gx, api.GrantRequest{InstanceID: a.id, Seeds: [][]byte{seed}})
		kmstest.WantError(t, err, 403, api.CodeWrongTenant)
	})
}

// TestSeedDerivationVector pins seed derivation v1 (docs/design.md, "Seed derivation") to
// values computed by an independent implementation (Python's hashlib and
// hmac):
//
//	python3 -c 'import hashlib,hmac,base64;hk=bytes(range(32));seed=bytes(range(0x40,0x60));salt=hmac.new(hk,seed,"sha256").digest();print(hashlib.pbkdf2_hmac("sha256",seed,salt,10000,32).hex());print("drv_"+base64.b32encode(hmac.new(hk,b"dcaas/v1 seed key id\x00"+b"aes-256-gcm\x00"+seed,"sha256").digest()[:16]).decode().rstrip("=").lower());print("drv_"+base64.b32encode(hmac.new(hk,b"dcaas/v1 seed key id\x00"+b"hmac-sha256\x00"+seed,"sha256").digest()[:16]).decode().rstrip("=").lower());print(hmac.new(hk,b"dcaas/v1 grant seed\x00"+seed,"sha256").hexdigest())'
func TestSeedDerivationVector(t *testing.T) {
	hkBytes := make([]byte, 32)
	for i := range hkBytes {
		hkBytes[i] = byte(i)
	}
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(0x40 + i)
	}
	const (
		wantDEK    = "4d84a91e1323988edf22a9636a3e811ae8346673208d4503dcd5bc71a017b407"
		wantAESID  = "drv_myffhil66yupzs7f52stwl3wxi"
		wantHMACID = "drv_tg5nxfiabolilkvnxgj5tkg4i4"
		wantMAC    = "cdafaaee373b6a4bb6cd120a7bdde5197ce8b5a430fccaac09d83246e8b4d0c8"
	)
	hk := secret.New(hkBytes)
	defer hk.Wipe()
	dek, err := kcrypto.DeriveSeedKey(kcrypto.SeedKDFv1, hk, seed)
	if err != nil {
		t.Fatalf("DeriveSeedKey = %v", err)
	}
	defer dek.Wipe()
	if got := hex.EncodeToString(dek.Expose()); got != wantDEK {
		t.Errorf("DeriveSeedKey = %s, want %s", got, wantDEK)
	}
	if got := kcrypto.SeedKeyID(hk, api.KeyAES256GCM, seed); got != wantAESID {
		t.Errorf("SeedKeyID(aes-256-gcm) = %s, want %s", got, wantAESID)
	}
	if got := kcrypto.SeedKeyID(hk, api.KeyHMACSHA256, seed); got != wantHMACID {
		t.Errorf("SeedKeyID(hmac-sha256) = %s, want %s", got, wantHMACID)
	}
	if got := hex.EncodeToString(kcrypto.SeedMAC(hk, seed)); got != wantMAC {
		t.Errorf("SeedMAC = %s, want %s", got, wantMAC)
	}
	// docs/formats.md §7 quotes the vector for independent implementations.
	doc, err := os.ReadFile("../docs/formats.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{wantDEK, wantAESID, wantHMACID, wantMAC} {
		if !strings.Contains(string(doc), "`"+v+"`") {
			t.Errorf("docs/formats.md does not quote %s (seed derivation v1)", v)
		}
	}
	for _, n := range []int{0, kcrypto.MinSeedLen - 1, kcrypto.MaxSeedLen + 1} {
		if k, err := kcrypto.DeriveSeedKey(kcrypto.SeedKDFv1, hk, make([]byte, n)); err == nil {
			k.Wipe()
			t.Errorf("DeriveSeedKey(%d-byte seed) = nil error, want one", n)
		}
	}
}

// TestStatelessSealedKeys is docs/design.md, "Stateless sealed keys": sealed keys leave the
// sidecar's memory and travel with every request.
func TestStatelessSealedKeys(t *testing.T) {
	f := newFixture(t, nil)
	a := f.main(t)
	aes := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	ed := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyEd25519})
	f.grantLoad(t, a, aes, ed)

	var sealed api.SealResponse
	a.must(t, "POST", "/v1/keys/seal", api.SealRequest{KeyIDs: []string{aes.KeyID, ed.KeyID}}, &sealed)
	if len(sealed.Sealed) != 2 || sealed.Sealed[0].KeyID != aes.KeyID || sealed.Sealed[1].KeyID != ed.KeyID {
		t.Fatalf("seal = %+v", sealed)
	}
	aesBlob, edBlob := sealed.Sealed[0].SealedKey, sealed.Sealed[1].SealedKey
	if ks := a.keys(t); len(ks) != 0 {
		t.Fatalf("keys after seal = %+v, want none", ks)
	}
	_, err := encrypt(a.call(t), api.KeyRef{KeyID: aes.KeyID}, []byte("x"), nil)
	kmstest.WantError(t, err, 404, api.CodeNotFound)

	pt := []byte("stateless")
	ct := mustEncrypt(t, a.call(t), api.KeyRef{SealedKey: aesBlob}, pt, []byte("aad"))
	if ct.KeyID != aes.KeyID || ct.KeyVersion != 1 {
		t.Fatalf("encrypt(sealed_key) = key %s v%d", ct.KeyID, ct.KeyVersion)
	}
	mustDecrypt(t, a.call(t), api.KeyRef{SealedKey: aesBlob}, ct.Ciphertext, []byte("aad"), pt)
	// The central path, holding the EKB, opens what the sealed key made.
	mustDecrypt(t, f.cust.Do, api.KeyRef{EKB: aes.EKB}, ct.Ciphertext, []byte("aad"), pt)

	var sig api.SignResponse
	a.must(t, "POST", "/v1/crypto/sign", api.SignRequest{KeyRef: api.KeyRef{SealedKey: edBlob}, Message: pt}, &sig)
	if !ed25519.Verify(ed25519Public(t, ed.PublicKeyPEM), pt, sig.Signature) {
		t.Fatal("the sealed ed25519 key's signature does not verify under the key's public key")
	}
	if ks := a.keys(t); len(ks) != 0 {
		t.Fatalf("keys after sealed operations = %+v, want none", ks)
	}

	t.Run("flipped byte", func(t *testing.T) {
		n := int(binary.BigEndian.Uint32(aesBlob[5:9]))
		at := map[string]int{"version": 4, "metadata": 9 + n/2, "lease": 9 + n + 7, "blob": len(aesBlob) - 1}
		for name, i := range at {
			bad := bytes.Clone(aesBlob)
			bad[i] ^= 0x01
			_, err := encrypt(a.call(t), api.KeyRef{SealedKey: bad}, pt, nil)
			if e := isError(err, 400, api.CodeInvalidSealedKey); e != nil {
				t.Errorf("byte %d (%s) flipped: %v", i, name, e)
			}
		}
	})
	t.Run("another sidecar", func(t *testing.T) {
		b := f.startSidecar(t, f.creds.DN, nil)
		_, err := encrypt(b.call(t), api.KeyRef{SealedKey: aesBlob}, pt, nil)
		kmstest.WantError(t, err, 400, api.CodeInvalidSealedKey)
		_, err = decrypt(b.call(t), api.KeyRef{SealedKey: aesBlob}, ct.Ciphertext, []byte("aad"))
		kmstest.WantError(t, err, 400, api.CodeInvalidSealedKey)
	})
	t.Run("after a restart", func(t *testing.T) {
		// A software enclave's local master key dies with the process: the
		// sidecar started anew (new token, new data dir) cannot open the blob.
		if err := f.sc.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		c := f.startSidecar(t, f.creds.DN, nil)
		_, err := encrypt(c.call(t), api.KeyRef{SealedKey: aesBlob}, pt, nil)
		kmstest.WantError(t, err, 400, api.CodeInvalidSealedKey)
		err = c.try(t, "POST", "/v1/crypto/sign", api.SignRequest{KeyRef: api.KeyRef{SealedKey: edBlob}, Message: pt}, nil)
		kmstest.WantError(t, err, 400, api.CodeInvalidSealedKey)
	})
}

// TestRetainedKeys: the KMS keeps the EKBs of a retained key; a grant by key
// id loads every version.
func TestRetainedKeys(t *testing.T) {
	f := newFixture(t, nil)
	a := f.main(t)
	v1 := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true})
	id := v1.KeyID
	pt := []byte("made centrally under v1")
	ct1 := mustEncrypt(t, f.cust.Do, api.KeyRef{KeyID: id}, pt, nil)
	if ct1.KeyVersion != 1 {
		t.Fatalf("central encrypt used version %d, want 1", ct1.KeyVersion)
	}
	var v2 api.DataKey
	f.cust.MustDo(t, "POST", "/v1/datakeys/"+id+"/versions", api.NewVersionRequest{EKB: v1.EKB}, &v2)
	if v2.KeyID != id || v2.Version != 2 {
		t.Fatalf("new version = %s v%d", v2.KeyID, v2.Version)
	}

	g := mustGrant(t, f.cust, api.GrantRequest{InstanceID: a.id, KeyIDs: []string{id}})
	loaded, err := a.load(t, g, nil, []string{id})
	if err != nil || len(loaded) != 1 || loaded[0] != id {
		t.Fatalf("load by key id = %v, %v; want [%s]", loaded, err, id)
	}
	ks := a.keys(t)
	if len(ks) != 2 || ks[0].KeyID != id || ks[0].Version != 1 || ks[1].KeyID != id || ks[1].Version != 2 {
		t.Fatalf("keys = %+v, want %s v1 and v2", ks, id)
	}
	mustDecrypt(t, a.call(t), api.KeyRef{}, ct1.Ciphertext, nil, pt)
	ct2 := mustEncrypt(t, a.call(t), api.KeyRef{KeyID: id}, pt, nil)
	if ct2.KeyVersion != 2 {
		t.Fatalf("sidecar encrypt used version %d, want 2", ct2.KeyVersion)
	}
	mustDecrypt(t, f.cust.Do, api.KeyRef{}, ct2.Ciphertext, nil, pt)

	t.Run("grant for a key that is not retained", func(t *testing.T) {
		plain := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		_, err := grant(f.cust, api.GrantRequest{InstanceID: a.id, KeyIDs: []string{plain.KeyID}})
		kmstest.WantError(t, err, 400, api.CodeInvalidArgument)
	})
}

// TestCentralPath: the KMS serves the operations itself with the key named
// by an EKB or a retained key id; its ciphertexts and the sidecar's are
// interchangeable.
func TestCentralPath(t *testing.T) {
	f := newFixture(t, nil)
	a := f.main(t)
	aes := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
	ed := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyEd25519})
	hm := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyHMACSHA256})
	ret := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true})
	f.grantLoad(t, a, aes)
	central := requester(f.cust.Do)
	pt := []byte("central and local agree")
	aad := []byte("order-7")

	ct := mustEncrypt(t, central, api.KeyRef{EKB: aes.EKB}, pt, aad)
	if ct.KeyID != aes.KeyID || ct.KeyVersion != 1 {
		t.Fatalf("central encrypt = key %s v%d", ct.KeyID, ct.KeyVersion)
	}
	mustDecrypt(t, a.call(t), api.KeyRef{}, ct.Ciphertext, aad, pt)
	local := mustEncrypt(t, a.call(t), api.KeyRef{KeyID: aes.KeyID}, pt, aad)
	mustDecrypt(t, central, api.KeyRef{EKB: aes.EKB}, local.Ciphertext, aad, pt)

	ctR := mustEncrypt(t, central, api.KeyRef{KeyID: ret.KeyID}, pt, nil)
	mustDecrypt(t, central, api.KeyRef{}, ctR.Ciphertext, nil, pt)
	mustDecrypt(t, central, api.KeyRef{KeyID: ret.KeyID}, ctR.Ciphertext, nil, pt)

	var sig api.SignResponse
	f.cust.MustDo(t, "POST", "/v1/crypto/sign", api.SignRequest{KeyRef: api.KeyRef{EKB: ed.EKB}, Message: pt}, &sig)
	var valid api.ValidResponse
	f.cust.MustDo(t, "POST", "/v1/crypto/verify", api.VerifyRequest{KeyRef: api.KeyRef{EKB: ed.EKB}, Message: pt, Signature: sig.Signature}, &valid)
	if !valid.Valid || !ed25519.Verify(ed25519Public(t, ed.PublicKeyPEM), pt, sig.Signature) {
		t.Fatalf("central ed25519 signature: verify = %v", valid.Valid)
	}
	f.cust.MustDo(t, "POST", "/v1/crypto/verify", api.VerifyRequest{KeyRef: api.KeyRef{EKB: ed.EKB}, Message: []byte("other"), Signature: sig.Signature}, &valid)
	if valid.Valid {
		t.Fatal("central verify accepts the signature for another message")
	}
	var mac api.MACResponse
	f.cust.MustDo(t, "POST", "/v1/crypto/mac", api.MACRequest{KeyRef: api.KeyRef{EKB: hm.EKB}, Message: pt}, &mac)
	f.cust.MustDo(t, "POST", "/v1/crypto/mac/verify", api.MACVerifyRequest{KeyRef: api.KeyRef{EKB: hm.EKB}, Message: pt, MAC: mac.MAC}, &valid)
	if len(mac.MAC) != 32 || !valid.Valid {
		t.Fatalf("central mac = %x, verify = %v", mac.MAC, valid.Valid)
	}

	t.Run("custodian not named by the policy", func(t *testing.T) {
		rep, _ := f.env.App(t, "acme", "reporting", api.RoleCustodian)
		_, err := encrypt(rep.Do, api.KeyRef{EKB: aes.EKB}, pt, nil)
		kmstest.WantError(t, err, 403, api.CodePolicyDenied)
		_, err = decrypt(rep.Do, api.KeyRef{EKB: aes.EKB}, ct.Ciphertext, aad)
		kmstest.WantError(t, err, 403, api.CodePolicyDenied)
	})
	t.Run("pipeline", func(t *testing.T) {
		_, err := encrypt(f.pipe.Do, api.KeyRef{EKB: aes.EKB}, pt, nil)
		kmstest.WantError(t, err, 403, api.CodeForbidden)
	})
	t.Run("another tenant", func(t *testing.T) {
		f.env.Tenant(t, "globex")
		gx, _ := f.env.App(t, "globex", "payments-api", api.RoleCustodian)
		_, err := encrypt(gx.Do, api.KeyRef{EKB: aes.EKB}, pt, nil)
		kmstest.WantError(t, err, 403, api.CodeWrongTenant)
	})
}

// TestKeyPolicies: the policy decides which sidecars the KMS releases a key
// to, by any flow, and which actions each may perform.
func TestKeyPolicies(t *testing.T) {
	f := newFixture(t, nil)
	if f.creds.DN != "CN=payments-api,O=acme" {
		t.Fatalf("custodian DN = %q; the policy below names CN=payments-api,O=acme", f.creds.DN)
	}
	pay := f.main(t)
	pol := &api.Policy{Rules: []api.PolicyRule{
		{Principals: []string{"CN=payments-api,O=acme"}, Actions: []api.Action{api.ActionEncrypt, api.ActionDecrypt}},
		{Principals: []string{"CN=reporting-*,O=acme"}, Actions: []api.Action{api.ActionDecrypt}},
	}}
	dk := dataKey(t, f.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Policy: pol})
	f.grantLoad(t, pay, dk)
	pt := []byte("settlement batch 42")
	ct := mustEncrypt(t, pay.call(t), api.KeyRef{KeyID: dk.KeyID}, pt, nil)

	t.Run("reporting decrypts only", func(t *testing.T) {
		repCli, repCreds := f.env.App(t, "acme", "reporting-eu", api.RoleCustodian)
		rep := f.startSidecar(t, repCreds.DN, nil)
		var cert api.WrappingCertificate
		rep.must(t, "GET", "/v1/wrapping-certificate", nil, &cert)
		// payments-api hands the EKB to reporting-eu, which asks the rewrap.
		var wrapped api.WrappedKeys
		repCli.MustDo(t, "POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{dk.EKB}, WrappingCertPEM: cert.CertPEM}, &wrapped)
		var loaded api.Loaded
		rep.must(t, "POST", "/v1/keys/import", &wrapped, &loaded)
		if len(loaded.Loaded) != 1 || loaded.Loaded[0] != dk.KeyID {
			t.Fatalf("import = %v", loaded.Loaded)
		}
		mustDecrypt(t, rep.call(t), api.KeyRef{}, ct.Ciphertext, nil, pt)
		_, err := encrypt(rep.call(t), api.KeyRef{KeyID: dk.KeyID}, pt, nil)
		kmstest.WantError(t, err, 403, api.CodePolicyDenied)
	})

	t.Run("ledger gets nothing", func(t *testing.T) {
		ledCli, ledCreds := f.env.App(t, "acme", "ledger", api.RoleCustodian)
		led := f.startSidecar(t, ledCreds.DN, nil)
		var cert api.WrappingCertificate
		led.must(t, "GET", "/v1/wrapping-certificate", nil, &cert)
		// Rewrap.
		err := ledCli.Do("POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{dk.EKB}, WrappingCertPEM: cert.CertPEM}, nil)
		kmstest.WantError(t, err, 403, api.CodePolicyDenied)
		// Grant + load: the grant binds the EKB, the release is refused.
		g, err := grant(ledCli, api.GrantRequest{InstanceID: led.id, EKBs: [][]byte{dk.EKB}})
		if err == nil {
			_, err = led.load(t, g, [][]byte{dk.EKB}, nil)
		}
		kmstest.WantError(t, err, 403, api.CodePolicyDenied)
		// Central.
		_, err = encrypt(ledCli.Do, api.KeyRef{EKB: dk.EKB}, pt, nil)
		kmstest.WantError(t, err, 403, api.CodePolicyDenied)
		_, err = decrypt(ledCli.Do, api.KeyRef{EKB: dk.EKB}, ct.Ciphertext, nil)
		kmstest.WantError(t, err, 403, api.CodePolicyDenied)
		// Stateless cannot even start: sealing needs a loaded key.
		err = led.try(t, "POST", "/v1/keys/seal", api.SealRequest{KeyIDs: []string{dk.KeyID}}, nil)
		kmstest.WantError(t, err, 404, api.CodeNotFound)
		if ks := led.keys(t); len(ks) != 0 {
			t.Fatalf("ledger's sidecar holds %+v", ks)
		}
		// Nor does a blob sealed by the payments sidecar open in ledger's.
		var sealed api.SealResponse
		pay.must(t, "POST", "/v1/keys/seal", api.SealRequest{KeyIDs: []string{dk.KeyID}}, &sealed)
		_, err = decrypt(led.call(t), api.KeyRef{SealedKey: sealed.Sealed[0].SealedKey}, ct.Ciphertext, nil)
		kmstest.WantError(t, err, 400, api.CodeInvalidSealedKey)
	})

	t.Run("invalid policies", func(t *testing.T) {
		bad := map[string]*api.Policy{
			"unknown action": {Rules: []api.PolicyRule{{Principals: []string{"CN=payments-api,O=acme"}, Actions: []api.Action{"launch"}}}},
			"bad DN":         {Rules: []api.PolicyRule{{Principals: []string{"payments-api"}, Actions: []api.Action{api.ActionEncrypt}}}},
			"no rules":       {Rules: []api.PolicyRule{}},
			"no principals":  {Rules: []api.PolicyRule{{Actions: []api.Action{api.ActionEncrypt}}}},
		}
		for name, p := range bad {
			err := f.cust.Do("POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Policy: p}, nil)
			if e := isError(err, 400, api.CodeInvalidArgument); e != nil {
				t.Errorf("policy with %s: %v", name, e)
			}
		}
	})
}

// offline is a fixture whose sidecar runs on a settable clock, polls the
// revocation feed every interval and leases keys for an hour.
type offline struct {
	*fixture
	side  *side
	clock *kmstest.Clock
	reg   *prometheus.Registry
}

func newOffline(t *testing.T, interval time.Duration) *offline {
	t.Helper()
	o := &offline{clock: kmstest.NewClock(), reg: prometheus.NewRegistry()}
	o.fixture = newFixture(t, func(c *sidecar.Config) {
		c.Now = o.clock.Now
		c.HealthInterval = interval
		c.LeaseTTL = time.Hour
		c.Reg = o.reg
	})
	o.side = o.main(t)
	return o
}

// reachable reads the sidecar's kms_reachable gauge, which only the
// revocation poll sets as long as nobody asks for /v1/status.
func (o *offline) reachable(t testing.TB) bool {
	t.Helper()
	mfs, err := o.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "dcaas_sidecar_kms_reachable" {
			return mf.GetMetric()[0].GetGauge().GetValue() == 1
		}
	}
	t.Fatal("no dcaas_sidecar_kms_reachable gauge")
	return false
}

// stopKMS stops the KMS and waits for a revocation poll to fail, so no
// poll that started earlier can still renew a lease.
func (o *offline) stopKMS(t testing.TB) {
	t.Helper()
	o.env.Stop()
	eventually(t, "seen the KMS down", func() error {
		if o.reachable(t) {
			return fmt.Errorf("kms_reachable is 1")
		}
		return nil
	})
}

func (o *offline) lease(t testing.TB, keyID string) time.Time {
	t.Helper()
	for _, k := range o.side.keys(t) {
		if k.KeyID == keyID {
			if k.LeaseExpiresAt == nil {
				t.Fatalf("key %s has no lease", keyID)
			}
			return *k.LeaseExpiresAt
		}
	}
	t.Fatalf("key %s is not loaded", keyID)
	return time.Time{}
}

// TestLeasesRevocationOffline is docs/design.md, "After loading".
func TestLeasesRevocationOffline(t *testing.T) {
	t.Run("lease", func(t *testing.T) {
		o := newOffline(t, 20*time.Millisecond)
		dk := dataKey(t, o.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		o.grantLoad(t, o.side, dk)
		t0 := o.clock.Now()
		if l := o.lease(t, dk.KeyID); !l.Equal(t0.Add(time.Hour)) {
			t.Fatalf("lease = %v, want load time + 1h = %v", l, t0.Add(time.Hour))
		}
		c := o.side.call(t)
		pt := []byte("offline")
		ct := mustEncrypt(t, c, api.KeyRef{KeyID: dk.KeyID}, pt, nil)

		o.stopKMS(t)
		o.clock.Advance(30 * time.Minute)
		roundTrip(t, c, dk.KeyID)
		mustDecrypt(t, c, api.KeyRef{}, ct.Ciphertext, nil, pt)
		if l := o.lease(t, dk.KeyID); !l.Equal(t0.Add(time.Hour)) {
			t.Fatalf("lease with the KMS down = %v, want %v (not renewed)", l, t0.Add(time.Hour))
		}

		o.clock.Advance(31 * time.Minute)
		_, err := encrypt(c, api.KeyRef{KeyID: dk.KeyID}, pt, nil)
		kmstest.WantError(t, err, 410, api.CodeExpired)
		_, err = decrypt(c, api.KeyRef{}, ct.Ciphertext, nil)
		kmstest.WantError(t, err, 410, api.CodeExpired)

		o.env.Restart()
		eventually(t, "serving again after the KMS came back", func() error {
			_, err := encrypt(c, api.KeyRef{KeyID: dk.KeyID}, pt, nil)
			return err
		})
		mustDecrypt(t, c, api.KeyRef{}, ct.Ciphertext, nil, pt)
		if l, want := o.lease(t, dk.KeyID), o.clock.Now().Add(time.Hour); !l.Equal(want) {
			t.Fatalf("renewed lease = %v, want sidecar clock + 1h = %v", l, want)
		}
	})

	t.Run("disabled key", func(t *testing.T) {
		o := newOffline(t, 20*time.Millisecond)
		gone := dataKey(t, o.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		kept := dataKey(t, o.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		o.grantLoad(t, o.side, gone, kept)
		c := o.side.call(t)

		// While the KMS is down nothing changes.
		o.stopKMS(t)
		roundTrip(t, c, gone.KeyID)
		if ks := o.side.keys(t); len(ks) != 2 {
			t.Fatalf("keys with the KMS down = %+v, want both", ks)
		}
		o.env.Restart()
		o.cust.MustDo(t, "DELETE", "/v1/datakeys/"+gone.KeyID, nil, nil)
		eventually(t, "evicted the disabled key", func() error {
			for _, k := range o.side.keys(t) {
				if k.KeyID == gone.KeyID {
					return fmt.Errorf("GET /v1/keys still lists %s (kms_reachable %v)", gone.KeyID, o.reachable(t))
				}
			}
			return nil
		})
		// The sidecar remembers why the key left: revoked, not "not loaded".
		_, err := encrypt(c, api.KeyRef{KeyID: gone.KeyID}, []byte("x"), nil)
		kmstest.WantError(t, err, 403, api.CodeRevoked)
		roundTrip(t, c, kept.KeyID)
	})

	t.Run("revoked instance", func(t *testing.T) {
		// A poll every 300 ms: the revocation below lands between two polls,
		// so the sidecar must learn of it from the next poll's answer (a
		// poll already past authentication when the revocation commits
		// would see it in the feed instead).
		o := newOffline(t, 300*time.Millisecond)
		aes := dataKey(t, o.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		ed := dataKey(t, o.cust, api.CreateDataKeyRequest{Type: api.KeyEd25519})
		hm := dataKey(t, o.cust, api.CreateDataKeyRequest{Type: api.KeyHMACSHA256})
		o.grantLoad(t, o.side, aes, ed, hm)
		c := o.side.call(t)
		ct := mustEncrypt(t, c, api.KeyRef{KeyID: aes.KeyID}, []byte("x"), nil)
		var sealed api.SealResponse
		o.side.must(t, "POST", "/v1/keys/seal", api.SealRequest{KeyIDs: []string{hm.KeyID}}, &sealed)

		// Wait for a poll to finish (it renews the lease from the moved
		// clock), then revoke at once.
		o.clock.Advance(time.Minute)
		renewed := o.clock.Now().Add(time.Hour)
		eventually(t, "renewed by a poll", func() error {
			if l := o.lease(t, aes.KeyID); !l.Equal(renewed) {
				return fmt.Errorf("lease = %v, want %v", l, renewed)
			}
			return nil
		})
		o.cust.MustDo(t, "DELETE", "/v1/instances/"+o.side.id, nil, nil)
		eventually(t, "refusing as revoked", func() error {
			_, err := encrypt(c, api.KeyRef{KeyID: aes.KeyID}, []byte("x"), nil)
			return isError(err, 403, api.CodeRevoked)
		})

		// No key is left: GET /v1/keys lists none (or, like every call but
		// status, is refused), status counts none.
		var listed api.LoadedKeys
		if err := o.side.try(t, "GET", "/v1/keys", nil, &listed); err != nil {
			kmstest.WantError(t, err, 403, api.CodeRevoked)
		} else if len(listed.Keys) != 0 {
			t.Fatalf("GET /v1/keys of a revoked sidecar = %+v, want none", listed.Keys)
		}
		var st api.Status
		o.side.must(t, "GET", "/v1/status", nil, &st)
		if st.KeysLoaded != 0 || len(o.side.sc.Keys()) != 0 {
			t.Fatalf("a revoked sidecar holds keys: status %+v, Keys() %+v", st, o.side.sc.Keys())
		}

		refused := map[string]error{}
		_, refused["decrypt"] = decrypt(c, api.KeyRef{}, ct.Ciphertext, nil)
		refused["sign"] = c("POST", "/v1/crypto/sign", api.SignRequest{KeyRef: api.KeyRef{KeyID: ed.KeyID}, Message: []byte("m")}, nil)
		refused["mac"] = c("POST", "/v1/crypto/mac", api.MACRequest{KeyRef: api.KeyRef{KeyID: hm.KeyID}, Message: []byte("m")}, nil)
		refused["mac with sealed_key"] = c("POST", "/v1/crypto/mac", api.MACRequest{KeyRef: api.KeyRef{SealedKey: sealed.Sealed[0].SealedKey}, Message: []byte("m")}, nil)
		refused["translate"] = c("POST", "/v1/crypto/translate", api.TranslateRequest{Ciphertext: ct.Ciphertext, ToKeyID: aes.KeyID}, nil)
		_, refused["load"] = o.side.load(t, "dcgr_from-before-the-revocation", [][]byte{aes.EKB}, nil)
		_, refused["derive"] = o.side.derive(t, "dcgr_from-before-the-revocation", api.Seed{Seed: randomBytes(t, 32), Type: api.KeyAES256GCM})
		for op, err := range refused {
			if e := isError(err, 403, api.CodeRevoked); e != nil {
				t.Errorf("%s on a revoked sidecar: %v", op, e)
			}
		}
		// A batch is refused whole, or item by item.
		var batch api.BatchResponse
		err := c("POST", "/v1/crypto/batch", api.BatchRequest{Ops: []api.BatchItem{
			{Op: api.OpEncrypt, KeyID: aes.KeyID, Plaintext: []byte("x")},
			{Op: api.OpDecrypt, Ciphertext: ct.Ciphertext},
		}}, &batch)
		if err != nil {
			kmstest.WantError(t, err, 403, api.CodeRevoked)
		} else {
			for i, r := range batch.Results {
				if r.Error == nil || r.Error.Code != api.CodeRevoked {
					t.Errorf("batch result %d on a revoked sidecar = %+v, want error revoked", i, r)
				}
			}
		}
		t.Run("keyless operations", func(t *testing.T) {
			// selfRevoke's contract: "every operation answers 403 revoked".
			err := c("POST", "/v1/crypto/hash", api.HashRequest{Algorithm: "sha-256", Message: []byte("m")}, nil)
			if e := isError(err, 403, api.CodeRevoked); e != nil {
				t.Errorf("hash on a revoked sidecar: %v", e)
			}
			err = c("POST", "/v1/crypto/random", api.RandomRequest{Bytes: 16}, nil)
			if e := isError(err, 403, api.CodeRevoked); e != nil {
				t.Errorf("random on a revoked sidecar: %v", e)
			}
		})
	})
}
