package crypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/secret"
)

// seedV2Vector is one entry of testdata/seedkdf_v2_vectors.json, made by
// testdata/seedkdf_v2_vectors.py (Python's hmac, HKDF written out from
// RFC 5869). Policy is checked against CanonicalPolicy by
// internal/policy's TestCanonicalVectors.
type seedV2Vector struct {
	Name            string      `json:"name"`
	CustodianKey    hexBytes    `json:"custodian_seed_key"`
	Seed            hexBytes    `json:"seed"`
	Type            api.KeyType `json:"type"`
	Policy          *api.Policy `json:"policy"`
	CanonicalPolicy hexBytes    `json:"canonical_policy"`
	InfoKey         hexBytes    `json:"info_key"`
	InfoID          hexBytes    `json:"info_id"`
	Key             hexBytes    `json:"key"`
	KeyID           string      `json:"key_id"`
}

func readSeedV2Vectors(t *testing.T) []seedV2Vector {
	t.Helper()
	var file struct {
		Vectors []seedV2Vector `json:"vectors"`
	}
	readVectors(t, "seedkdf_v2_vectors.json", &file)
	if len(file.Vectors) < 4 {
		t.Fatalf("seedkdf_v2_vectors.json has %d vectors, want at least 4", len(file.Vectors))
	}
	return file.Vectors
}

// TestSeedKDFv2Vectors pins SeedKDF v2 to the independent vectors, and
// checks that docs/formats.md §7 quotes them.
func TestSeedKDFv2Vectors(t *testing.T) {
	doc, err := os.ReadFile("../../docs/formats.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range readSeedV2Vectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			if got := SeedV2Info(v.Type, v.CanonicalPolicy, false); !bytes.Equal(got, v.InfoKey) {
				t.Errorf("SeedV2Info(key) = %x, want %x", got, []byte(v.InfoKey))
			}
			if got := SeedV2Info(v.Type, v.CanonicalPolicy, true); !bytes.Equal(got, v.InfoID) {
				t.Errorf("SeedV2Info(id) = %x, want %x", got, []byte(v.InfoID))
			}
			csk := secret.New(bytes.Clone(v.CustodianKey))
			key, id, err := DeriveSeedKeyV2(csk, v.Seed, v.Type, v.CanonicalPolicy)
			if err != nil {
				t.Fatalf("DeriveSeedKeyV2 = %v", err)
			}
			defer key.Wipe()
			if !bytes.Equal(key.Expose(), v.Key) || id != v.KeyID {
				t.Errorf("DeriveSeedKeyV2 = %x, %s; want %x, %s", key.Expose(), id, []byte(v.Key), v.KeyID)
			}
			for _, q := range []string{hex.EncodeToString(v.Key), v.KeyID} {
				if !strings.Contains(string(doc), "`"+q+"`") {
					t.Errorf("docs/formats.md does not quote %s (SeedKDF v2 vector %s)", q, v.Name)
				}
			}
		})
	}
}

// TestSeedKDFv2OpenSSL recomputes every vector's key and key id with
// OpenSSL's HKDF from the documented inputs (seed, custodian seed key,
// info bytes), when openssl is installed.
func TestSeedKDFv2OpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	for _, v := range readSeedV2Vectors(t) {
		for _, out := range []struct {
			info hexBytes
			n    int
			want []byte
		}{{v.InfoKey, 32, v.Key}, {v.InfoID, 16, nil}} {
			cmd := exec.Command("openssl", "kdf", "-keylen", strconv.Itoa(out.n), "-kdfopt", "digest:SHA256",
				"-kdfopt", "hexkey:"+hex.EncodeToString(v.Seed), "-kdfopt", "hexsalt:"+hex.EncodeToString(v.CustodianKey),
				"-kdfopt", "hexinfo:"+hex.EncodeToString(out.info), "HKDF")
			b, err := cmd.Output()
			if err != nil {
				t.Skipf("openssl kdf: %v", err)
			}
			got, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(string(b)), ":", ""))
			if err != nil {
				t.Fatalf("openssl kdf printed %q: %v", b, err)
			}
			if out.want == nil { // the id: "drv_" and its base32
				if id := seedKeyIDOf(got); id != v.KeyID {
					t.Errorf("%s: OpenSSL's key id = %s, want %s", v.Name, id, v.KeyID)
				}
				continue
			}
			if !bytes.Equal(got, out.want) {
				t.Errorf("%s: OpenSSL's key = %x, want %x", v.Name, got, out.want)
			}
		}
	}
}

// TestSeedKDFv2Binds: every input changes both the key and its id, and a
// ciphertext under one custodian's key does not open under another's.
func TestSeedKDFv2Binds(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, 32)
	cskA, cskB := secret.New(Random(SeedKeyLen)), secret.New(Random(SeedKeyLen))
	base, baseID, err := DeriveSeedKeyV2(cskA, seed, api.KeyAES256GCM, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Wipe()
	other := bytes.Clone(seed)
	other[0] ^= 1
	for _, tt := range []struct {
		name   string
		csk    *secret.Bytes
		seed   []byte
		typ    api.KeyType
		policy []byte
	}{
		{"another custodian", cskB, seed, api.KeyAES256GCM, nil},
		{"another seed", cskA, other, api.KeyAES256GCM, nil},
		{"another type", cskA, seed, api.KeyHMACSHA256, nil},
		{"a policy", cskA, seed, api.KeyAES256GCM, []byte{0, 0, 0, 0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k, id, err := DeriveSeedKeyV2(tt.csk, tt.seed, tt.typ, tt.policy)
			if err != nil {
				t.Fatal(err)
			}
			defer k.Wipe()
			if bytes.Equal(k.Expose(), base.Expose()) || id == baseID {
				t.Errorf("DeriveSeedKeyV2 = same key or id (%s) as the base case", id)
			}
			if tt.typ != api.KeyAES256GCM {
				return
			}
			ct := sealGCM(t, base.Expose(), []byte("custodian A's data"))
			if _, err := openGCM(k.Expose(), ct); err == nil {
				t.Error("a ciphertext under the base key opens under this one")
			}
		})
	}
	t.Run("refusals", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			csk  *secret.Bytes
			seed []byte
			typ  api.KeyType
		}{
			{"short seed", cskA, seed[:MinSeedLen-1], api.KeyAES256GCM},
			{"long seed", cskA, bytes.Repeat(seed, 3), api.KeyAES256GCM},
			{"short custodian key", secret.New(make([]byte, 16)), seed, api.KeyAES256GCM},
			{"underivable type", cskA, seed, api.KeyECDSAP256},
		} {
			if k, _, err := DeriveSeedKeyV2(tt.csk, tt.seed, tt.typ, nil); err == nil {
				k.Wipe()
				t.Errorf("%s: DeriveSeedKeyV2 = nil error, want one", tt.name)
			}
		}
	})
}

func sealGCM(t *testing.T, key, pt []byte) []byte {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCMWithRandomNonce(b)
	if err != nil {
		t.Fatal(err)
	}
	return g.Seal(nil, nil, pt, nil)
}

func openGCM(key, ct []byte) ([]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCMWithRandomNonce(b)
	if err != nil {
		return nil, err
	}
	return g.Open(nil, nil, ct, nil)
}
