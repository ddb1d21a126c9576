package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"slices"
	"testing"
	"time"
)

func TestVerifyProfiles(t *testing.T) {
	f := newFixture(t)
	other := bytes.Repeat([]byte{0xee}, 32)
	v := &TPMVerifier{AllowedAKs: f.verifier.AllowedAKs, Profiles: map[string]map[int][]byte{
		"boot":      {0: f.ev.PCRs[0], 7: f.ev.PCRs[7]},
		"all":       f.ev.PCRs,
		"elsewhere": {0: other},
		"partial":   {0: f.ev.PCRs[0], 1: other},
	}}
	res, err := v.Verify(t.Context(), f.ev, f.want)
	if err != nil {
		t.Fatalf("Verify() = %v: an unmet profile must not refuse", err)
	}
	if want := []string{"all", "boot"}; !slices.Equal(res.Profiles, want) {
		t.Fatalf("Profiles = %v, want %v", res.Profiles, want)
	}
	none := &TPMVerifier{AllowedAKs: f.verifier.AllowedAKs}
	if res, err := none.Verify(t.Context(), f.ev, f.want); err != nil || res.Profiles == nil || len(res.Profiles) != 0 {
		t.Fatalf("Verify(no profiles) = %+v, %v; want an empty, non-nil list", res, err)
	}
}

func TestVerifyExpectedAK(t *testing.T) {
	f := newFixture(t)
	fp := AKFingerprint(f.ev.AKPublic)
	// Another AK's fingerprint: fp with its first digit changed. ("00" +
	// fp[2:] was fp itself for one AK in 256, and the test then failed.)
	another := "0" + fp[1:]
	if fp[0] == '0' {
		another = "1" + fp[1:]
	}
	tests := []struct {
		name string
		v    *TPMVerifier
		want Expected
		err  error
	}{
		{"allow-listed", f.verifier, f.want, nil},
		{"vouched for otherwise", &TPMVerifier{}, Expected{Nonce: f.want.Nonce, QualifyingData: f.want.QualifyingData, AKTrusted: true, AKFingerprint: fp}, nil},
		{"vouched for, but another AK expected", &TPMVerifier{}, Expected{Nonce: f.want.Nonce, QualifyingData: f.want.QualifyingData, AKTrusted: true, AKFingerprint: another}, ErrUnknownAK},
		{"allow-listed, but another AK expected", f.verifier, Expected{Nonce: f.want.Nonce, QualifyingData: f.want.QualifyingData, AKFingerprint: another}, ErrUnknownAK},
		{"trusted does not skip the signature", &TPMVerifier{}, Expected{Nonce: f.want.Nonce, QualifyingData: []byte("other keys"), AKTrusted: true}, ErrNonceMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.v.Verify(t.Context(), f.ev, tt.want)
			if tt.err == nil && err != nil || tt.err != nil && !errors.Is(err, tt.err) {
				t.Fatalf("Verify() = %v, want %v", err, tt.err)
			}
		})
	}
}

type ca struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	pool *x509.CertPool
}

func newCA(t *testing.T) *ca {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "TPM manufacturer root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c := &ca{key: key}
	c.cert, _ = x509.ParseCertificate(der)
	c.pool = x509.NewCertPool()
	c.pool.AddCert(c.cert)
	return c
}

func (c *ca) issue(t *testing.T, pub any) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageKeyAgreement, UnknownExtKeyUsage: []asn1.ObjectIdentifier{{2, 23, 133, 8, 1}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestVerifyEKCert(t *testing.T) {
	mfr, rogue := newCA(t), newCA(t)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	good := mfr.issue(t, &p256.PublicKey)
	tests := []struct {
		name  string
		der   []byte
		roots *x509.CertPool
		now   time.Time
		ok    bool
	}{
		{"chains to the root", good, mfr.pool, time.Now(), true},
		{"another manufacturer", rogue.issue(t, &p256.PublicKey), mfr.pool, time.Now(), false},
		{"no roots", good, nil, time.Now(), false},
		{"expired", good, mfr.pool, time.Now().Add(2 * time.Hour), false},
		{"not DER", []byte("not a certificate"), mfr.pool, time.Now(), false},
		{"P-384 EK", mfr.issue(t, &p384.PublicKey), mfr.pool, time.Now(), false},
		{"RSA-1024 EK", mfr.issue(t, &rsa1024.PublicKey), mfr.pool, time.Now(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := VerifyEKCert(tt.der, tt.roots, nil, tt.now)
			if tt.ok {
				if err != nil {
					t.Fatalf("VerifyEKCert = %v", err)
				}
				if !HasEKUsage(cert) {
					t.Error("HasEKUsage = false for a tcg-kp-EKCertificate certificate")
				}
				return
			}
			if !errors.Is(err, ErrUntrustedEK) {
				t.Fatalf("VerifyEKCert = %v, want ErrUntrustedEK", err)
			}
		})
	}
}

// TestMakeCredential: a credential made for the simulator's EK and the
// enclave's AK is activated by that TPM and gives back the secret; one
// bound to another AK, or made for another EK, is not.
func TestMakeCredential(t *testing.T) {
	f := newFixture(t)
	mfr := newCA(t)
	ekPub, err := f.enclave.EKPublic(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := VerifyEKCert(mfr.issue(t, ekPub), mfr.pool, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	secret := bytes.Repeat([]byte{0x42}, 32)
	blob, enc, err := MakeCredential(cert, f.ev.AKPublic, secret)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.enclave.ActivateCredential(t.Context(), blob, enc)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("ActivateCredential = %x, %v; want the secret", got, err)
	}

	other := newFixture(t) // a second enclave dir on the same TPM: another AK
	blob, enc, err = MakeCredential(cert, other.ev.AKPublic, secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.enclave.ActivateCredential(t.Context(), blob, enc); err == nil {
		t.Fatal("a credential bound to another AK's name was activated")
	}

	notOurs, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherEK, _ := VerifyEKCert(mfr.issue(t, &notOurs.PublicKey), mfr.pool, nil, time.Now())
	blob, enc, err = MakeCredential(otherEK, f.ev.AKPublic, secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.enclave.ActivateCredential(t.Context(), blob, enc); err == nil {
		t.Fatal("a credential made for another EK was activated")
	}

	if _, _, err := MakeCredential(cert, []byte("not an AK"), secret); !errors.Is(err, ErrMalformed) {
		t.Fatalf("MakeCredential(bad AK) = %v, want ErrMalformed", err)
	}
}
