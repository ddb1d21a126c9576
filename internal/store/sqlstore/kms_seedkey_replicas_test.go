package sqlstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/seal/file"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store/pgtest"
)

// TestKMSReplicasCustodianSeedKey: a custodian registered before SeedKDF
// v2 (its seed key setting removed behind the KMS's back) gets one seed
// key on its first v2 derivations, even when they race on two KMS
// replicas sharing one PostgreSQL database: every derivation gives the
// same key, one key is stored, and its creation is audited once. The
// derived bytes are those SeedKDF v2 gives under the stored custodian
// seed key, and v1's are those of the tenant HMAC key (recomputed here
// from the sealed material with the data dir's root key).
func TestKMSReplicasCustodianSeedKey(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := replicaPairOn(t, dsn, time.Minute)
	a.Tenant(t, "acme")
	a.App(t, "acme", "payments-api", api.RoleCustodian) // has a seed key from registration
	_, creds := a.App(t, "acme", "ledger", api.RoleCustodian)
	pipe, _ := a.App(t, "acme", "deployer", api.RolePipeline)
	setting := "custodian-seed-key:acme:" + creds.DN
	if n, err := raw(t, dsn).Exec(t.Context(), `DELETE FROM settings WHERE name = $1`, setting); err != nil || n.RowsAffected() != 1 {
		t.Fatalf("deleting the seed key made at registration: %v, %v rows", err, n.RowsAffected())
	}

	envs := []*kmstest.Env{a, b}
	sides := make([]*kmstest.FakeSidecar, 2)
	custs := make([]*kmstest.Client, 2)
	for i, e := range envs {
		var tok api.EnrollmentToken
		pipe.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: creds.DN}, &tok)
		sides[i] = kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
		sides[i].Enroll(t, e.Client(nil, nil), tok.Token)
		custs[i] = e.Client([]byte(creds.CertPEM), []byte(creds.KeyPEM))
	}
	// sideOn[i][j]: sidecar i's client of replica j.
	sideOn := [2][2]*kmstest.Client{}
	for i := range sides {
		for j, e := range envs {
			sideOn[i][j] = sides[i].Client(t, e)
		}
	}
	seed := kcrypto.Random(32)
	derive := func(i int, kdf api.SeedKDF) (string, []byte, error) {
		g, err := custs[i%2].Grant(api.GrantRequest{InstanceID: sides[i%2].Enrollment.InstanceID, Seeds: [][]byte{seed}})
		if err != nil {
			return "", nil, err
		}
		eph, err := kcrypto.GenerateKEMKey(kcrypto.DefaultKEM())
		if err != nil {
			return "", nil, err
		}
		var out api.WrappedKeys
		err = sideOn[i%2][(i/2)%2].Do("POST", "/v1/keys/derive", api.DeriveRequest{
			Grant: g, Seeds: []api.Seed{{Seed: seed, Type: api.KeyAES256GCM, KDF: kdf}},
			Recipient: api.PublicKey{KEM: kcrypto.DefaultKEM(), PublicKey: eph.PublicKey().Bytes()},
		}, &out)
		if err != nil {
			return "", nil, err
		}
		b, keys, err := kcrypto.OpenBatch(eph, sides[i%2].Enrollment.InstanceID, out.Batch)
		if err != nil || len(keys) != 1 || len(b.Keys) != 1 {
			return "", nil, fmt.Errorf("OpenBatch = %d keys, %v", len(keys), err)
		}
		defer keys[0].Wipe()
		return out.Keys[0].KeyID, bytes.Clone(keys[0].Expose()), nil
	}

	const n = 8
	ids, keys, errs := make([]string, n), make([][]byte, n), make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			ids[i], keys[i], errs[i] = derive(i, "") // the default, v2
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("derivation %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] || !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("racing first derivations gave different keys: %s and %s", ids[0], ids[i])
		}
	}

	st := openPostgres(t, dsn)
	t.Cleanup(func() { st.Close() })
	recs, err := st.AuditAfter(t.Context(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	created := 0
	for _, r := range recs {
		if r.Action == "custodian.seed_key_created" {
			created++
			if r.KeyID != "seed-key:"+creds.DN || r.Tenant != "acme" {
				t.Errorf("seed key creation recorded for %q of %q", r.KeyID, r.Tenant)
			}
		}
	}
	if created != 1 {
		t.Errorf("%d audit records of a seed key creation, want 1", created)
	}

	// Recompute both versions from the sealed material.
	sealer, err := file.Open(a.DataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sealer.Close() })
	rawRec, err := st.GetSetting(t.Context(), setting)
	if err != nil {
		t.Fatalf("GetSetting(%s) = %v", setting, err)
	}
	var rec struct {
		SealedKey []byte `json:"sealed_key"`
	}
	if err := json.Unmarshal(rawRec, &rec); err != nil {
		t.Fatal(err)
	}
	csk := openSealed(t, sealer, rec.SealedKey, "dcaas/v1 custodian-seed-key\x00acme\x00"+creds.DN)
	want, wantID, err := kcrypto.DeriveSeedKeyV2(csk, seed, api.KeyAES256GCM, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Wipe()
	if !bytes.Equal(keys[0], want.Expose()) || ids[0] != wantID {
		t.Errorf("the KMS derived %s, SeedKDF v2 under the stored seed key gives %s (or other bytes)", ids[0], wantID)
	}

	tn, err := st.GetTenant(t.Context(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	hk := openSealed(t, sealer, tn.SealedHMACKey, "dcaas/v1 tenant-hmac\x00acme")
	wantV1, err := kcrypto.DeriveSeedKey(kcrypto.SeedKDFv1, hk, seed)
	if err != nil {
		t.Fatal(err)
	}
	defer wantV1.Wipe()
	id1, key1, err := derive(1, api.SeedKDFv1)
	if err != nil {
		t.Fatalf("v1 derivation: %v", err)
	}
	if !bytes.Equal(key1, wantV1.Expose()) || id1 != kcrypto.SeedKeyID(hk, api.KeyAES256GCM, seed) {
		t.Errorf("v1 derived %s, not SeedKDF v1's key under the tenant HMAC key", id1)
	}

	// A database writer who gives ledger payments-api's sealed seed key
	// gets no derivation: the seal's associated data names the custodian.
	other, err := st.GetSetting(t.Context(), "custodian-seed-key:acme:CN=payments-api,O=acme")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw(t, dsn).Exec(t.Context(), `UPDATE settings SET value = $1 WHERE name = $2`, other, setting); err != nil {
		t.Fatal(err)
	}
	_, _, err = derive(0, api.SeedKDFv2)
	kmstest.WantError(t, err, http.StatusServiceUnavailable, api.CodeUnavailable)
}

func openSealed(t *testing.T, s *file.Sealer, sealed []byte, aad string) *secret.Bytes {
	t.Helper()
	k, err := s.Open(context.Background(), sealed, []byte(aad))
	if err != nil {
		t.Fatalf("opening sealed material (%q): %v", aad, err)
	}
	t.Cleanup(k.Wipe)
	return k
}
