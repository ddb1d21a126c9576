package transit

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
)

// keyData is GET /v1/transit/keys/{name}: transit's key description of
// what this sidecar has loaded, plus dcaas_key_id.
type keyData struct {
	Name                 string         `json:"name"`
	DcaasKeyID           string         `json:"dcaas_key_id"`
	Type                 string         `json:"type"`
	Keys                 map[string]any `json:"keys"`
	LatestVersion        int            `json:"latest_version"`
	MinAvailableVersion  int            `json:"min_available_version"`
	MinDecryptionVersion int            `json:"min_decryption_version"`
	MinEncryptionVersion int            `json:"min_encryption_version"`
	DeletionAllowed      bool           `json:"deletion_allowed"`
	Derived              bool           `json:"derived"`
	Exportable           bool           `json:"exportable"`
	AllowPlaintextBackup bool           `json:"allow_plaintext_backup"`
	SupportsEncryption   bool           `json:"supports_encryption"`
	SupportsDecryption   bool           `json:"supports_decryption"`
	SupportsDerivation   bool           `json:"supports_derivation"`
	SupportsSigning      bool           `json:"supports_signing"`
	AutoRotatePeriod     int64          `json:"auto_rotate_period"`
	ImportedKey          bool           `json:"imported_key"`
	SoftDeleted          bool           `json:"soft_deleted"`
	KeySize              int            `json:"key_size,omitempty"`
}

// asymKey is one version of a signing key, as transit lists it.
type asymKey struct {
	Name             string    `json:"name"`
	PublicKey        string    `json:"public_key"`
	CertificateChain string    `json:"certificate_chain"`
	CreationTime     time.Time `json:"creation_time"`
}

// TypeName is transit's name for a dcaas key type ("" for none).
func TypeName(t api.KeyType) string {
	switch t {
	case api.KeyAES256GCM:
		return "aes256-gcm96"
	case api.KeyHMACSHA256:
		return "hmac"
	case api.KeyEd25519:
		return "ed25519"
	case api.KeyECDSAP256:
		return "ecdsa-p256"
	case api.KeyMLDSA65:
		return "ml-dsa-65" // not a transit type: dcaas's name
	}
	return ""
}

func (s *Server) readKey(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	keyID := s.Keys.Resolve(name)
	vs := s.Keys.Versions(keyID)
	if len(vs) == 0 {
		// Transit answers a read of a missing key with 404 (its clients
		// then return no secret and no error).
		writeJSON(w, http.StatusNotFound, errorBody{Errors: []string{fmt.Sprintf("no key named %q is loaded in this sidecar", name)}})
		return
	}
	d, err := describe(name, vs)
	if err != nil {
		s.logInternal(r, err)
		WriteError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, envelope{RequestID: requestID(), Data: d, MountType: "transit"})
}

// describe builds transit's description of a key from its loaded versions
// (oldest first). Versions below the oldest loaded one are not listed: the
// sidecar cannot use them.
func describe(name string, vs []api.LoadedKey) (keyData, error) {
	first, last := vs[0], vs[len(vs)-1]
	t := first.Type
	d := keyData{
		Name: name, DcaasKeyID: first.KeyID, Type: TypeName(t), Keys: map[string]any{},
		LatestVersion: last.Version, MinDecryptionVersion: first.Version, MinAvailableVersion: 0,
		SupportsEncryption: t == api.KeyAES256GCM, SupportsDecryption: t == api.KeyAES256GCM,
		SupportsSigning: t.Signing(), AutoRotatePeriod: last.RotationPeriodSeconds,
		ImportedKey: last.Labels["dcaas.origin"] == "imported",
	}
	if t == api.KeyHMACSHA256 {
		d.KeySize = 32
	}
	for _, v := range vs {
		ver := strconv.Itoa(v.Version)
		if !t.Signing() {
			d.Keys[ver] = v.CreatedAt.Unix()
			continue
		}
		k := asymKey{Name: TypeName(t), PublicKey: v.PublicKeyPEM, CreationTime: v.CreatedAt}
		switch t {
		case api.KeyEd25519:
			raw, err := kcrypto.Ed25519PublicKeyFromPEM(v.PublicKeyPEM)
			if err != nil {
				return keyData{}, fmt.Errorf("transit: key %s v%d: %w", v.KeyID, v.Version, err)
			}
			k.PublicKey = base64.StdEncoding.EncodeToString(raw)
		case api.KeyECDSAP256:
			k.Name = "P-256" // transit names the curve
		}
		d.Keys[ver] = k
	}
	return d, nil
}
