package kms

import (
	"context"
	"regexp"
	"strings"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/secret"
	"github.com/dcaas/dcaas/internal/store"
)

// Key check values (KCV): six upper-case hex digits that let people and
// partners compare a key without showing it. The KMS computes a version's
// KCV where the key is in clear (creation, import, a new version, the
// last key component) and stores it with the version; versions made
// before KCVs were stored get theirs the next time the KMS reads the key
// (GET /v1/datakeys/{key_id}): it opens the version's EKB, computes the
// KCV and stores it only where none is stored yet, so replicas that race
// store the same value.

// symmetricType is what the KMS knows of a key type whose material is raw
// key bytes: how its KCV is computed, and whether it can be entered in
// components.
type symmetricType struct {
	size       int                                 // material length in bytes
	kcv        func(*secret.Bytes) (string, error) // its key check value
	method     string                              // the method's name, as docs/api.md gives it
	components bool                                // may be imported by components
}

// symmetricTypes is the one table of key types that have a KCV and can be
// entered in components; a type missing here (the signing types) has
// neither.
var symmetricTypes = map[api.KeyType]symmetricType{
	api.KeyAES256GCM:  {size: kcrypto.DataKeySize, kcv: kcrypto.KCVCMAC, method: "aes-cmac", components: true},
	api.KeyHMACSHA256: {size: kcrypto.DataKeySize, kcv: kcrypto.KCVHMACSHA256, method: "hmac-sha256", components: true},
	api.KeyAES256KBPK: {size: kcrypto.DataKeySize, kcv: kcrypto.KCVCMAC, method: "aes-cmac", components: true},
}

// kcvOf is the KCV of material of type t, or "" for a type without one.
func kcvOf(t api.KeyType, material *secret.Bytes) (string, error) {
	st, ok := symmetricTypes[t]
	if !ok {
		return "", nil
	}
	return st.kcv(material)
}

var kcvPattern = regexp.MustCompile(`^[0-9A-Fa-f]{6}$`)

// parseKCV checks a KCV a caller gave (field names it) and returns it in
// upper case.
func parseKCV(field, s string) (string, error) {
	if !kcvPattern.MatchString(s) {
		return "", api.Errorf(api.CodeInvalidArgument, "%s must be a key check value: six hex digits.", field)
	}
	return strings.ToUpper(s), nil
}

// fillKCVs sets the KCV of each version of info that has none stored, for a
// key type that has one: it opens the version's EKB and computes it. It
// returns the versions it filled, to store with storeKCVs. A version whose
// EKB is not stored or does not open is left without (and logged).
func (k *KMS) fillKCVs(ctx context.Context, key store.Key, info *api.DataKeyInfo) []store.KeyVersion {
	if _, ok := symmetricTypes[api.KeyType(key.Type)]; !ok {
		return nil
	}
	missing := false
	for _, v := range info.Versions {
		missing = missing || v.KCV == ""
	}
	if !missing {
		return nil
	}
	vs, err := k.st.ListKeyVersions(ctx, key.KeyID)
	if err != nil {
		k.log.Warn("reading key versions for their KCVs failed", "key", key.KeyID, "err", err)
		return nil
	}
	ekbs := make(map[int][]byte, len(vs))
	for _, v := range vs {
		ekbs[v.Version] = v.EKB
	}
	var filled []store.KeyVersion
	for i := range info.Versions {
		v := &info.Versions[i]
		if v.KCV != "" || ekbs[v.Version] == nil {
			continue
		}
		kcv, err := k.versionKCV(ctx, key, v.Version, ekbs[v.Version])
		if err != nil {
			k.log.Warn("computing a key version's KCV failed", "key", key.KeyID, "version", v.Version, "err", err)
			continue
		}
		v.KCV = kcv
		filled = append(filled, store.KeyVersion{KeyID: key.KeyID, Version: v.Version, KCV: kcv})
	}
	return filled
}

// storeKCVs stores the KCVs fillKCVs computed through tx.
func storeKCVs(ctx context.Context, tx store.KeyCheckValues, filled []store.KeyVersion) error {
	for _, v := range filled {
		if err := tx.SetKeyVersionKCV(ctx, v.KeyID, v.Version, v.KCV); err != nil {
			return storeErr(err, "key version")
		}
	}
	return nil
}

// versionKCV opens a stored EKB of key and computes its KCV.
func (k *KMS) versionKCV(ctx context.Context, key store.Key, version int, ekb []byte) (string, error) {
	o, err := k.openEKB(ctx, key.Tenant, ekb)
	if err != nil {
		return "", err
	}
	defer o.material.Wipe()
	if o.md.KeyID != key.KeyID || o.md.Version != version || o.md.Type != api.KeyType(key.Type) {
		return "", api.Errorf(api.CodeInvalidEKB, "The stored EKB of %s version %d is for another key version.", key.KeyID, version)
	}
	return kcvOf(o.md.Type, o.material)
}
