package kms_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/tr31"
)

// The published Thales payShield 10k block (internal/tr31/testdata,
// from openemv/tr31): an AES-256 data key (D0, A, mode N, not exportable)
// under the KBPK 0x41 × 32.
const (
	payShieldKBPK  = "4141414141414141414141414141414141414141414141414141414141414141"
	payShieldBlock = "D0144D0AN00N0000127862F945C2DED04530FAF7CDBC8B0BA10C7AA79BD5E0C2C5D6AC173BF588E4B19ACF1357178D50EA0AB193228E13958304FC6149632DFDCADF3A5B3D57E814"
	payShieldKey   = "BE19E6A07A760F10EF8E83A226B63AAD141F463FDDD4F47DB244B4023EC3CACC"
)

// byokImport imports material as a key of type typ with BYOK (RSA-AES),
// as a partner's shared key comes in.
func byokImport(t *testing.T, c *kmstest.Client, typ api.KeyType, material []byte, exportable bool, pol *api.Policy) api.DataKey {
	t.Helper()
	p := importParams(t, c, "acme")
	pub, err := kcrypto.ParseRSAPublicKeyPEM(p.RSAPublicKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := kcrypto.WrapRSAAES(pub, material)
	if err != nil {
		t.Fatal(err)
	}
	var dk api.DataKey
	c.MustDo(t, "POST", "/v1/datakeys/import", api.ImportKeyRequest{ImportToken: p.ImportToken, Wrapping: api.WrappingRSAAES,
		WrappedMaterial: wrapped, Type: typ, Exportable: exportable, Policy: pol}, &dk)
	return dk
}

// materialOf releases dk to the test sidecar and returns its material.
func (w *world) materialOf(t *testing.T, ekb []byte) *secret.Bytes {
	t.Helper()
	got, err := w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, ekb)
	if err != nil {
		t.Fatalf("rewrap = %v", err)
	}
	return w.side.Unwrap(t, &got)[0]
}

func exportTR31(c *kmstest.Client, ekb []byte, kbpk, exportability string) (string, error) {
	var out api.ExportResponse
	err := c.Do("POST", "/v1/datakeys/export", api.ExportRequest{EKB: ekb, Wrapping: api.WrappingTR31, KBPKID: kbpk, TR31Exportability: exportability}, &out)
	return out.KeyBlock, err
}

func importTR31(c *kmstest.Client, req api.ImportKeyRequest) (api.DataKey, error) {
	var dk api.DataKey
	req.Wrapping = api.WrappingTR31
	err := c.Do("POST", "/v1/datakeys/import", req, &dk)
	return dk, err
}

// TestTR31Exchange plays both sides of a partner exchange over a real KMS:
// the partner's KBPK comes in by BYOK with a known value, a published HSM
// key block imports to its published key, dcaas exports keys as blocks the
// partner (here internal/tr31 with the KBPK, and moov-io/tr31 for the
// committed vector) opens, and every refusal has its code.
func TestTR31Exchange(t *testing.T) {
	w := newWorld(t, kcrypto.DefaultKEM())
	kbpkClear, _ := hex.DecodeString(payShieldKBPK)
	kbpk := byokImport(t, w.cust, api.KeyAES256KBPK, kbpkClear, false, nil)
	if kbpk.Metadata.Type != api.KeyAES256KBPK {
		t.Fatalf("KBPK metadata = %+v", kbpk.Metadata)
	}

	t.Run("a KBPK is no data key", func(t *testing.T) {
		_, err := centralEncrypt(w.cust, api.KeyRef{EKB: kbpk.EKB}, []byte("x"))
		kmstest.WantError(t, err, 400, api.CodeWrongKeyType)
		_, err = w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, kbpk.EKB)
		kmstest.WantError(t, err, 400, api.CodeWrongKeyType)
		var made api.DataKey
		w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256KBPK}, &made)
		if made.Metadata.Type != api.KeyAES256KBPK {
			t.Fatalf("POST /v1/datakeys made %+v", made.Metadata)
		}
	})

	t.Run("import a published block", func(t *testing.T) {
		dk, err := importTR31(w.cust, api.ImportKeyRequest{KeyBlock: payShieldBlock, KBPKID: kbpk.KeyID})
		if err != nil {
			t.Fatal(err)
		}
		md := dk.Metadata
		if md.Type != api.KeyAES256GCM || md.Exportable || md.Policy != nil || md.Labels["dcaas.origin"] != "tr31" {
			t.Fatalf("imported metadata = %+v", md)
		}
		want, _ := hex.DecodeString(payShieldKey)
		if got := w.materialOf(t, dk.EKB); !bytes.Equal(got.Expose(), want) {
			t.Fatal("the imported key is not the published key")
		}
		// Exportability N holds: no export, and no import as exportable.
		_, err = exportTR31(w.cust, dk.EKB, kbpk.KeyID, "")
		kmstest.WantError(t, err, 403, api.CodeForbidden)
		_, err = importTR31(w.cust, api.ImportKeyRequest{KeyBlock: payShieldBlock, KBPKID: kbpk.KeyID, Exportable: true})
		kmstest.WantError(t, err, 400, api.CodeUnsupportedKeyBlock)
	})

	t.Run("export", func(t *testing.T) {
		encOnly := &api.Policy{Rules: []api.PolicyRule{{Principals: []string{w.custCreds.DN}, Actions: []api.Action{api.ActionEncrypt}}}}
		cases := []struct {
			name   string
			req    api.CreateDataKeyRequest
			exp    string
			header string
		}{
			{"aes-256-gcm", api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Exportable: true}, "", "D0144D0AB01E0000"},
			{"aes-256-gcm encrypt only, N", api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Exportable: true, Policy: encOnly}, "N", "D0144D0AE01N0000"},
			{"hmac-sha256", api.CreateDataKeyRequest{Type: api.KeyHMACSHA256, Exportable: true}, "S", "D0160M7HC01S0200HM0621PB0A000000"},
			{"aes-256-kbpk", api.CreateDataKeyRequest{Type: api.KeyAES256KBPK, Exportable: true}, "", "D0144K1AB01E0000"},
		}
		var record []map[string]string
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				dk := w.dataKey(t, w.cust, c.req)
				block, err := exportTR31(w.cust, dk.EKB, kbpk.KeyID, c.exp)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(block, c.header) {
					t.Fatalf("block = %s, want header %s", block, c.header)
				}
				// The partner opens it with the shared KBPK.
				_, key, err := tr31.Unwrap(secret.New(kbpkClear), []byte(block))
				if err != nil {
					t.Fatal(err)
				}
				var want *secret.Bytes
				if c.req.Type == api.KeyAES256KBPK {
					want = key // not releasable; checked by the import below
				} else {
					want = w.materialOf(t, dk.EKB)
				}
				if !key.Equal(want) {
					t.Fatal("the exported block does not hold the key")
				}
				record = append(record, map[string]string{"name": "dcaas export of " + c.name, "kbpk": payShieldKBPK, "key": strings.ToUpper(hex.EncodeToString(key.Expose())), "key_block": block})
				// And it imports back, under the same mapping.
				if c.exp == "N" {
					return
				}
				back, err := importTR31(w.cust, api.ImportKeyRequest{KeyBlock: block, KBPKID: kbpk.KeyID, Exportable: true})
				if err != nil {
					t.Fatal(err)
				}
				if back.Metadata.Type != c.req.Type {
					t.Fatalf("imported back as %s", back.Metadata.Type)
				}
				if c.req.Type != api.KeyAES256KBPK && !w.materialOf(t, back.EKB).Equal(want) {
					t.Fatal("the key imported back is not the key")
				}
			})
		}
		// TR31_E2E_OUT=file writes the blocks for an independent
		// implementation to open (internal/tr31/testdata/README.md).
		if out := os.Getenv("TR31_E2E_OUT"); out != "" {
			b, _ := json.MarshalIndent(record, "", " ")
			if err := os.WriteFile(out, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("import honours the mode of use", func(t *testing.T) {
		key := secret.New(kcrypto.Random(32))
		h := tr31.Header{Version: 'D', KeyUsage: "D0", Algorithm: 'A', ModeOfUse: 'D', KeyVersion: "00", Exportability: 'E', KeyContext: '0'}
		block, _ := tr31.Wrap(secret.New(kbpkClear), h, key)
		dk, err := importTR31(w.cust, api.ImportKeyRequest{KeyBlock: string(block), KBPKID: kbpk.KeyID})
		if err != nil {
			t.Fatal(err)
		}
		p := dk.Metadata.Policy
		if p == nil || len(p.Rules) != 1 || len(p.Rules[0].Actions) != 1 || p.Rules[0].Actions[0] != api.ActionDecrypt {
			t.Fatalf("policy of a decrypt-only block = %+v", p)
		}
		_, err = centralEncrypt(w.cust, api.KeyRef{EKB: dk.EKB}, []byte("x"))
		kmstest.WantError(t, err, 403, api.CodePolicyDenied)
		// A requested policy may not go beyond the block.
		both := &api.Policy{Rules: []api.PolicyRule{{Principals: []string{w.custCreds.DN}, Actions: []api.Action{api.ActionEncrypt, api.ActionDecrypt}}}}
		_, err = importTR31(w.cust, api.ImportKeyRequest{KeyBlock: string(block), KBPKID: kbpk.KeyID, Policy: both})
		kmstest.WantError(t, err, 400, api.CodeUnsupportedKeyBlock)
	})

	t.Run("refusals", func(t *testing.T) {
		kb := secret.New(kbpkClear)
		wrap := func(h tr31.Header, n int) string {
			b, err := tr31.Wrap(kb, h, secret.New(kcrypto.Random(n)))
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		d0 := tr31.Header{Version: 'D', KeyUsage: "D0", Algorithm: 'A', ModeOfUse: 'B', KeyVersion: "00", Exportability: 'E', KeyContext: '0'}
		with := func(f func(*tr31.Header)) tr31.Header { h := d0; f(&h); return h }
		other := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256KBPK})
		aes := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Exportable: true})
		sig := w.dataKey(t, w.cust, api.CreateDataKeyRequest{Type: api.KeyEd25519, Exportable: true})
		tampered := []byte(wrap(d0, 32))
		tampered[11] = 'S' // exportability E -> S: the MAC no longer matches
		imports := []struct {
			name   string
			req    api.ImportKeyRequest
			status int
			code   api.Code
		}{
			{"another KBPK", api.ImportKeyRequest{KeyBlock: payShieldBlock, KBPKID: other.KeyID}, 400, api.CodeDecryptFailed},
			{"changed header", api.ImportKeyRequest{KeyBlock: string(tampered), KBPKID: kbpk.KeyID}, 400, api.CodeDecryptFailed},
			{"not a KBPK", api.ImportKeyRequest{KeyBlock: payShieldBlock, KBPKID: aes.KeyID}, 400, api.CodeWrongKeyType},
			{"unknown KBPK", api.ImportKeyRequest{KeyBlock: payShieldBlock, KBPKID: "key_nope"}, 404, api.CodeNotFound},
			{"no KBPK", api.ImportKeyRequest{KeyBlock: payShieldBlock}, 400, api.CodeInvalidArgument},
			{"version B", api.ImportKeyRequest{KeyBlock: "B" + payShieldBlock[1:], KBPKID: kbpk.KeyID}, 400, api.CodeUnsupportedKeyBlock},
			{"length field", api.ImportKeyRequest{KeyBlock: "D0145" + payShieldBlock[5:], KBPKID: kbpk.KeyID}, 400, api.CodeInvalidKeyBlock},
			{"unknown key usage", api.ImportKeyRequest{KeyBlock: "D0144Z9" + payShieldBlock[7:], KBPKID: kbpk.KeyID}, 400, api.CodeInvalidKeyBlock},
			{"reserved field", api.ImportKeyRequest{KeyBlock: payShieldBlock[:15] + "1" + payShieldBlock[16:], KBPKID: kbpk.KeyID}, 400, api.CodeInvalidKeyBlock},
			{"PIN key", api.ImportKeyRequest{KeyBlock: wrap(with(func(h *tr31.Header) { h.KeyUsage = "P0" }), 32), KBPKID: kbpk.KeyID}, 400, api.CodeUnsupportedKeyBlock},
			{"AES-128 data key", api.ImportKeyRequest{KeyBlock: wrap(d0, 16), KBPKID: kbpk.KeyID}, 400, api.CodeUnsupportedKeyBlock},
			{"HMAC generate only", api.ImportKeyRequest{KeyBlock: wrap(tr31.Header{Version: 'D', KeyUsage: "M7", Algorithm: 'H', ModeOfUse: 'G', KeyVersion: "00", Exportability: 'E', KeyContext: '0',
				Blocks: []tr31.Block{{ID: "HM", Data: "21"}}}, 32), KBPKID: kbpk.KeyID}, 400, api.CodeUnsupportedKeyBlock},
			{"HMAC without HM", api.ImportKeyRequest{KeyBlock: wrap(tr31.Header{Version: 'D', KeyUsage: "M7", Algorithm: 'H', ModeOfUse: 'C', KeyVersion: "00", Exportability: 'E', KeyContext: '0'}, 32), KBPKID: kbpk.KeyID}, 400, api.CodeUnsupportedKeyBlock},
			{"component", api.ImportKeyRequest{KeyBlock: wrap(with(func(h *tr31.Header) { h.KeyVersion = "c1" }), 32), KBPKID: kbpk.KeyID}, 400, api.CodeUnsupportedKeyBlock},
			{"storage context", api.ImportKeyRequest{KeyBlock: wrap(with(func(h *tr31.Header) { h.KeyContext = '1' }), 32), KBPKID: kbpk.KeyID}, 400, api.CodeUnsupportedKeyBlock},
			{"type mismatch", api.ImportKeyRequest{KeyBlock: payShieldBlock, KBPKID: kbpk.KeyID, Type: api.KeyHMACSHA256}, 400, api.CodeUnsupportedKeyBlock},
			{"with an import token", api.ImportKeyRequest{KeyBlock: payShieldBlock, KBPKID: kbpk.KeyID, ImportToken: "dcit_x"}, 400, api.CodeInvalidArgument},
			// Check values that are not the key's (KC) or the KBPK's (KP):
			// a chance of 2^-40 that a random key's is all ones.
			{"KC of another key", api.ImportKeyRequest{KeyBlock: wrap(with(func(h *tr31.Header) { h.Blocks = []tr31.Block{{ID: "KC", Data: "01FFFFFFFFFF"}} }), 32), KBPKID: kbpk.KeyID}, 400, api.CodeInvalidKeyBlock},
			{"KP of another KBPK", api.ImportKeyRequest{KeyBlock: wrap(with(func(h *tr31.Header) { h.Blocks = []tr31.Block{{ID: "KP", Data: "01FFFFFFFFFF"}} }), 32), KBPKID: kbpk.KeyID}, 400, api.CodeInvalidKeyBlock},
		}
		for _, c := range imports {
			t.Run("import "+c.name, func(t *testing.T) {
				_, err := importTR31(w.cust, c.req)
				kmstest.WantError(t, err, c.status, c.code)
			})
		}
		_, err := exportTR31(w.cust, sig.EKB, kbpk.KeyID, "")
		kmstest.WantError(t, err, 400, api.CodeUnsupportedKeyBlock)
		_, err = exportTR31(w.cust, aes.EKB, sig.KeyID, "")
		kmstest.WantError(t, err, 400, api.CodeWrongKeyType)
		_, err = exportTR31(w.cust, aes.EKB, aes.KeyID, "")
		kmstest.WantError(t, err, 400, api.CodeInvalidArgument)
		_, err = exportTR31(w.cust, aes.EKB, kbpk.KeyID, "X")
		kmstest.WantError(t, err, 400, api.CodeInvalidArgument)
		// Another custodian of the tenant may not use the KBPK.
		ledger, _ := w.env.App(t, "acme", "ledger", api.RoleCustodian)
		var mine api.DataKey
		ledger.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Exportable: true}, &mine)
		_, err = exportTR31(ledger, mine.EKB, kbpk.KeyID, "")
		kmstest.WantError(t, err, 404, api.CodeNotFound)
	})

	t.Run("audited", func(t *testing.T) {
		var page api.AuditPage
		w.env.Admin.MustDo(t, "GET", "/v1/audit?after=0", nil, &page)
		var exports, imports, refused int
		for _, r := range page.Records {
			switch {
			case r.Action == "datakey.export" && r.Outcome == "ok" && r.KeyID != "":
				exports++
			case r.Action == "datakey.import" && r.Outcome == "ok" && r.KeyID != "":
				imports++
			case r.Action == "datakey.import" && r.Code == string(api.CodeDecryptFailed):
				refused++
			}
		}
		if exports < 4 || imports < 5 || refused < 2 {
			t.Fatalf("audit holds %d exports, %d imports, %d refused imports", exports, imports, refused)
		}
	})
}
