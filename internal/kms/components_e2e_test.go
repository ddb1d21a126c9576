package kms_test

import (
	"bytes"
	"crypto/hpke"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/secret"
)

var kcvFormat = regexp.MustCompile(`^[0-9A-F]{6}$`)

// opensslKCV computes a key check value with OpenSSL, an independent
// implementation: AES-CMAC (aes) or HMAC-SHA-256 of 16 zero bytes, first 3
// bytes. It skips the test when openssl is missing.
func opensslKCV(t *testing.T, typ api.KeyType, key []byte) string {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	args := []string{"mac", "-cipher", fmt.Sprintf("AES-%d-CBC", 8*len(key)), "-macopt", "hexkey:" + hex.EncodeToString(key), "CMAC"}
	if typ == api.KeyHMACSHA256 {
		args = []string{"mac", "-digest", "SHA256", "-macopt", "hexkey:" + hex.EncodeToString(key), "HMAC"}
	}
	cmd := exec.Command("openssl", args...)
	cmd.Stdin = bytes.NewReader(make([]byte, 16))
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("openssl %v: %v", args, err)
	}
	return strings.ToUpper(strings.TrimSpace(string(out)))[:6]
}

// exportClear exports an exportable key's version by HPKE and opens it:
// the clear material, as the owner's partner would see it.
func exportClear(t *testing.T, c *kmstest.Client, tenant string, dk api.DataKey) ([]byte, string) {
	t.Helper()
	hk, _ := kcrypto.GenerateKEMKey(kcrypto.DefaultKEM())
	pub, _ := kcrypto.MarshalKEMPublicKey(hk.PublicKey())
	var out api.ExportResponse
	c.MustDo(t, "POST", "/v1/datakeys/export", api.ExportRequest{EKB: dk.EKB, Wrapping: api.WrappingHPKE, PublicKey: &pub}, &out)
	info := append([]byte("dcaas/v1 export\x00"), fmt.Sprintf(`[%q,%q,%d]`, tenant, dk.KeyID, dk.Version)...)
	pt, err := hpke.Open(hk, hpke.HKDFSHA256(), hpke.AES256GCM(), info, out.WrappedMaterial)
	if err != nil {
		t.Fatalf("export does not open: %v", err)
	}
	return pt, out.KCV
}

// TestKeyCheckValues: every AES and HMAC key version reports the KCV of its
// material (as OpenSSL computes it) on create, new version, export and
// read; signing keys have none; and a version stored without a KCV (made
// before they were stored) gets the right one on read, stored for later.
func TestKeyCheckValues(t *testing.T) {
	w := newWorld(t, kcrypto.DefaultKEM())
	for _, typ := range []api.KeyType{api.KeyAES256GCM, api.KeyHMACSHA256} {
		t.Run(string(typ), func(t *testing.T) {
			dk := w.cust.DataKey(t, api.CreateDataKeyRequest{Type: typ, Exportable: true})
			if !kcvFormat.MatchString(dk.KCV) {
				t.Fatalf("create: kcv = %q, want six upper-case hex digits", dk.KCV)
			}
			material, exportKCV := exportClear(t, w.cust, "acme", dk)
			if want := opensslKCV(t, typ, material); dk.KCV != want || exportKCV != want {
				t.Errorf("kcv on create %s, on export %s; OpenSSL's of the exported key %s", dk.KCV, exportKCV, want)
			}
			var v2 api.DataKey
			w.cust.MustDo(t, "POST", "/v1/datakeys/"+dk.KeyID+"/versions", api.NewVersionRequest{EKB: dk.EKB}, &v2)
			m2, _ := exportClear(t, w.cust, "acme", v2)
			if want := opensslKCV(t, typ, m2); v2.KCV != want || v2.KCV == dk.KCV {
				t.Errorf("new version: kcv %s, OpenSSL's %s, version 1's %s", v2.KCV, want, dk.KCV)
			}
			var info api.DataKeyInfo
			w.cust.MustDo(t, "GET", "/v1/datakeys/"+dk.KeyID, nil, &info)
			if len(info.Versions) != 2 || info.Versions[0].KCV != dk.KCV || info.Versions[1].KCV != v2.KCV {
				t.Errorf("GET versions = %+v, want kcvs %s, %s", info.Versions, dk.KCV, v2.KCV)
			}
		})
	}
	t.Run("import", func(t *testing.T) {
		material := kcrypto.Random(32)
		p := importParams(t, w.cust, "acme")
		pub, err := kcrypto.ParseKEMPublicKey(p.HPKEPublicKey)
		if err != nil {
			t.Fatal(err)
		}
		wrapped, err := kcrypto.WrapExport(kcrypto.WrappingHPKE, pub, importInfo("acme"), secret.Copy(material))
		if err != nil {
			t.Fatal(err)
		}
		var dk api.DataKey
		w.cust.MustDo(t, "POST", "/v1/datakeys/import", api.ImportKeyRequest{
			ImportToken: p.ImportToken, Wrapping: api.WrappingHPKE, WrappedMaterial: wrapped, Type: api.KeyHMACSHA256,
		}, &dk)
		if want := opensslKCV(t, api.KeyHMACSHA256, material); dk.KCV != want {
			t.Errorf("import: kcv %s, OpenSSL's of the material %s", dk.KCV, want)
		}
	})
	t.Run("signing keys have none", func(t *testing.T) {
		dk := w.cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyEd25519})
		var info api.DataKeyInfo
		w.cust.MustDo(t, "GET", "/v1/datakeys/"+dk.KeyID, nil, &info)
		if dk.KCV != "" || info.Versions[0].KCV != "" {
			t.Errorf("ed25519 key has kcv %q / %q, want none", dk.KCV, info.Versions[0].KCV)
		}
	})
	t.Run("stored before KCVs", func(t *testing.T) {
		dk := w.cust.DataKey(t, api.CreateDataKeyRequest{Type: api.KeyAES256GCM})
		// What a key made before migration 0007 looks like: no KCV.
		w.env.Stop()
		db, err := sql.Open("sqlite", filepath.Join(w.env.DataDir, kms.DBFile))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`UPDATE key_versions SET kcv = NULL WHERE key_id = ?`, dk.KeyID); err != nil {
			t.Fatal(err)
		}
		db.Close()
		w.env.Restart()
		var info api.DataKeyInfo
		w.cust.MustDo(t, "GET", "/v1/datakeys/"+dk.KeyID, nil, &info)
		if info.Versions[0].KCV != dk.KCV {
			t.Fatalf("GET of a key stored without a KCV: kcv %q, want %q", info.Versions[0].KCV, dk.KCV)
		}
		w.env.Stop()
		db, err = sql.Open("sqlite", filepath.Join(w.env.DataDir, kms.DBFile))
		if err != nil {
			t.Fatal(err)
		}
		var stored sql.NullString
		err = db.QueryRow(`SELECT kcv FROM key_versions WHERE key_id = ?`, dk.KeyID).Scan(&stored)
		db.Close()
		w.env.Restart()
		if err != nil || stored.String != dk.KCV {
			t.Errorf("stored kcv after the read = %q, %v, want %q", stored.String, err, dk.KCV)
		}
	})
}

// components are K random components of a 32-byte key, their KCVs and the
// key they make.
type components struct {
	parts [][]byte
	kcvs  []string
	key   []byte
}

func newComponents(t *testing.T, typ api.KeyType, k int) components {
	t.Helper()
	c := components{key: make([]byte, 32)}
	for range k {
		p := kcrypto.Random(32)
		kcv, err := kcvOfType(typ, p)
		if err != nil {
			t.Fatal(err)
		}
		c.parts = append(c.parts, p)
		c.kcvs = append(c.kcvs, kcv)
		for i := range p {
			c.key[i] ^= p[i]
		}
	}
	return c
}

func kcvOfType(typ api.KeyType, b []byte) (string, error) {
	if typ == api.KeyHMACSHA256 {
		return kcrypto.KCVHMACSHA256(secret.Copy(b))
	}
	return kcrypto.KCVCMAC(secret.Copy(b))
}

// firstComponent starts a ceremony of two new components of typ as the
// custodian w.cust and has admin enter the first; it returns the
// components and the ceremony.
func firstComponent(t *testing.T, w *world, typ api.KeyType, admin *kmstest.Client) (components, api.ComponentCeremony) {
	t.Helper()
	comps := newComponents(t, typ, 2)
	var cr api.ComponentCeremony
	w.cust.MustDo(t, "POST", "/v1/key-components", api.StartComponentsRequest{Components: 2, CreateDataKeyRequest: api.CreateDataKeyRequest{Type: typ}}, &cr)
	if _, err := addComponent(admin, cr.ID, comps.parts[0], comps.kcvs[0]); err != nil {
		t.Fatal(err)
	}
	return comps, cr
}

func addComponent(c *kmstest.Client, id string, part []byte, kcv string) (api.ComponentCeremony, error) {
	var out api.ComponentCeremony
	err := c.Do("POST", "/v1/key-components/"+id, api.AddComponentRequest{Component: hex.EncodeToString(part), KCV: kcv}, &out)
	return out, err
}

// TestKeyComponents: three admins enter three components with their KCVs;
// a wrong KCV, the same admin twice, a final KCV that does not match and
// an expired ceremony are refused; the key made is the XOR of the
// components (its KCV is OpenSSL's of that XOR, and a sidecar receives
// exactly that key).
func TestKeyComponents(t *testing.T) {
	w := newWorld(t, kcrypto.DefaultKEM())
	alice, _ := w.env.NewAdmin(t, "alice")
	bob, _ := w.env.NewAdmin(t, "bob")
	carol, _ := w.env.NewAdmin(t, "carol")
	comps := newComponents(t, api.KeyAES256GCM, 3)
	expected := opensslKCV(t, api.KeyAES256GCM, comps.key)

	var cr api.ComponentCeremony
	w.env.Admin.MustDo(t, "POST", "/v1/key-components", api.StartComponentsRequest{
		Tenant: "acme", Owner: "payments-api", Components: 3, ExpectedKCV: strings.ToLower(expected), CreateDataKeyRequest: api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Purpose: "zone master key"},
	}, &cr)
	if cr.State != api.CeremonyCollecting || cr.ExpectedKCV != expected || cr.Owner != w.custCreds.DN || len(cr.Entered) != 0 {
		t.Fatalf("start = %+v", cr)
	}

	// A wrong KCV: refused, nothing kept.
	wrong := "000000"
	if comps.kcvs[0] == wrong {
		wrong = "000001"
	}
	_, err := addComponent(alice, cr.ID, comps.parts[0], wrong)
	kmstest.WantError(t, err, 400, api.CodeKCVMismatch)
	got, err := addComponent(alice, cr.ID, comps.parts[0], comps.kcvs[0])
	if err != nil || len(got.Entered) != 1 || got.Entered[0].Index != 1 || got.Entered[0].KCV != comps.kcvs[0] {
		t.Fatalf("alice's component: %+v, %v", got, err)
	}
	// The same admin twice: refused.
	_, err = addComponent(alice, cr.ID, comps.parts[1], comps.kcvs[1])
	kmstest.WantError(t, err, 403, api.CodeDuplicateAdmin)
	// Custodians do not enter components.
	_, err = addComponent(w.cust, cr.ID, comps.parts[1], comps.kcvs[1])
	kmstest.WantError(t, err, 403, api.CodeForbidden)
	if _, err := addComponent(bob, cr.ID, comps.parts[1], comps.kcvs[1]); err != nil {
		t.Fatal(err)
	}

	// A last component with its own right KCV, but not the key's: the
	// key's KCV does not match; no key is made and the ceremony goes on.
	other := newComponents(t, api.KeyAES256GCM, 1)
	_, err = addComponent(carol, cr.ID, other.parts[0], other.kcvs[0])
	kmstest.WantError(t, err, 400, api.CodeKCVMismatch)
	var status api.ComponentCeremony
	w.cust.MustDo(t, "GET", "/v1/key-components/"+cr.ID, nil, &status)
	if status.State != api.CeremonyCollecting || len(status.Entered) != 2 || status.KeyID != "" || status.DataKey != nil {
		t.Fatalf("after a final KCV mismatch: %+v", status)
	}

	done, err := addComponent(carol, cr.ID, comps.parts[2], comps.kcvs[2])
	if err != nil {
		t.Fatal(err)
	}
	if done.State != api.CeremonyComplete || done.KeyID == "" || done.KCV != expected || len(done.Entered) != 3 || done.DataKey != nil {
		t.Fatalf("complete = %+v, want key with kcv %s", done, expected)
	}
	for i, e := range done.Entered {
		if e.Index != i+1 || e.KCV != comps.kcvs[i] {
			t.Errorf("entered[%d] = %+v, want kcv %s", i, e, comps.kcvs[i])
		}
	}
	_, err = addComponent(w.env.Admin, cr.ID, other.parts[0], other.kcvs[0])
	kmstest.WantError(t, err, 409, api.CodeConflict)

	// The owner reads its key from the ceremony and it works: a sidecar
	// receives exactly the XOR of the components.
	w.cust.MustDo(t, "GET", "/v1/key-components/"+cr.ID, nil, &status)
	if status.DataKey == nil || status.DataKey.KeyID != done.KeyID || status.DataKey.KCV != expected ||
		status.DataKey.Metadata.Labels["dcaas.origin"] != "components" || status.DataKey.Metadata.Purpose != "zone master key" {
		t.Fatalf("owner's view = %+v", status.DataKey)
	}
	wrapped, err := w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, status.DataKey.EKB)
	if err != nil {
		t.Fatal(err)
	}
	if k := w.side.Unwrap(t, &wrapped)[0]; !bytes.Equal(k.Expose(), comps.key) {
		t.Fatal("the key a sidecar receives is not the XOR of the components")
	}
	var info api.DataKeyInfo
	w.cust.MustDo(t, "GET", "/v1/datakeys/"+done.KeyID, nil, &info)
	if info.Versions[0].KCV != expected {
		t.Errorf("GET /v1/datakeys: kcv %s, want %s", info.Versions[0].KCV, expected)
	}
	// An admin sees the progress, not the key.
	var adminView api.ComponentCeremony
	alice.MustDo(t, "GET", "/v1/key-components/"+cr.ID, nil, &adminView)
	if adminView.DataKey != nil || adminView.KCV != expected || adminView.State != api.CeremonyComplete {
		t.Errorf("admin's view: %+v", adminView)
	}
	// Another custodian does not see the ceremony at all.
	stranger, _ := w.env.App(t, "acme", "stranger", api.RoleCustodian)
	kmstest.WantError(t, stranger.Do("GET", "/v1/key-components/"+cr.ID, nil, nil), 404, api.CodeNotFound)

	// Every step is audited, refusals included, with who; a component
	// never is.
	type step struct{ caller, key, outcome, code string }
	var steps []step
	for after := int64(0); ; {
		var page api.AuditPage
		w.env.Admin.MustDo(t, "GET", fmt.Sprintf("/v1/audit?after=%d", after), nil, &page)
		reads := 0
		for _, r := range page.Records {
			if r.Action == "audit.read" {
				reads++ // reading is audited too: a page of reads alone is the end
			}
			raw, _ := json.Marshal(r)
			for _, p := range append(comps.parts, other.parts[0]) {
				if bytes.Contains(bytes.ToLower(raw), []byte(hex.EncodeToString(p))) {
					t.Fatalf("audit record %d holds a component", r.Seq)
				}
			}
			if r.Action == "datakey.components.add" {
				steps = append(steps, step{r.Caller, r.KeyID, r.Outcome, r.Code})
			}
		}
		if reads == len(page.Records) || page.Next <= after {
			break
		}
		after = page.Next
	}
	alan, bo, caro := "CN=alice,O=dcaas", "CN=bob,O=dcaas", "CN=carol,O=dcaas"
	want := []step{
		{alan, cr.ID, "error", "kcv_mismatch"}, {alan, cr.ID, "ok", ""}, {alan, cr.ID, "denied", "duplicate_admin"},
		{w.custCreds.DN, "", "denied", "forbidden"}, {bo, cr.ID, "ok", ""}, {caro, cr.ID, "error", "kcv_mismatch"},
		{caro, done.KeyID, "ok", ""}, {"CN=admin,O=dcaas", cr.ID, "error", "conflict"},
	}
	if !slices.Equal(steps, want) {
		t.Errorf("audited steps:\n%v\nwant\n%v", steps, want)
	}

	t.Run("hmac by a custodian", func(t *testing.T) {
		comps, cr := firstComponent(t, w, api.KeyHMACSHA256, alice)
		done, err := addComponent(bob, cr.ID, comps.parts[1], comps.kcvs[1])
		if want := opensslKCV(t, api.KeyHMACSHA256, comps.key); err != nil || done.KCV != want {
			t.Fatalf("hmac key: %+v, %v; want kcv %s", done, err, want)
		}
	})

	t.Run("refusals at the start", func(t *testing.T) {
		for name, req := range map[string]api.StartComponentsRequest{
			"signing type":  {Tenant: "acme", Owner: "payments-api", Components: 2, CreateDataKeyRequest: api.CreateDataKeyRequest{Type: api.KeyEd25519}},
			"one component": {Tenant: "acme", Owner: "payments-api", Components: 1, CreateDataKeyRequest: api.CreateDataKeyRequest{Type: api.KeyAES256GCM}},
			"ten":           {Tenant: "acme", Owner: "payments-api", Components: 10, CreateDataKeyRequest: api.CreateDataKeyRequest{Type: api.KeyAES256GCM}},
			"bad kcv":       {Tenant: "acme", Owner: "payments-api", Components: 2, ExpectedKCV: "12345G", CreateDataKeyRequest: api.CreateDataKeyRequest{Type: api.KeyAES256GCM}},
			"not an owner":  {Tenant: "acme", Owner: "deployer", Components: 2, CreateDataKeyRequest: api.CreateDataKeyRequest{Type: api.KeyAES256GCM}},
			"no owner":      {Tenant: "acme", Components: 2, CreateDataKeyRequest: api.CreateDataKeyRequest{Type: api.KeyAES256GCM}},
		} {
			t.Run(name, func(t *testing.T) {
				kmstest.WantError(t, w.env.Admin.Do("POST", "/v1/key-components", req, nil), 400, api.CodeInvalidArgument)
			})
		}
		kmstest.WantError(t, w.cust.Do("POST", "/v1/key-components", api.StartComponentsRequest{Tenant: "other", Components: 2, CreateDataKeyRequest: api.CreateDataKeyRequest{Type: api.KeyAES256GCM}}, nil), 403, api.CodeWrongTenant)
		kmstest.WantError(t, w.pipe.Do("POST", "/v1/key-components", api.StartComponentsRequest{Components: 2, CreateDataKeyRequest: api.CreateDataKeyRequest{Type: api.KeyAES256GCM}}, nil), 403, api.CodeForbidden)
	})

	t.Run("bad components", func(t *testing.T) {
		var cr api.ComponentCeremony
		w.cust.MustDo(t, "POST", "/v1/key-components", api.StartComponentsRequest{Components: 2, CreateDataKeyRequest: api.CreateDataKeyRequest{Type: api.KeyAES256GCM}}, &cr)
		for _, c := range []string{"", "00", strings.Repeat("zz", 32), strings.Repeat("00", 33)} {
			var out api.ComponentCeremony
			err := alice.Do("POST", "/v1/key-components/"+cr.ID, api.AddComponentRequest{Component: c, KCV: "000000"}, &out)
			kmstest.WantError(t, err, 400, api.CodeInvalidArgument)
		}
		kmstest.WantError(t, alice.Do("POST", "/v1/key-components/kcm_nope", api.AddComponentRequest{}, nil), 404, api.CodeNotFound)
	})

	t.Run("expired", func(t *testing.T) {
		comps, cr := firstComponent(t, w, api.KeyAES256GCM, alice)
		if d := cr.ExpiresAt.Sub(cr.CreatedAt); d != 24*time.Hour {
			t.Errorf("ceremony lasts %v, want the default 24h", d)
		}
		w.clock.Advance(24*time.Hour + time.Second)
		_, err := addComponent(bob, cr.ID, comps.parts[1], comps.kcvs[1])
		kmstest.WantError(t, err, 410, api.CodeExpired)
		kmstest.WantError(t, w.cust.Do("GET", "/v1/key-components/"+cr.ID, nil, nil), 410, api.CodeExpired)
	})
}

// TestKeyComponentsRace: admins racing to enter the last component make
// exactly one key; the others are told to retry (conflict) and change
// nothing.
func TestKeyComponentsRace(t *testing.T) {
	w := newWorld(t, kcrypto.DefaultKEM())
	first, _ := w.env.NewAdmin(t, "first")
	const racers = 4
	var admins []*kmstest.Client
	for i := range racers {
		a, _ := w.env.NewAdmin(t, fmt.Sprintf("racer%d", i))
		admins = append(admins, a)
	}
	comps, cr := firstComponent(t, w, api.KeyAES256GCM, first)
	results := make(chan error, racers)
	outs := make(chan api.ComponentCeremony, racers)
	for _, a := range admins {
		go func() {
			out, err := addComponent(a, cr.ID, comps.parts[1], comps.kcvs[1])
			if err == nil {
				outs <- out
			}
			results <- err
		}()
	}
	won := 0
	for range racers {
		err := <-results
		if err == nil {
			won++
			continue
		}
		kmstest.WantError(t, err, 409, api.CodeConflict)
	}
	if won != 1 {
		t.Fatalf("%d racers made the key, want 1", won)
	}
	done := <-outs
	var status api.ComponentCeremony
	w.cust.MustDo(t, "GET", "/v1/key-components/"+cr.ID, nil, &status)
	if status.State != api.CeremonyComplete || status.KeyID != done.KeyID || len(status.Entered) != 2 || status.DataKey == nil {
		t.Fatalf("after the race: %+v, winner made %s", status, done.KeyID)
	}
}

// TestKeyComponentsTakeEveryKeyParameter: a ceremony takes every field of
// POST /v1/datakeys (the request embeds CreateDataKeyRequest), so a key
// entered in components can rotate on a period like any other; the body is
// sent as JSON written here, as another client would.
func TestKeyComponentsTakeEveryKeyParameter(t *testing.T) {
	w := newWorld(t, kcrypto.DefaultKEM())
	alice, _ := w.env.NewAdmin(t, "alice")
	comps := newComponents(t, api.KeyAES256GCM, 2)
	var cr api.ComponentCeremony
	w.cust.MustDo(t, "POST", "/v1/key-components", json.RawMessage(`{"type":"aes-256-gcm","components":2,"rotation_period_seconds":7200,"purpose":"zmk"}`), &cr)
	for i, admin := range []*kmstest.Client{alice, w.env.Admin} {
		if _, err := addComponent(admin, cr.ID, comps.parts[i], comps.kcvs[i]); err != nil {
			t.Fatal(err)
		}
	}
	var status api.ComponentCeremony
	w.cust.MustDo(t, "GET", "/v1/key-components/"+cr.ID, nil, &status)
	if status.DataKey == nil || status.DataKey.Metadata.RotationPeriodSeconds != 7200 || status.DataKey.Metadata.Purpose != "zmk" {
		t.Fatalf("the key made: %+v", status.DataKey)
	}
	var info api.DataKeyInfo
	w.cust.MustDo(t, "GET", "/v1/datakeys/"+status.DataKey.KeyID, nil, &info)
	if info.RotationPeriodSeconds != 7200 {
		t.Fatalf("GET /v1/datakeys: rotation_period_seconds %d, want 7200", info.RotationPeriodSeconds)
	}
	// Checked when the ceremony starts, as for POST /v1/datakeys.
	kmstest.WantError(t, w.cust.Do("POST", "/v1/key-components", json.RawMessage(`{"type":"aes-256-gcm","components":2,"rotation_period_seconds":60}`), nil), 400, api.CodeInvalidArgument)
}
