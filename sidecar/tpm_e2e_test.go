package sidecar_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/enclave/tpm"
	"github.com/dcaas/dcaas/internal/enclave/tpm/tpmsim"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/sidecar"
)

// tpmWorld is a KMS whose attestation policy binds one simulated TPM
// platform to custodian payments-api.
type tpmWorld struct {
	env   *kmstest.Env
	clock *kmstest.Clock
	cust  *kmstest.Client
	creds api.AppCredentials
	sim   transport.TPMCloser
	dir   string
	enc   *tpm.Enclave
}

func newTPMWorld(t *testing.T, allowOurAK bool) *tpmWorld {
	t.Helper()
	w, fp := openTPMPlatform(t)
	if !allowOurAK { // another platform's fingerprint
		other := byte('0')
		if fp[0] == '0' {
			other = '1'
		}
		fp = string(other) + fp[1:]
	}
	w.startKMS(t, &kms.AttestationPolicy{Platforms: []kms.Platform{{AKFingerprint: fp, CustodianDN: "CN=payments-api,O=acme"}}})
	return w
}

// openTPMPlatform opens a TPM simulator and a TPM enclave on it in a new
// directory, both closed when the test ends, and returns them as a world
// with no KMS yet, and the fingerprint of the enclave's AK.
func openTPMPlatform(t *testing.T) (*tpmWorld, string) {
	t.Helper()
	sim, err := tpmsim.Open()
	if err != nil {
		t.Fatalf("TPM simulator: %v (run scripts/deps.sh: it needs gcc and libssl-dev)", err)
	}
	t.Cleanup(func() { sim.Close() })
	w := &tpmWorld{sim: sim, dir: filepath.Join(t.TempDir(), "tpm"), clock: kmstest.NewClock()}
	if w.enc, err = tpm.Open(t.Context(), sim, w.dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.enc.Close() })
	ak, err := w.enc.AKPublic(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return w, tpm.AKFingerprint(ak)
}

// startKMS starts the world's KMS on its clock with the attestation policy
// p, with tenant acme and its custodian payments-api.
func (w *tpmWorld) startKMS(t *testing.T, p *kms.AttestationPolicy) {
	t.Helper()
	w.env = kmstest.Start(t, func(o *kms.Options) {
		o.Now = w.clock.Now
		o.Config.Attestation = p
	})
	w.env.Tenant(t, "acme")
	w.cust, w.creds = w.env.App(t, "acme", "payments-api", api.RoleCustodian)
}

func (w *tpmWorld) sidecar(t *testing.T, dataDir string) (*sidecar.Sidecar, error) {
	return sidecar.New(t.Context(), sidecar.Config{
		KMSURL: w.env.URL, CAPEM: w.env.CAPEM, DataDir: dataDir, Enclave: w.enc, Attest: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
}

func TestTPMAttestedSidecar(t *testing.T) {
	w := newTPMWorld(t, true)
	dataDir := t.TempDir()
	sc, err := w.sidecar(t, dataDir)
	if err != nil {
		t.Fatalf("attested enrollment: %v", err)
	}
	st := sc.Status(t.Context())
	if st.Enclave != api.EnclaveTPM || st.CustodianDN != w.creds.DN {
		t.Fatalf("status = %+v", st)
	}
	var ins api.Instances
	w.cust.MustDo(t, "GET", "/v1/instances", nil, &ins)
	if len(ins.Instances) != 1 || ins.Instances[0].Enclave != api.EnclaveTPM {
		t.Fatalf("instances = %+v", ins)
	}

	// Keys wrapped to the TPM-held transport key (DHKEM P-256, ECDH in the TPM).
	var dk api.DataKey
	w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &dk)
	e2e.LoadKeys(t, w.cust, sc, dk.EKB)
	ct, err := sc.Encrypt(t.Context(), dk.KeyID, []byte("pan"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Stateless: a sealed key survives a restart of the sidecar and the
	// enclave because the LMK is sealed to the TPM.
	sealed, err := sc.Seal(t.Context(), []string{dk.KeyID})
	if err != nil {
		t.Fatal(err)
	}
	sc.Close()
	w.enc.Close()
	if w.enc, err = tpm.Open(t.Context(), w.sim, w.dir); err != nil {
		t.Fatal(err)
	}
	// No token, no attestation needed: the enrollment is reused because the
	// enclave's keys persisted in the TPM.
	sc2, err := sidecar.New(t.Context(), sidecar.Config{KMSURL: w.env.URL, CAPEM: w.env.CAPEM, DataDir: dataDir, Enclave: w.enc, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("restart with a persistent TPM enclave: %v", err)
	}
	defer sc2.Close()
	if sc2.InstanceID() != sc.InstanceID() {
		t.Fatalf("instance changed across a restart: %s → %s", sc.InstanceID(), sc2.InstanceID())
	}
	var batch *api.BatchResponse
	batch, err = sc2.Batch(t.Context(), &api.BatchRequest{Ops: []api.BatchItem{{Op: api.OpDecrypt, SealedKey: sealed[0].SealedKey, Ciphertext: ct}}})
	if err != nil || batch.Results[0].Error != nil || !bytes.Equal(batch.Results[0].Plaintext, []byte("pan")) {
		t.Fatalf("sealed key after restart: %+v, %v", batch, err)
	}

	// A restart with the CA file edited (here: another CA added) still
	// reuses the enrollment — the sidecar trusts the file and its stored
	// bundle together — and the first trust poll stores the KMS's bundle
	// as obtained with the new file, which it then trusts alone.
	sc2.Close()
	w.enc.Close()
	if w.enc, err = tpm.Open(t.Context(), w.sim, w.dir); err != nil {
		t.Fatal(err)
	}
	edited := append(slices.Clone(w.env.CAPEM), newTestCA(t, "another").pem...)
	sc3, err := sidecar.New(t.Context(), sidecar.Config{KMSURL: w.env.URL, CAPEM: edited, DataDir: dataDir, Enclave: w.enc,
		HealthInterval: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("restart with an edited CA file: %v", err)
	}
	defer sc3.Close()
	if sc3.InstanceID() != sc.InstanceID() {
		t.Fatalf("instance changed across a restart with an edited CA file: %s → %s", sc.InstanceID(), sc3.InstanceID())
	}
	sum := sha256.Sum256(edited)
	eventually(t, "storing the bundle with the edited CA file's digest", func() error {
		b, err := os.ReadFile(filepath.Join(dataDir, "enrollment.json"))
		if err != nil {
			return err
		}
		var e struct {
			ConfigCA string `json:"config_ca_sha256"`
		}
		if err := json.Unmarshal(b, &e); err != nil {
			return err
		}
		if e.ConfigCA != hex.EncodeToString(sum[:]) {
			return fmt.Errorf("stored config_ca_sha256 %q", e.ConfigCA)
		}
		return nil
	})
}

func TestTPMAttestationRefusals(t *testing.T) {
	t.Run("unknown platform", func(t *testing.T) {
		w := newTPMWorld(t, false)
		_, err := w.sidecar(t, t.TempDir())
		kmstest.WantError(t, err, 403, api.CodeAttestationFailed)
		var ins api.Instances
		w.env.Admin.MustDo(t, "GET", "/v1/instances", nil, &ins)
		if len(ins.Instances) != 0 {
			t.Fatalf("a refused enrollment registered %d instances", len(ins.Instances))
		}
	})
	t.Run("replayed, tampered and stale evidence", func(t *testing.T) {
		w := newTPMWorld(t, true)
		anon := w.env.Anonymous()
		evidence := func() api.EnrollRequest {
			var ch api.Challenge
			anon.MustDo(t, "POST", "/v1/enrollment/challenge", nil, &ch)
			return attestedRequest(t, w.enc, ch.Nonce)
		}
		req := evidence()
		var e api.Enrollment
		anon.MustDo(t, "POST", "/v1/enrollment", req, &e)
		// The same evidence again: the challenge was used.
		kmstest.WantError(t, anon.Do("POST", "/v1/enrollment", req, nil), 409, api.CodeAlreadyUsed)
		// A flipped quote byte.
		req = evidence()
		req.Attestation.Quote[len(req.Attestation.Quote)-1] ^= 1
		kmstest.WantError(t, anon.Do("POST", "/v1/enrollment", req, nil), 403, api.CodeAttestationFailed)
		// Evidence for other keys than the request's (a swapped wrapping key).
		req = evidence()
		other, _ := kcrypto.GenerateKEMKey(api.KEMP256)
		req.WrappingPublicKey.PublicKey = other.PublicKey().Bytes()
		kmstest.WantError(t, anon.Do("POST", "/v1/enrollment", req, nil), 403, api.CodeAttestationFailed)
		// A stale challenge.
		req = evidence()
		w.clock.Advance(10 * 60e9)
		kmstest.WantError(t, anon.Do("POST", "/v1/enrollment", req, nil), 410, api.CodeExpired)
		// A nonce the KMS never issued.
		req = attestedRequest(t, w.enc, bytes.Repeat([]byte{7}, 32))
		kmstest.WantError(t, anon.Do("POST", "/v1/enrollment", req, nil), 403, api.CodeInvalidToken)
	})
}

// attestedRequest builds an enrollment request with TPM evidence over nonce.
func attestedRequest(t *testing.T, enc *tpm.Enclave, nonce []byte) api.EnrollRequest {
	t.Helper()
	ctx := context.Background()
	signer, err := enc.IdentityKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "s"}}, signer)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := enc.TransportKey(ctx, api.KEMP256)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kcrypto.MarshalKEMPublicKey(tk.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(signer.Public())
	var att enclave.Attester = enc
	ev, err := att.Attest(ctx, nonce, spki, pub)
	if err != nil {
		t.Fatal(err)
	}
	return api.EnrollRequest{
		CSRPEM:            string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
		WrappingPublicKey: pub,
		Attestation:       ev,
	}
}

// TestRevokePlatform: an admin revokes every live instance enrolled with a
// TPM attestation key (POST /v1/instances/revoke-platform) — a platform
// taken out of service keeps what it holds otherwise, since removing its
// AK from the policy only stops new enrollments — and the sidecar stops
// serving at its next poll. The instance listing names the AK; a malformed
// fingerprint and a custodian are refused; another AK revokes nothing.
func TestRevokePlatform(t *testing.T) {
	w, fp := openTPMPlatform(t)
	w.startKMS(t, &kms.AttestationPolicy{Platforms: []kms.Platform{{AKFingerprint: fp, CustodianDN: "CN=payments-api,O=acme"}}})
	sc, err := sidecar.New(t.Context(), sidecar.Config{
		KMSURL: w.env.URL, CAPEM: w.env.CAPEM, DataDir: t.TempDir(), Enclave: w.enc, Attest: true,
		HealthInterval: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("attested enrollment: %v", err)
	}
	defer sc.Close()
	var ins api.Instances
	w.env.Admin.MustDo(t, "GET", "/v1/instances", nil, &ins)
	if len(ins.Instances) != 1 || ins.Instances[0].AKFingerprint != fp {
		t.Fatalf("instances = %+v, want one naming AK %s", ins, fp)
	}
	kmstest.WantError(t, w.env.Admin.Do("POST", "/v1/instances/revoke-platform", api.RevokePlatformRequest{AKFingerprint: "not hex"}, nil), 400, api.CodeInvalidArgument)
	kmstest.WantError(t, w.cust.Do("POST", "/v1/instances/revoke-platform", api.RevokePlatformRequest{AKFingerprint: fp}, nil), 403, api.CodeForbidden)
	other := strings.Repeat("0", 64)
	var out api.RevokedInstances
	w.env.Admin.MustDo(t, "POST", "/v1/instances/revoke-platform", api.RevokePlatformRequest{AKFingerprint: other}, &out)
	if len(out.Revoked) != 0 || sc.Status(t.Context()).Revoked {
		t.Fatalf("another AK revoked %v", out.Revoked)
	}
	w.env.Admin.MustDo(t, "POST", "/v1/instances/revoke-platform", api.RevokePlatformRequest{AKFingerprint: strings.ToUpper(fp)}, &out)
	if len(out.Revoked) != 1 || out.Revoked[0] != sc.InstanceID() {
		t.Fatalf("revoke-platform = %v, want [%s]", out.Revoked, sc.InstanceID())
	}
	eventually(t, "the sidecar of the revoked platform stops", func() error {
		if !sc.Status(t.Context()).Revoked {
			return fmt.Errorf("still serving")
		}
		return nil
	})
	w.env.Admin.MustDo(t, "POST", "/v1/instances/revoke-platform", api.RevokePlatformRequest{AKFingerprint: fp}, &out)
	if len(out.Revoked) != 0 {
		t.Fatalf("a second revoke-platform revoked %v again", out.Revoked)
	}
}
