package kms_test

import (
	"bytes"
	"crypto/hpke"
	"crypto/rsa"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/secret"
)

func importParams(t *testing.T, c *kmstest.Client, tenant string) api.ImportParameters {
	t.Helper()
	var p api.ImportParameters
	c.MustDo(t, "GET", "/v1/tenants/"+tenant+"/import-parameters", nil, &p)
	return p
}

// importInfo mirrors the KMS's HPKE info for imports (docs/import-export.md).
func importInfo(tenant string) []byte { return []byte("dcaas/v1 import\x00" + tenant) }

func TestBringYourOwnKey(t *testing.T) {
	w := newWorld(t, kcrypto.DefaultKEM())
	material := kcrypto.Random(32)

	for _, scheme := range []api.Wrapping{api.WrappingRSAAES, api.WrappingHPKE} {
		t.Run(string(scheme), func(t *testing.T) {
			p := importParams(t, w.cust, "acme")
			var wrapped []byte
			var err error
			if scheme == api.WrappingRSAAES {
				pub, perr := kcrypto.ParseRSAPublicKeyPEM(p.RSAPublicKeyPEM)
				if perr != nil || pub.N.BitLen() != 4096 {
					t.Fatalf("import RSA key: %v, %d bits", perr, pub.N.BitLen())
				}
				wrapped, err = kcrypto.WrapRSAAES(pub, material)
			} else {
				pub, perr := kcrypto.ParseKEMPublicKey(p.HPKEPublicKey)
				if perr != nil {
					t.Fatal(perr)
				}
				wrapped, err = kcrypto.WrapExport(kcrypto.WrappingHPKE, pub, importInfo("acme"), secret.Copy(material))
			}
			if err != nil {
				t.Fatal(err)
			}
			req := api.ImportKeyRequest{ImportToken: p.ImportToken, Wrapping: scheme, WrappedMaterial: wrapped, Type: api.KeyAES256GCM, Exportable: true}
			var dk api.DataKey
			w.cust.MustDo(t, "POST", "/v1/datakeys/import", req, &dk)
			if dk.Metadata.Labels["dcaas.origin"] != "imported" || !dk.Metadata.Exportable {
				t.Fatalf("metadata = %+v", dk.Metadata)
			}
			// The imported key is an ordinary EKB: it releases, and holds
			// exactly the material.
			got, err := w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, dk.EKB)
			if err != nil {
				t.Fatal(err)
			}
			dek := w.side.Unwrap(t, &got)[0]
			if !bytes.Equal(dek.Expose(), material) {
				t.Fatal("the imported key is not the material")
			}
			// Single use.
			kmstest.WantError(t, w.cust.Do("POST", "/v1/datakeys/import", req, nil), 409, api.CodeAlreadyUsed)
		})
	}

	t.Run("refusals", func(t *testing.T) {
		p := importParams(t, w.cust, "acme")
		pub, _ := kcrypto.ParseRSAPublicKeyPEM(p.RSAPublicKeyPEM)
		short, _ := kcrypto.WrapRSAAES(pub, material[:16])
		req := api.ImportKeyRequest{ImportToken: p.ImportToken, Wrapping: api.WrappingRSAAES, WrappedMaterial: short, Type: api.KeyAES256GCM}
		kmstest.WantError(t, w.cust.Do("POST", "/v1/datakeys/import", req, nil), 400, api.CodeInvalidArgument)

		p = importParams(t, w.cust, "acme")
		good, _ := kcrypto.WrapRSAAES(pub, material)
		bad := bytes.Clone(good)
		bad[len(bad)-1] ^= 1
		req = api.ImportKeyRequest{ImportToken: p.ImportToken, Wrapping: api.WrappingRSAAES, WrappedMaterial: bad, Type: api.KeyAES256GCM}
		kmstest.WantError(t, w.cust.Do("POST", "/v1/datakeys/import", req, nil), 400, api.CodeDecryptFailed)

		req = api.ImportKeyRequest{ImportToken: importParams(t, w.cust, "acme").ImportToken, Wrapping: "pkcs1", WrappedMaterial: good, Type: api.KeyAES256GCM}
		kmstest.WantError(t, w.cust.Do("POST", "/v1/datakeys/import", req, nil), 400, api.CodeInvalidArgument)

		// Expired token.
		p = importParams(t, w.cust, "acme")
		w.clock.Advance(16 * time.Minute)
		req = api.ImportKeyRequest{ImportToken: p.ImportToken, Wrapping: api.WrappingRSAAES, WrappedMaterial: good, Type: api.KeyAES256GCM}
		kmstest.WantError(t, w.cust.Do("POST", "/v1/datakeys/import", req, nil), 410, api.CodeExpired)

		// Another custodian's token, another tenant's parameters.
		other, _ := w.env.App(t, "acme", "ledger", api.RoleCustodian)
		req.ImportToken = importParams(t, other, "acme").ImportToken
		kmstest.WantError(t, w.cust.Do("POST", "/v1/datakeys/import", req, nil), 403, api.CodeForbidden)
		kmstest.WantError(t, w.cust.Do("GET", "/v1/tenants/globex/import-parameters", nil, nil), 403, api.CodeWrongTenant)
	})
}

func TestSecureExport(t *testing.T) {
	w := newWorld(t, kcrypto.DefaultKEM())
	var exp, fixed api.DataKey
	w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Exportable: true}, &exp)
	w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &fixed)
	got, err := w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, exp.EKB)
	if err != nil {
		t.Fatal(err)
	}
	want := w.side.Unwrap(t, &got)[0]

	rsaKey, err := kcrypto.GenerateImportRSAKey()
	if err != nil {
		t.Fatal(err)
	}
	pemPub, _ := kcrypto.RSAPublicKeyPEM(&rsaKey.PublicKey)
	var out api.ExportResponse
	w.cust.MustDo(t, "POST", "/v1/datakeys/export", api.ExportRequest{EKB: exp.EKB, Wrapping: api.WrappingRSAAES, PublicKeyPEM: pemPub}, &out)
	m, err := kcrypto.UnwrapRSAAES(rsaKey, out.WrappedMaterial)
	if err != nil || !m.Equal(want) {
		t.Fatalf("RSA export does not open to the key: %v", err)
	}

	hk, _ := kcrypto.GenerateKEMKey(kcrypto.DefaultKEM())
	pub, _ := kcrypto.MarshalKEMPublicKey(hk.PublicKey())
	w.cust.MustDo(t, "POST", "/v1/datakeys/export", api.ExportRequest{EKB: exp.EKB, Wrapping: api.WrappingHPKE, PublicKey: &pub}, &out)
	info := append([]byte("dcaas/v1 export\x00"), []byte(`["acme","`+exp.KeyID+`",1]`)...)
	pt, err := hpke.Open(hk, hpke.HKDFSHA256(), hpke.AES256GCM(), info, out.WrappedMaterial)
	if err != nil || !bytes.Equal(pt, want.Expose()) {
		t.Fatalf("HPKE export does not open to the key: %v", err)
	}

	kmstest.WantError(t, w.cust.Do("POST", "/v1/datakeys/export", api.ExportRequest{EKB: fixed.EKB, Wrapping: api.WrappingRSAAES, PublicKeyPEM: pemPub}, nil), 403, api.CodeForbidden)
	other, _ := w.env.App(t, "acme", "ledger", api.RoleCustodian)
	kmstest.WantError(t, other.Do("POST", "/v1/datakeys/export", api.ExportRequest{EKB: exp.EKB, Wrapping: api.WrappingRSAAES, PublicKeyPEM: pemPub}, nil), 403, api.CodeForbidden)
	small, _ := rsa.GenerateKey(randReader{}, 2048)
	smallPEM, _ := kcrypto.RSAPublicKeyPEM(&small.PublicKey)
	kmstest.WantError(t, w.cust.Do("POST", "/v1/datakeys/export", api.ExportRequest{EKB: exp.EKB, Wrapping: api.WrappingRSAAES, PublicKeyPEM: smallPEM}, nil), 400, api.CodeInvalidArgument)
}

func TestMLDSA65Keys(t *testing.T) {
	w := newWorld(t, kcrypto.DefaultKEM())
	err := w.cust.Do("POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyMLDSA65}, nil)
	if kcrypto.FIPS() {
		kmstest.WantError(t, err, 400, api.CodeInvalidArgument)
		return
	}
	var dk api.DataKey
	w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyMLDSA65}, &dk)
	if dk.PublicKeyPEM == "" {
		t.Fatal("no public key for an ml-dsa-65 key")
	}
	var sig api.SignResponse
	w.cust.MustDo(t, "POST", "/v1/crypto/sign", api.SignRequest{KeyRef: api.KeyRef{EKB: dk.EKB}, Message: []byte("m")}, &sig)
	if len(sig.Signature) != kcrypto.MLDSA65SignatureSize {
		t.Fatalf("signature is %d bytes", len(sig.Signature))
	}
	var v api.ValidResponse
	w.cust.MustDo(t, "POST", "/v1/crypto/verify", api.VerifyRequest{KeyRef: api.KeyRef{EKB: dk.EKB}, Message: []byte("m"), Signature: sig.Signature}, &v)
	if !v.Valid {
		t.Fatal("ml-dsa-65 signature does not verify")
	}
	// It releases to a sidecar like any key.
	if _, err := w.rewrap(w.cust, w.side.Enrollment.WrappingCertPEM, dk.EKB); err != nil {
		t.Fatal(err)
	}
}

// randReader satisfies rsa.GenerateKey's (ignored) io.Reader argument.
type randReader struct{}

func (randReader) Read(p []byte) (int, error) { copy(p, kcrypto.Random(len(p))); return len(p), nil }
