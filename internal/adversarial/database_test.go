package adversarial_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// TestDatabaseReaderLearnsNoSecret: someone reads the KMS database (a
// backup, a replica, a stolen disk without the root key). After every kind
// of secret went through the KMS — data keys (kept and retained), a derived
// key and its seed, enrollment tokens and grants (used and unused), a
// plaintext of the central path — none of them is in the database files in
// any common encoding. (The root key and the admin's credentials are other
// files of the data dir: see the threat model.)
func TestDatabaseReaderLearnsNoSecret(t *testing.T) {
	w := newWorld(t)
	fake := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	usedToken := w.token(t, w.payCreds.DN)
	unusedToken := w.token(t, w.payCreds.DN)
	fake.Enroll(t, w.env.Anonymous(), usedToken)
	fc := fake.Client(t, w.env)
	me := api.PublicKey{KEM: fake.KEM, PublicKey: fake.KEMKey.PublicKey().Bytes()}

	secrets := map[string][]byte{"used token": []byte(usedToken), "unused token": []byte(unusedToken)}
	var ekbs [][]byte
	for _, req := range []api.CreateDataKeyRequest{
		{Type: api.KeyAES256GCM},
		{Type: api.KeyHMACSHA256, Retain: true},
		{Type: api.KeyEd25519, Retain: true},
		{Type: api.KeyECDSAP256},
	} {
		ekbs = append(ekbs, dataKey(t, w.pay, req).EKB)
	}
	for i, dek := range fake.Unwrap(t, mustRewrap(t, w.pay, fake.Enrollment.WrappingCertPEM, ekbs...)) {
		secrets["data key "+string(rune('A'+i))] = bytes.Clone(dek.Expose())
		dek.Wipe()
	}

	g := mustGrant(t, w.pay, api.GrantRequest{InstanceID: fake.Enrollment.InstanceID, EKBs: ekbs[:1]})
	secrets["used grant"] = []byte(g)
	var loaded api.WrappedKeys
	fc.MustDo(t, "POST", "/v1/keys/load", api.LoadRequest{Grant: g, EKBs: ekbs[:1], Recipient: me}, &loaded)

	seed := make([]byte, 32)
	rand.Read(seed)
	secrets["seed"] = seed
	g = mustGrant(t, w.pay, api.GrantRequest{InstanceID: fake.Enrollment.InstanceID, Seeds: [][]byte{seed}})
	secrets["used seed grant"] = []byte(g)
	var derived api.WrappedKeys
	fc.MustDo(t, "POST", "/v1/keys/derive", api.DeriveRequest{Grant: g, Seeds: []api.Seed{{Seed: seed, Type: api.KeyAES256GCM}}, Recipient: me}, &derived)
	dek := fake.Unwrap(t, &derived)[0]
	secrets["derived key"] = bytes.Clone(dek.Expose())
	dek.Wipe()
	secrets["unused grant"] = []byte(mustGrant(t, w.pay, api.GrantRequest{InstanceID: fake.Enrollment.InstanceID, Seeds: [][]byte{seed}}))

	plaintext := []byte("central-path plaintext: PAN 4111 1111 1111 1111")
	secrets["plaintext"] = plaintext
	w.pay.MustDo(t, "POST", "/v1/crypto/encrypt", api.EncryptRequest{KeyRef: api.KeyRef{EKB: ekbs[0]}, Plaintext: plaintext}, nil)

	w.env.Stop() // the database files at rest
	entries, err := os.ReadDir(w.env.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	scanned, sawDN := 0, false
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), kms.DBFile) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(w.env.DataDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		scanned += len(data)
		sawDN = sawDN || bytes.Contains(data, []byte(w.payCreds.DN))
		for what, s := range secrets {
			for _, form := range [][]byte{
				s,
				[]byte(hex.EncodeToString(s)),
				[]byte(base64.StdEncoding.EncodeToString(s)),
				[]byte(base64.RawURLEncoding.EncodeToString(s)),
			} {
				if bytes.Contains(data, form) {
					t.Errorf("the %s is in %s", what, e.Name())
				}
			}
		}
	}
	if scanned == 0 || !sawDN {
		t.Fatalf("the database files (%s*, %d bytes) in %s do not even hold the custodian's DN: the test would prove nothing", kms.DBFile, scanned, w.env.DataDir)
	}
}
