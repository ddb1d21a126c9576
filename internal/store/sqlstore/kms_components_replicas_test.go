package sqlstore_test

import (
	"encoding/hex"
	"sync"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store/pgtest"
)

// TestKMSReplicasComponentsAndKCVs runs two KMS replicas on one PostgreSQL
// database: a key entered in components goes through both (started on A,
// one component on each, the last on B), and a key version stored without
// a KCV, read on both replicas at once, gets the same KCV from each and
// stores it once.
func TestKMSReplicasComponentsAndKCVs(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := replicaPairOn(t, dsn, 0)

	a.Tenant(t, "acme")
	custA, creds := a.App(t, "acme", "payments", api.RoleCustodian)
	custB := b.Client([]byte(creds.CertPEM), []byte(creds.KeyPEM))
	alice, _ := a.NewAdmin(t, "alice")
	_, bobCreds := a.NewAdmin(t, "bob")
	bob := b.Client([]byte(bobCreds.CertPEM), []byte(bobCreds.KeyPEM))

	parts := [][]byte{kcrypto.Random(32), kcrypto.Random(32)}
	key := make([]byte, 32)
	var kcvs []string
	for _, p := range parts {
		kcv, err := kcrypto.KCVCMAC(secret.Copy(p))
		if err != nil {
			t.Fatal(err)
		}
		kcvs = append(kcvs, kcv)
		for i := range p {
			key[i] ^= p[i]
		}
	}
	want, err := kcrypto.KCVCMAC(secret.Copy(key))
	if err != nil {
		t.Fatal(err)
	}
	var cr api.ComponentCeremony
	a.Admin.MustDo(t, "POST", "/v1/key-components", api.StartComponentsRequest{
		Tenant: "acme", Owner: "payments", Components: 2, ExpectedKCV: want, CreateDataKeyRequest: api.CreateDataKeyRequest{Type: api.KeyAES256GCM},
	}, &cr)
	alice.MustDo(t, "POST", "/v1/key-components/"+cr.ID, api.AddComponentRequest{Component: hex.EncodeToString(parts[0]), KCV: kcvs[0]}, nil)
	var done api.ComponentCeremony
	bob.MustDo(t, "POST", "/v1/key-components/"+cr.ID, api.AddComponentRequest{Component: hex.EncodeToString(parts[1]), KCV: kcvs[1]}, &done)
	if done.State != api.CeremonyComplete || done.KCV != want {
		t.Fatalf("the last component on replica B: %+v, want a key with KCV %s", done, want)
	}
	var status api.ComponentCeremony
	custA.MustDo(t, "GET", "/v1/key-components/"+cr.ID, nil, &status)
	if status.DataKey == nil || status.DataKey.KeyID != done.KeyID || status.DataKey.KCV != want {
		t.Fatalf("the owner on replica A: %+v", status.DataKey)
	}

	// A version stored before KCVs: both replicas read it at once.
	dk := custA.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyHMACSHA256})
	conn := raw(t, dsn)
	if _, err := conn.Exec(t.Context(), `UPDATE key_versions SET kcv = NULL WHERE key_id = $1`, dk.KeyID); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	got := make([]api.DataKeyInfo, 8)
	errs := make([]error, len(got))
	for i := range got {
		c := []*kmstest.Client{custA, custB}[i%2]
		wg.Go(func() { errs[i] = c.Do("GET", "/v1/datakeys/"+dk.KeyID, nil, &got[i]) })
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || len(got[i].Versions) != 1 || got[i].Versions[0].KCV != dk.KCV {
			t.Errorf("read %d (replica %c): %+v, %v; want KCV %s", i, "AB"[i%2], got[i].Versions, errs[i], dk.KCV)
		}
	}
	var stored string
	if err := conn.QueryRow(t.Context(), `SELECT kcv FROM key_versions WHERE key_id = $1`, dk.KeyID).Scan(&stored); err != nil || stored != dk.KCV {
		t.Errorf("stored KCV = %q, %v; want %q", stored, err, dk.KCV)
	}
}
