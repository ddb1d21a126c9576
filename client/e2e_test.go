package client_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/sidecar"
)

// world is a real KMS (kmstest) with tenant acme and custodian
// payments-api, a real sidecar enrolled for it on a Unix socket, and SDK
// clients of both.
type world struct {
	env    *kmstest.Env
	admin  *client.KMS
	cust   *client.KMS
	creds  *api.AppCredentials
	sc     *sidecar.Sidecar
	local  *client.Sidecar
	socket string
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := t.Context()
	env := kmstest.Start(t, nil)
	w := &world{env: env}
	var err error
	// A dead replica first: every call fails over to the live one.
	adminCert, adminKey := env.AdminPEM(t)
	w.admin, err = client.NewKMS([]string{deadURL(t), env.URL}, env.CAPEM, adminCert, adminKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.admin.Close() })
	if ten, err := w.admin.CreateTenant(ctx, "acme"); err != nil || ten.MasterKeyVersion != 1 {
		t.Fatalf("CreateTenant = %+v, %v", ten, err)
	}
	if w.creds, err = w.admin.CreateApp(ctx, "acme", api.CreateAppRequest{Name: "payments-api", Role: api.RoleCustodian}); err != nil {
		t.Fatalf("CreateApp = %v", err)
	}
	w.cust, err = client.NewKMS([]string{env.URL}, []byte(w.creds.CAPEM), []byte(w.creds.CertPEM), []byte(w.creds.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.cust.Close() })
	w.sc, w.socket, w.local = startSidecar(t, w.cust, env)
	return w
}

// startSidecar enrolls a sidecar for cust's custodian with a token cust
// mints for itself, serves it on a Unix socket and returns an SDK client.
func startSidecar(t *testing.T, cust *client.KMS, env *kmstest.Env) (*sidecar.Sidecar, string, *client.Sidecar) {
	t.Helper()
	tok, err := cust.CreateEnrollmentToken(t.Context(), api.CreateTokenRequest{})
	if err != nil {
		t.Fatalf("CreateEnrollmentToken = %v", err)
	}
	sc, socket := e2e.ServeSidecar(t, sidecar.Config{
		KMSURL: env.URL, CAPEM: env.CAPEM, DataDir: t.TempDir(), EnrollToken: sidecar.Secret([]byte(tok.Token)), Logger: quiet(),
	}, "")
	local, err := client.NewSidecarUnix(socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { local.Close() })
	return sc, socket, local
}

func deadURL(t *testing.T) string {
	t.Helper()
	return "https://127.0.0.1:" + strconv.Itoa(e2e.FreePort(t))
}

func (w *world) dataKeys(t *testing.T, n int, req api.CreateDataKeyRequest) []*api.DataKey {
	t.Helper()
	out := make([]*api.DataKey, n)
	for i := range out {
		dk, err := w.cust.CreateDataKey(t.Context(), req)
		if err != nil {
			t.Fatalf("CreateDataKey = %v", err)
		}
		out[i] = dk
	}
	return out
}

func roundTrip(t *testing.T, sc *client.Sidecar, key api.KeyRef) {
	t.Helper()
	ctx := t.Context()
	pt := []byte("payment 42")
	ct, err := sc.Encrypt(ctx, key, pt, []byte("aad"))
	if err != nil {
		t.Fatalf("Encrypt(%+v) = %v", key, err)
	}
	got, err := sc.Decrypt(ctx, api.KeyRef{SealedKey: key.SealedKey}, ct.Ciphertext, []byte("aad"))
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Decrypt = %q, %v; want %q", got, err, pt)
	}
	_, err = sc.Decrypt(ctx, api.KeyRef{SealedKey: key.SealedKey}, ct.Ciphertext, []byte("other aad"))
	if !errors.Is(err, client.ErrDecryptFailed) {
		t.Fatalf("Decrypt(wrong AAD) = %v, want ErrDecryptFailed", err)
	}
}

func TestSDKEndToEnd(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()

	st, err := w.local.Status(ctx)
	if err != nil || st.CustodianDN != w.creds.DN || !st.KMSReachable {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	if h, err := w.cust.Health(ctx); err != nil || h.Status != "ok" {
		t.Fatalf("KMS Health = %+v, %v", h, err)
	}
	if h, err := w.local.Health(ctx); err != nil || h.Status != "ok" {
		t.Fatalf("sidecar Health = %+v, %v", h, err)
	}

	t.Run("rewrap", func(t *testing.T) {
		dks := w.dataKeys(t, 5, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		store := client.EKBStore{Dir: t.TempDir()}
		var ekbs [][]byte
		for _, dk := range dks {
			if err := store.Put(dk.KeyID, dk.Version, dk.EKB); err != nil {
				t.Fatal(err)
			}
			_, ekb, err := store.Latest(dk.KeyID)
			if err != nil {
				t.Fatal(err)
			}
			ekbs = append(ekbs, ekb)
		}
		var progress [][2]int
		ids, err := client.LoadByRewrap(ctx, w.cust, w.local, ekbs, client.WithBatchSize(2),
			client.WithProgress(func(done, total int) { progress = append(progress, [2]int{done, total}) }))
		if err != nil || len(ids) != 5 || ids[0] != dks[0].KeyID || ids[4] != dks[4].KeyID {
			t.Fatalf("LoadByRewrap = %v, %v", ids, err)
		}
		if want := [][2]int{{2, 5}, {4, 5}, {5, 5}}; !slices.Equal(progress, want) {
			t.Fatalf("progress = %v, want %v", progress, want)
		}
		roundTrip(t, w.local, api.KeyRef{KeyID: ids[0]})

		// A new version: both load, the new one encrypts, the old ciphertext opens.
		old, err := w.local.Encrypt(ctx, api.KeyRef{KeyID: ids[1]}, []byte("v1"), nil)
		if err != nil {
			t.Fatal(err)
		}
		v2, err := w.cust.NewKeyVersion(ctx, dks[1].KeyID, dks[1].EKB)
		if err != nil || v2.Version != 2 {
			t.Fatalf("NewKeyVersion = %+v, %v", v2, err)
		}
		if _, err := client.LoadByRewrap(ctx, w.cust, w.local, [][]byte{v2.EKB}); err != nil {
			t.Fatal(err)
		}
		ct, err := w.local.Encrypt(ctx, api.KeyRef{KeyID: ids[1]}, []byte("v2"), nil)
		if err != nil || ct.KeyVersion != 2 {
			t.Fatalf("Encrypt after the new version = %+v, %v", ct, err)
		}
		if pt, err := w.local.Decrypt(ctx, api.KeyRef{}, old.Ciphertext, nil); err != nil || string(pt) != "v1" {
			t.Fatalf("Decrypt(v1 ciphertext) = %q, %v", pt, err)
		}

		// The central path agrees with the sidecar.
		central, err := w.cust.Encrypt(ctx, api.KeyRef{EKB: dks[0].EKB}, []byte("central"), nil)
		if err != nil {
			t.Fatalf("central Encrypt = %v", err)
		}
		if pt, err := w.local.Decrypt(ctx, api.KeyRef{}, central.Ciphertext, nil); err != nil || string(pt) != "central" {
			t.Fatalf("sidecar Decrypt(central ciphertext) = %q, %v", pt, err)
		}
		if pt, err := w.cust.Decrypt(ctx, api.KeyRef{EKB: dks[0].EKB}, central.Ciphertext, nil); err != nil || string(pt) != "central" {
			t.Fatalf("central Decrypt = %q, %v", pt, err)
		}
	})

	t.Run("grant", func(t *testing.T) {
		plain := w.dataKeys(t, 3, api.CreateDataKeyRequest{Type: api.KeyHMACSHA256})
		retained := w.dataKeys(t, 1, api.CreateDataKeyRequest{Type: api.KeyEd25519, Retain: true})[0]
		ekbs := [][]byte{plain[0].EKB, plain[1].EKB, plain[2].EKB}
		ids, err := client.LoadByGrant(ctx, w.cust, w.local, ekbs, []string{retained.KeyID}, client.WithBatchSize(2))
		want := []string{plain[0].KeyID, plain[1].KeyID, plain[2].KeyID, retained.KeyID}
		if err != nil || !slices.Equal(ids, want) {
			t.Fatalf("LoadByGrant = %v, %v; want %v", ids, err, want)
		}
		msg := []byte("to authenticate")
		tag, err := w.local.MAC(ctx, api.KeyRef{KeyID: plain[0].KeyID}, msg)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := w.local.VerifyMAC(ctx, api.KeyRef{KeyID: plain[0].KeyID}, msg, tag.MAC, 0); err != nil || !ok {
			t.Fatalf("sidecar VerifyMAC = %v, %v", ok, err)
		}
		if ok, err := w.cust.VerifyMAC(ctx, api.KeyRef{EKB: plain[0].EKB}, msg, tag.MAC, 0); err != nil || !ok {
			t.Fatalf("central VerifyMAC = %v, %v", ok, err)
		}
		centralTag, err := w.cust.MAC(ctx, api.KeyRef{EKB: plain[0].EKB}, msg)
		if err != nil || !bytes.Equal(centralTag.MAC, tag.MAC) {
			t.Fatalf("central MAC = %x, %v; want %x", centralTag.MAC, err, tag.MAC)
		}
		sig, err := w.local.Sign(ctx, api.KeyRef{KeyID: retained.KeyID}, msg)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := w.cust.Verify(ctx, api.KeyRef{KeyID: retained.KeyID}, msg, sig.Signature, 0); err != nil || !ok {
			t.Fatalf("central Verify(retained) = %v, %v", ok, err)
		}
		centralSig, err := w.cust.Sign(ctx, api.KeyRef{KeyID: retained.KeyID}, msg)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := w.local.Verify(ctx, api.KeyRef{KeyID: retained.KeyID}, msg, centralSig.Signature, 0); err != nil || !ok {
			t.Fatalf("sidecar Verify(central signature) = %v, %v", ok, err)
		}

		// A grant works once.
		inst, _ := w.local.Status(ctx)
		g, err := w.cust.CreateGrant(ctx, api.GrantRequest{InstanceID: inst.InstanceID, EKBs: ekbs[:1]})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.local.Load(ctx, g.Grant, ekbs[:1], nil); err != nil {
			t.Fatalf("Load = %v", err)
		}
		_, err = w.local.Load(ctx, g.Grant, ekbs[:1], nil)
		var e *client.Error
		if !errors.Is(err, client.ErrAlreadyUsed) || !errors.As(err, &e) || e.Status != 409 {
			t.Fatalf("Load(used grant) = %v, want 409 ErrAlreadyUsed", err)
		}
	})

	t.Run("seeds", func(t *testing.T) {
		seeds := make([]api.Seed, 3)
		for i := range seeds {
			seeds[i] = api.Seed{Seed: make([]byte, 32), Type: api.KeyAES256GCM}
			rand.Read(seeds[i].Seed)
		}
		seeds[2].Type = api.KeyHMACSHA256
		ids, err := client.LoadBySeeds(ctx, w.cust, w.local, seeds, client.WithBatchSize(2))
		if err != nil || len(ids) != 3 || !strings.HasPrefix(ids[0], "drv_") || ids[0] == ids[1] {
			t.Fatalf("LoadBySeeds = %v, %v", ids, err)
		}
		roundTrip(t, w.local, api.KeyRef{KeyID: ids[0]})
		// The same seed, on a second sidecar, is the same key.
		_, _, other := startSidecar(t, w.cust, w.env)
		again, err := client.LoadBySeeds(ctx, w.cust, other, seeds[:1])
		if err != nil || !slices.Equal(again, ids[:1]) {
			t.Fatalf("LoadBySeeds on another sidecar = %v, %v; want %v", again, err, ids[:1])
		}
		ct, err := w.local.Encrypt(ctx, api.KeyRef{KeyID: ids[0]}, []byte("derived"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := other.Decrypt(ctx, api.KeyRef{}, ct.Ciphertext, nil); err != nil || string(pt) != "derived" {
			t.Fatalf("other sidecar Decrypt = %q, %v", pt, err)
		}
	})

	t.Run("stateless", func(t *testing.T) {
		dks := w.dataKeys(t, 3, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		var ekbs [][]byte
		var keyIDs []string
		for _, dk := range dks {
			ekbs, keyIDs = append(ekbs, dk.EKB), append(keyIDs, dk.KeyID)
		}
		if _, err := client.LoadByRewrap(ctx, w.cust, w.local, ekbs); err != nil {
			t.Fatal(err)
		}
		sealed, err := client.Stateless(ctx, w.local, keyIDs, client.WithBatchSize(2))
		if err != nil || len(sealed) != 3 || sealed[2].KeyID != keyIDs[2] {
			t.Fatalf("Stateless = %+v, %v", sealed, err)
		}
		keys, err := w.local.Keys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if slices.Contains(keyIDs, k.KeyID) {
				t.Fatalf("sealed key %s is still loaded", k.KeyID)
			}
		}
		_, err = w.local.Encrypt(ctx, api.KeyRef{KeyID: keyIDs[0]}, []byte("x"), nil)
		if !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("Encrypt(sealed key by id) = %v, want ErrNotFound", err)
		}
		roundTrip(t, w.local, api.KeyRef{SealedKey: sealed[0].SealedKey})
	})

	t.Run("other operations", func(t *testing.T) {
		dks := w.dataKeys(t, 2, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		ids, err := client.LoadByRewrap(ctx, w.cust, w.local, [][]byte{dks[0].EKB, dks[1].EKB})
		if err != nil {
			t.Fatal(err)
		}
		d, err := w.local.Hash(ctx, "sha-256", []byte("abc"))
		if err != nil || len(d) != 32 {
			t.Fatalf("Hash = %x, %v", d, err)
		}
		r, err := w.local.Random(ctx, 48)
		if err != nil || len(r) != 48 {
			t.Fatalf("Random = %d bytes, %v", len(r), err)
		}
		ct, _ := w.local.Encrypt(ctx, api.KeyRef{KeyID: ids[0]}, []byte("move me"), []byte("a"))
		tr, err := w.local.Translate(ctx, ct.Ciphertext, []byte("a"), ids[1], []byte("b"))
		if err != nil || tr.KeyID != ids[1] {
			t.Fatalf("Translate = %+v, %v", tr, err)
		}
		if pt, err := w.local.Decrypt(ctx, api.KeyRef{}, tr.Ciphertext, []byte("b")); err != nil || string(pt) != "move me" {
			t.Fatalf("Decrypt(translated) = %q, %v", pt, err)
		}
		results, err := w.local.Batch(ctx, []api.BatchItem{
			{Op: api.OpEncrypt, KeyID: ids[0], Plaintext: []byte("one")},
			{Op: api.OpEncrypt, KeyID: "key_missing", Plaintext: []byte("two")},
		})
		if err != nil || len(results) != 2 || client.BatchError(results[0]) != nil || !errors.Is(client.BatchError(results[1]), client.ErrNotFound) {
			t.Fatalf("Batch = %+v, %v", results, err)
		}
		central, err := w.cust.Batch(ctx, []api.BatchItem{{Op: api.OpDecrypt, EKB: dks[0].EKB, Ciphertext: results[0].Ciphertext}})
		if err != nil || len(central) != 1 || string(central[0].Plaintext) != "one" {
			t.Fatalf("central Batch = %+v, %v", central, err)
		}
		if err := w.local.Evict(ctx, ids[1]); err != nil {
			t.Fatalf("Evict = %v", err)
		}
		if err := w.local.Evict(ctx, ids[1]); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("Evict(again) = %v, want ErrNotFound", err)
		}
	})

	t.Run("mutual TLS sidecar", func(t *testing.T) {
		addr := e2e.ServeMutualTLS(t, w.sc)
		remote, err := client.NewSidecarTLS("https://"+addr, w.env.CAPEM, []byte(w.creds.CertPEM), []byte(w.creds.KeyPEM), w.sc.ServerName())
		if err != nil {
			t.Fatal(err)
		}
		defer remote.Close()
		st, err := remote.Status(ctx)
		if err != nil || st.InstanceID != w.sc.InstanceID() {
			t.Fatalf("Status over mTLS = %+v, %v", st, err)
		}
	})

	t.Run("admin", func(t *testing.T) {
		if v, err := w.admin.RotateMasterKey(ctx, "acme"); err != nil || v != 2 {
			t.Fatalf("RotateMasterKey = %d, %v; want 2", v, err)
		}
		if _, err := w.admin.CreateTenant(ctx, "acme"); !errors.Is(err, client.ErrConflict) {
			t.Fatalf("CreateTenant(again) = %v, want ErrConflict", err)
		}
		if _, err := w.cust.CreateTenant(ctx, "globex"); !errors.Is(err, client.ErrForbidden) {
			t.Fatalf("CreateTenant as a custodian = %v, want ErrForbidden", err)
		}
		if ch, err := w.cust.Challenge(ctx); err != nil || len(ch.Nonce) == 0 {
			t.Fatalf("Challenge = %+v, %v", ch, err)
		}
		dk := w.dataKeys(t, 1, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})[0]
		if err := w.cust.DisableKey(ctx, dk.KeyID); err != nil {
			t.Fatalf("DisableKey = %v", err)
		}
		if _, err := client.LoadByRewrap(ctx, w.cust, w.local, [][]byte{dk.EKB}); err == nil {
			t.Fatal("a disabled key was released")
		}
		var seen int
		for after := int64(0); ; {
			page, err := w.admin.Audit(ctx, after)
			if err != nil {
				t.Fatalf("Audit = %v", err)
			}
			// Reading is audited too: a page of nothing but reads is the end.
			if !slices.ContainsFunc(page.Records, func(r api.AuditRecord) bool { return r.Action != "audit.read" }) {
				break
			}
			seen += len(page.Records)
			after = page.Next
		}
		if seen < 10 {
			t.Fatalf("the audit log holds %d records, want the calls of this test", seen)
		}
		list, err := w.cust.ListInstances(ctx)
		if err != nil || len(list) < 2 {
			t.Fatalf("ListInstances = %+v, %v", list, err)
		}
		if err := w.cust.RevokeInstance(ctx, w.sc.InstanceID()); err != nil {
			t.Fatalf("RevokeInstance = %v", err)
		}
		if _, err := w.cust.CreateGrant(ctx, api.GrantRequest{InstanceID: w.sc.InstanceID(), KeyIDs: []string{"key_x"}}); !errors.Is(err, client.ErrRevoked) {
			t.Fatalf("CreateGrant for a revoked instance = %v, want ErrRevoked", err)
		}
	})
}
