package sidecar_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/enclave/tpm"
	"github.com/dcaas/dcaas/internal/enclave/tpm/tpmsim"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/sidecar"
)

// Attestation-bound release (issue 16 item 5), end to end: a real KMS over
// HTTPS, a TPM sidecar on the TPM simulator, a token-enrolled software
// sidecar, keys whose policies carry release conditions.

const custodianDN = "CN=payments-api,O=acme"

// attestWorld is a TPM simulator and its enclave, and a KMS started with
// the attestation policy that policy returns for the enclave's AK and PCRs.
type attestWorld struct {
	*tpmWorld
	ak   string         // the enclave's AK fingerprint
	pcrs map[int][]byte // the simulator's PCRs 0-7
}

func newAttestWorld(t *testing.T, policy func(w *attestWorld) *kms.AttestationPolicy) *attestWorld {
	t.Helper()
	tw, ak := openTPMPlatform(t)
	w := &attestWorld{tpmWorld: tw, ak: ak}
	w.pcrs = attestedRequest(t, w.enc, make([]byte, 32)).Attestation.PCRs
	w.startKMS(t, policy(w))
	return w
}

// pcrHex is PCR i of the simulator in hex, or another value when !match.
func (w *attestWorld) pcrHex(i int, match bool) string {
	v := slices.Clone(w.pcrs[i])
	if !match {
		v[0] ^= 0xff
	}
	return hex.EncodeToString(v)
}

// softwareSidecar enrolls a software-enclave sidecar for the custodian
// with a token.
func (w *attestWorld) softwareSidecar(t *testing.T) *sidecar.Sidecar {
	t.Helper()
	var tok api.EnrollmentToken
	w.cust.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{}, &tok)
	sc, err := sidecar.New(t.Context(), sidecar.Config{
		KMSURL: w.env.URL, CAPEM: w.env.CAPEM, DataDir: t.TempDir(), EnrollToken: sidecar.Secret([]byte(tok.Token)),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc
}

// tpmSidecar enrolls the TPM sidecar with attestation (and ekCert, if set).
func (w *attestWorld) tpmSidecar(t *testing.T, ekCert []byte) (*sidecar.Sidecar, error) {
	t.Helper()
	sc, err := sidecar.New(t.Context(), sidecar.Config{
		KMSURL: w.env.URL, CAPEM: w.env.CAPEM, DataDir: t.TempDir(), Enclave: w.enc, Attest: true, EKCert: ekCert,
		ReattestInterval: -1, Now: w.clock.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err == nil {
		t.Cleanup(func() { sc.Close() })
	}
	return sc, err
}

// key creates a key the custodian may use, with release conditions r.
func (w *attestWorld) key(t *testing.T, r *api.ReleaseConditions) api.DataKey {
	t.Helper()
	var dk api.DataKey
	w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Policy: &api.Policy{
		Rules:   []api.PolicyRule{{Principals: []string{custodianDN}, Actions: []api.Action{api.ActionEncrypt, api.ActionDecrypt}}},
		Release: r,
	}}, &dk)
	return dk
}

// rewrap rewraps dk to sc and imports it, or returns the KMS's refusal.
func (w *attestWorld) rewrap(t *testing.T, sc *sidecar.Sidecar, dk api.DataKey) error {
	t.Helper()
	var wrapped api.WrappedKeys
	if err := w.cust.Do("POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{dk.EKB}, WrappingCertPEM: sc.WrappingCertificatePEM()}, &wrapped); err != nil {
		return err
	}
	_, err := sc.ImportKeys(t.Context(), &wrapped)
	return err
}

// load grants dk to sc and loads it with the grant (the grant flow).
func (w *attestWorld) load(t *testing.T, sc *sidecar.Sidecar, dk api.DataKey) error {
	t.Helper()
	g, err := w.cust.Grant(api.GrantRequest{InstanceID: sc.InstanceID(), EKBs: [][]byte{dk.EKB}})
	if err != nil {
		return err
	}
	_, err = sc.LoadWithGrant(t.Context(), sidecar.Secret([]byte(g)), [][]byte{dk.EKB}, nil)
	return err
}

func TestAttestationBoundRelease(t *testing.T) {
	w := newAttestWorld(t, func(w *attestWorld) *kms.AttestationPolicy {
		return &kms.AttestationPolicy{
			Platforms: []kms.Platform{{AKFingerprint: w.ak, CustodianDN: custodianDN}},
			Profiles: map[string]map[string]string{
				"prod-pcrs":  {"0": w.pcrHex(0, true), "7": w.pcrHex(7, true)},
				"other-pcrs": {"0": w.pcrHex(0, false)},
			},
		}
	})
	tpmSC, err := w.tpmSidecar(t, nil)
	if err != nil {
		t.Fatalf("attested enrollment: %v", err)
	}
	softSC := w.softwareSidecar(t)

	var ins api.Instances
	w.cust.MustDo(t, "GET", "/v1/instances", nil, &ins)
	for _, in := range ins.Instances {
		switch in.InstanceID {
		case tpmSC.InstanceID():
			if in.AttestedAt == nil || !slices.Equal(in.AttestationProfiles, []string{"prod-pcrs"}) {
				t.Fatalf("TPM instance = %+v, want attested with profile prod-pcrs only", in)
			}
		case softSC.InstanceID():
			if in.AttestedAt != nil || len(in.AttestationProfiles) > 0 {
				t.Fatalf("software instance reads attested: %+v", in)
			}
		}
	}

	t.Run("enclave tpm", func(t *testing.T) {
		dk := w.key(t, &api.ReleaseConditions{Enclave: api.EnclaveTPM})
		if err := w.rewrap(t, tpmSC, dk); err != nil {
			t.Fatalf("rewrap to the TPM sidecar: %v", err)
		}
		if _, err := tpmSC.Encrypt(t.Context(), dk.KeyID, []byte("pan"), nil); err != nil {
			t.Fatal(err)
		}
		if err := w.load(t, tpmSC, dk); err != nil {
			t.Fatalf("load into the TPM sidecar: %v", err)
		}
		// The software sidecar: refused by rewrap and at the grant.
		kmstest.WantError(t, w.rewrap(t, softSC, dk), 403, api.CodeAttestationRequired)
		kmstest.WantError(t, w.load(t, softSC, dk), 403, api.CodeAttestationRequired)
		// A retained key named by id: refused at the grant too.
		var retained api.DataKey
		w.cust.MustDo(t, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Retain: true, Policy: &api.Policy{
			Rules:   []api.PolicyRule{{Principals: []string{custodianDN}, Actions: []api.Action{api.ActionEncrypt}}},
			Release: &api.ReleaseConditions{Enclave: api.EnclaveTPM},
		}}, &retained)
		_, err := w.cust.Grant(api.GrantRequest{InstanceID: softSC.InstanceID(), KeyIDs: []string{retained.KeyID}})
		kmstest.WantError(t, err, 403, api.CodeAttestationRequired)
		g := w.cust.MustGrant(t, api.GrantRequest{InstanceID: tpmSC.InstanceID(), KeyIDs: []string{retained.KeyID}})
		if _, err := tpmSC.LoadWithGrant(t.Context(), sidecar.Secret([]byte(g)), nil, []string{retained.KeyID}); err != nil {
			t.Fatalf("retained key into the TPM sidecar: %v", err)
		}
		// A key without conditions still reaches it.
		plain := w.key(t, nil)
		if err := w.rewrap(t, softSC, plain); err != nil {
			t.Fatalf("a key without release conditions: %v", err)
		}
		// In a batch the refusal names the EKB.
		var wrapped api.WrappedKeys
		err = w.cust.Do("POST", "/v1/keys/rewrap", api.RewrapRequest{EKBs: [][]byte{plain.EKB, dk.EKB}, WrappingCertPEM: softSC.WrappingCertificatePEM()}, &wrapped)
		kmstest.WantError(t, err, 403, api.CodeAttestationRequired)
		if msg := kmstest.APIError(err).Message; msg[:6] != "EKB 1:" {
			t.Fatalf("batch refusal = %q, want it to name EKB 1", msg)
		}
	})

	// Seed derivation (SeedKDF v2 binds the policy, release conditions
	// included): the derived key is released only where they are met.
	t.Run("derive", func(t *testing.T) {
		seed := make([]byte, 32)
		if _, err := rand.Read(seed); err != nil {
			t.Fatal(err)
		}
		sd := api.Seed{Seed: seed, Type: api.KeyAES256GCM, Policy: &api.Policy{
			Rules:   []api.PolicyRule{{Principals: []string{custodianDN}, Actions: []api.Action{api.ActionEncrypt, api.ActionDecrypt}}},
			Release: &api.ReleaseConditions{Enclave: api.EnclaveTPM},
		}}
		derive := func(sc *sidecar.Sidecar) ([]string, error) {
			g, err := w.cust.Grant(api.GrantRequest{InstanceID: sc.InstanceID(), Seeds: [][]byte{seed}})
			if err != nil {
				return nil, err
			}
			return sc.Derive(t.Context(), sidecar.Secret([]byte(g)), []api.Seed{sd})
		}
		_, err := derive(softSC)
		kmstest.WantError(t, err, 403, api.CodeAttestationRequired)
		ids, err := derive(tpmSC)
		if err != nil || len(ids) != 1 {
			t.Fatalf("derive on the TPM sidecar = %v, %v; want one key", ids, err)
		}
		if _, err := tpmSC.Encrypt(t.Context(), ids[0], []byte("pan"), nil); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("profile", func(t *testing.T) {
		ok := w.key(t, &api.ReleaseConditions{AttestationProfile: "prod-pcrs"})
		if err := w.rewrap(t, tpmSC, ok); err != nil {
			t.Fatalf("profile prod-pcrs: %v", err)
		}
		kmstest.WantError(t, w.rewrap(t, softSC, ok), 403, api.CodeAttestationRequired)
		other := w.key(t, &api.ReleaseConditions{AttestationProfile: "other-pcrs"})
		kmstest.WantError(t, w.rewrap(t, tpmSC, other), 403, api.CodeAttestationRequired)
		kmstest.WantError(t, w.load(t, tpmSC, other), 403, api.CodeAttestationRequired)
		undefined := w.key(t, &api.ReleaseConditions{AttestationProfile: "nobody-defined-this"})
		kmstest.WantError(t, w.rewrap(t, tpmSC, undefined), 403, api.CodeAttestationRequired)
	})

	t.Run("age", func(t *testing.T) {
		dk := w.key(t, &api.ReleaseConditions{MaxAttestationAgeSeconds: 600})
		if err := w.rewrap(t, tpmSC, dk); err != nil {
			t.Fatalf("fresh attestation: %v", err)
		}
		// A grant made while fresh, used after the attestation aged out.
		g := w.cust.MustGrant(t, api.GrantRequest{InstanceID: tpmSC.InstanceID(), EKBs: [][]byte{dk.EKB}, TTLSeconds: 3600})
		w.clock.Advance(20 * time.Minute)
		kmstest.WantError(t, w.rewrap(t, tpmSC, dk), 403, api.CodeAttestationRequired)
		_, err := tpmSC.LoadWithGrant(t.Context(), sidecar.Secret([]byte(g)), [][]byte{dk.EKB}, nil)
		kmstest.WantError(t, err, 403, api.CodeAttestationRequired)
		// A fresh quote over a new challenge, and the key is released again.
		got, err := tpmSC.Reattest(t.Context())
		if err != nil {
			t.Fatalf("re-attestation: %v", err)
		}
		if !got.AttestedAt.Equal(w.clock.Now().UTC()) || !slices.Equal(got.AttestationProfiles, []string{"prod-pcrs"}) {
			t.Fatalf("re-attestation = %+v", got)
		}
		if err := w.rewrap(t, tpmSC, dk); err != nil {
			t.Fatalf("after re-attestation: %v", err)
		}
		if err := w.load(t, tpmSC, dk); err != nil {
			t.Fatalf("load after re-attestation: %v", err)
		}
		// A software sidecar cannot re-attest.
		if _, err := softSC.Reattest(t.Context()); err == nil {
			t.Fatal("a software sidecar re-attested")
		}
	})

	t.Run("scheduled re-attestation", func(t *testing.T) {
		// A long-running sidecar re-attests by itself every
		// ReattestInterval, so an age-bound key keeps reaching it.
		sc, err := sidecar.New(t.Context(), sidecar.Config{
			KMSURL: w.env.URL, CAPEM: w.env.CAPEM, DataDir: t.TempDir(), Enclave: w.enc, Attest: true,
			ReattestInterval: 5 * time.Minute, HealthInterval: 20 * time.Millisecond, Now: w.clock.Now,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		dk := w.key(t, &api.ReleaseConditions{MaxAttestationAgeSeconds: 600})
		if err := w.rewrap(t, sc, dk); err != nil {
			t.Fatalf("fresh: %v", err)
		}
		w.clock.Advance(20 * time.Minute)
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := w.rewrap(t, sc, dk)
			if err == nil {
				break
			}
			if api.CodeOf(err) != api.CodeAttestationRequired || time.Now().After(deadline) {
				t.Fatalf("the sidecar did not re-attest by itself: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("re-attestation by a token-enrolled instance", func(t *testing.T) {
		// Genuine TPM evidence over a fresh challenge, sent by an instance
		// that enrolled with a token: it stays unattested.
		var ch api.Challenge
		w.env.Anonymous().MustDo(t, "POST", "/v1/enrollment/challenge", nil, &ch)
		req := attestedRequest(t, w.enc, ch.Nonce)
		soft := softwareClient(t, w)
		kmstest.WantError(t, soft.Do("POST", "/v1/instances/self/attest", api.ReattestRequest{Attestation: req.Attestation}, nil), 400, api.CodeInvalidArgument)
	})
}

// softwareClient is a KMS client authenticated as a token-enrolled
// sidecar instance of the custodian.
func softwareClient(t *testing.T, w *attestWorld) *kmstest.Client {
	t.Helper()
	var tok api.EnrollmentToken
	w.cust.MustDo(t, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{}, &tok)
	fake := kmstest.NewFakeSidecar(t, api.KEMP256)
	fake.Enroll(t, w.env.Anonymous(), tok.Token)
	return fake.Client(t, w.env)
}

// testCA is a certificate authority playing a TPM manufacturer.
type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	pem  string
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " EK root CA", Organization: []string{name}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{key: key, cert: cert, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// ekCert issues an EK certificate for pub, as a manufacturer does: the
// tcg-kp-EKCertificate extended key usage, key usage keyAgreement.
func (ca *testCA) ekCert(t *testing.T, pub any) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:           x509.KeyUsageKeyAgreement,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{{2, 23, 133, 8, 1}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestEKCertificateChain(t *testing.T) {
	mfr := newTestCA(t, "Simulated TPM Manufacturer")
	w := newAttestWorld(t, func(w *attestWorld) *kms.AttestationPolicy {
		// No allow-list: only the manufacturer vouches for AKs.
		return &kms.AttestationPolicy{
			Manufacturers: []kms.Manufacturer{{Name: "sim-mfr", RootsPEM: mfr.pem, CustodianDN: custodianDN}},
			Profiles:      map[string]map[string]string{"prod-pcrs": {"0": w.pcrHex(0, true)}},
		}
	})
	ekPub, err := w.enc.EKPublic(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ekCert := mfr.ekCert(t, ekPub)

	t.Run("no EK certificate: the AK is not allow-listed", func(t *testing.T) {
		_, err := w.tpmSidecar(t, nil)
		kmstest.WantError(t, err, 403, api.CodeAttestationFailed)
	})
	t.Run("EK certificate from an untrusted CA", func(t *testing.T) {
		rogue := newTestCA(t, "Rogue")
		_, err := w.tpmSidecar(t, rogue.ekCert(t, ekPub))
		kmstest.WantError(t, err, 403, api.CodeAttestationFailed)
	})
	t.Run("an AK not resident in the EK's TPM", func(t *testing.T) {
		ak, err := w.enc.AKPublic(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		// A genuine EK certificate of another TPM (a key this TPM does
		// not hold) with this TPM's AK: the TPM cannot activate it.
		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		var ch api.Challenge
		anon := w.env.Anonymous()
		anon.MustDo(t, "POST", "/v1/enrollment/challenge", api.ChallengeRequest{EKCert: mfr.ekCert(t, &other.PublicKey), AKPublic: ak}, &ch)
		if _, err := w.enc.ActivateCredential(t.Context(), ch.CredentialBlob, ch.EncryptedSecret); err == nil {
			t.Fatal("the TPM activated a credential made for another TPM's EK")
		}
		// Evidence that does not carry the challenge's credential.
		req := attestedRequest(t, w.enc, ch.Nonce)
		req.Attestation.ActivatedCredential = make([]byte, 32)
		kmstest.WantError(t, anon.Do("POST", "/v1/enrollment", req, nil), 403, api.CodeAttestationFailed)
		// Nor does this TPM's EK with an AK it does not hold: the name
		// binding makes activation fail.
		anon.MustDo(t, "POST", "/v1/enrollment/challenge", api.ChallengeRequest{EKCert: ekCert, AKPublic: ak}, &ch)
		if got, err := w.enc.ActivateCredential(t.Context(), ch.CredentialBlob, ch.EncryptedSecret); err != nil || len(got) != 32 {
			t.Fatalf("activating this TPM's own credential: %v", err)
		}
	})
	t.Run("trusted chain and credential activation", func(t *testing.T) {
		sc, err := w.tpmSidecar(t, ekCert)
		if err != nil {
			t.Fatalf("EK-vouched enrollment: %v", err)
		}
		dk := w.key(t, &api.ReleaseConditions{AttestationProfile: "prod-pcrs", MaxAttestationAgeSeconds: 600})
		if err := w.rewrap(t, sc, dk); err != nil {
			t.Fatalf("release to the EK-vouched sidecar: %v", err)
		}
		w.clock.Advance(20 * time.Minute)
		kmstest.WantError(t, w.rewrap(t, sc, dk), 403, api.CodeAttestationRequired)
		if _, err := sc.Reattest(t.Context()); err != nil {
			t.Fatalf("re-attestation of an EK-vouched sidecar: %v", err)
		}
		if err := w.rewrap(t, sc, dk); err != nil {
			t.Fatalf("after re-attestation: %v", err)
		}
	})
	t.Run("EK certificate read from the TPM's NV index", func(t *testing.T) {
		if err := tpmsim.ProvisionEKCert(w.sim, tpm.ECCEKCertIndex, ekCert); err != nil {
			t.Fatal(err)
		}
		sc, err := sidecar.New(t.Context(), sidecar.Config{
			KMSURL: w.env.URL, CAPEM: w.env.CAPEM, DataDir: t.TempDir(), Enclave: w.enc, Attest: true, EKCertFromTPM: true,
			ReattestInterval: -1, Now: w.clock.Now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatalf("enrollment with the EK certificate from NV: %v", err)
		}
		defer sc.Close()
		if st := sc.Status(t.Context()); st.Enclave != api.EnclaveTPM {
			t.Fatalf("status = %+v", st)
		}
	})
}

func TestAttestationPolicyReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "attestation.json")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var ak string
	w := newAttestWorld(t, func(w *attestWorld) *kms.AttestationPolicy {
		ak = w.ak
		write(`{"platforms": []}`) // nobody allowed yet
		p, err := kms.LoadAttestationPolicy(path)
		if err != nil {
			t.Fatal(err)
		}
		return p
	})
	hup := make(chan os.Signal)
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go w.env.Server().KMS.WatchAttestationPolicy(ctx, path, hup, ticks)
	// A second send returns only once the first one's reload is done.
	signal := func() { hup <- nil; hup <- nil }
	tick := func() { ticks <- time.Now(); ticks <- time.Now() }

	_, err := w.tpmSidecar(t, nil)
	kmstest.WantError(t, err, 403, api.CodeAttestationFailed)

	// The file changes: the next tick puts it in force, no restart.
	write(`{"platforms": [{"ak_fingerprint": "` + ak + `", "custodian_dn": "` + custodianDN + `"}]}`)
	tick()
	sc, err := w.tpmSidecar(t, nil)
	if err != nil {
		t.Fatalf("enrollment after the allow-list reloaded: %v", err)
	}

	// A bad file keeps the policy in force.
	write(`{"platforms": [{"ak_fingerprint": "not hex", "custodian_dn": "` + custodianDN + `"}]}`)
	signal()
	if _, err := sc.Reattest(t.Context()); err != nil {
		t.Fatalf("re-attestation after a bad policy file: %v", err)
	}
	write(`{"platforms": [`)
	tick()
	if _, err := sc.Reattest(t.Context()); err != nil {
		t.Fatalf("re-attestation after a truncated policy file: %v", err)
	}

	// The AK leaves the allow-list (SIGHUP): it neither re-attests nor
	// enrolls again.
	write(`{"platforms": []}`)
	signal()
	_, err = sc.Reattest(t.Context())
	kmstest.WantError(t, err, 403, api.CodeAttestationFailed)
	_, err = w.tpmSidecar(t, nil)
	kmstest.WantError(t, err, 403, api.CodeAttestationFailed)
}

// TestRevokeManufacturer: an admin revokes every live instance whose
// attestation key a TPM manufacturer's EK certificate vouched for (POST
// /v1/instances/revoke-platform with manufacturer, the SDK's
// RevokeManufacturer) — a manufacturer no longer trusted, which removing
// from the policy only stops enrolling and re-attesting — and its sidecars
// stop serving at their next poll. The listing names the manufacturer; a
// token-enrolled sidecar of the same custodian and another manufacturer's
// name are left alone; a malformed name, both fields or neither, and a
// custodian are refused.
func TestRevokeManufacturer(t *testing.T) {
	mfr := newTestCA(t, "Simulated TPM Manufacturer")
	w := newAttestWorld(t, func(w *attestWorld) *kms.AttestationPolicy {
		return &kms.AttestationPolicy{Manufacturers: []kms.Manufacturer{{Name: "sim-mfr", RootsPEM: mfr.pem, CustodianDN: custodianDN}}}
	})
	ekPub, err := w.enc.EKPublic(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	vouched, err := sidecar.New(t.Context(), sidecar.Config{
		KMSURL: w.env.URL, CAPEM: w.env.CAPEM, DataDir: t.TempDir(), Enclave: w.enc, Attest: true, EKCert: mfr.ekCert(t, ekPub),
		ReattestInterval: -1, HealthInterval: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("EK-vouched enrollment: %v", err)
	}
	defer vouched.Close()
	token := w.softwareSidecar(t)

	var ins api.Instances
	w.env.Admin.MustDo(t, "GET", "/v1/instances", nil, &ins)
	made := map[string]string{}
	for _, in := range ins.Instances {
		made[in.InstanceID] = in.Manufacturer
	}
	if m, ok := made[vouched.InstanceID()]; !ok || m != "sim-mfr" || made[token.InstanceID()] != "" {
		t.Fatalf("instances = %+v, want %s by sim-mfr and %s by none", ins.Instances, vouched.InstanceID(), token.InstanceID())
	}

	const route = "/v1/instances/revoke-platform"
	for _, req := range []api.RevokePlatformRequest{{Manufacturer: "Sim MFR"}, {}, {AKFingerprint: w.ak, Manufacturer: "sim-mfr"}} {
		kmstest.WantError(t, w.env.Admin.Do("POST", route, req, nil), 400, api.CodeInvalidArgument)
	}
	kmstest.WantError(t, w.cust.Do("POST", route, api.RevokePlatformRequest{Manufacturer: "sim-mfr"}, nil), 403, api.CodeForbidden)

	sdk := w.env.Admin.SDK
	if got, err := sdk.RevokeManufacturer(t.Context(), "other-mfr"); err != nil || len(got) != 0 {
		t.Fatalf("RevokeManufacturer(other-mfr) = %v, %v; want nothing revoked", got, err)
	}
	got, err := sdk.RevokeManufacturer(t.Context(), "sim-mfr")
	if err != nil || len(got) != 1 || got[0] != vouched.InstanceID() {
		t.Fatalf("RevokeManufacturer(sim-mfr) = %v, %v; want [%s]", got, err, vouched.InstanceID())
	}
	eventually(t, "the sidecar the manufacturer vouched for stops", func() error {
		if !vouched.Status(t.Context()).Revoked {
			return fmt.Errorf("still serving")
		}
		return nil
	})
	if token.Status(t.Context()).Revoked {
		t.Fatal("the token-enrolled sidecar was revoked with the manufacturer's")
	}
	if got, err := sdk.RevokeManufacturer(t.Context(), "sim-mfr"); err != nil || len(got) != 0 {
		t.Fatalf("a second RevokeManufacturer(sim-mfr) = %v, %v; want nothing revoked again", got, err)
	}
}
