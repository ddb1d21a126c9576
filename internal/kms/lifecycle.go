package kms

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/ops"
	"github.com/dcaas/dcaas/internal/store"
)

// Key lifecycle (issue 8): usage limits, minimum decryption versions and
// automatic rotation.
//
//   - Every AES-GCM key version counts its encryptions in the registry:
//     the central path adds its own at the end of each request, sidecars
//     report theirs (POST /v1/usage). Past Config.MaxEncryptions the KMS
//     refuses to encrypt with the version and to release it while it is
//     the current version (usage_limit_exceeded: rotate). Older versions
//     are released with their count, so sidecars decrypt with them but
//     refuse to encrypt.
//   - A key's min_decryption_version retires the versions below it: they
//     are neither used nor released, and the revocation feed tells
//     sidecars to evict them.
//   - Rotation is due when the current version is older than the key's
//     rotation period, or has made three quarters of its safe encryptions.
//     The KMS holds the EKBs of retained keys, so it rotates those itself
//     when they are next used (central path by key id, load by key id);
//     for the others it cannot make the new EKB without the custodian's
//     current one, so it reports rotation_due (GET /v1/datakeys/{key_id})
//     and warns in central answers and in rewrap and load answers.

// usageLimited reports whether keys of type typ count their encryptions
// toward the safe limit: AES-GCM with random 96-bit nonces.
func usageLimited(typ string) bool { return typ == string(api.KeyAES256GCM) }

// warnAt is the count at which rotation becomes due: three quarters of
// max, so the custodian hears of it well before encryptions are refused.
func warnAt(max int64) int64 { return max - max/4 }

// rotationDue says why the current version cur of key is due for
// rotation, or "" when it is not.
func (k *KMS) rotationDue(key store.Key, cur store.KeyVersion) string {
	if key.RotationPeriod > 0 && !k.now().Before(cur.CreatedAt.Add(key.RotationPeriod)) {
		return fmt.Sprintf("version %d is older than the key's rotation period of %s", cur.Version, key.RotationPeriod)
	}
	if usageLimited(key.Type) && cur.Encryptions >= warnAt(k.cfg.MaxEncryptions) {
		return fmt.Sprintf("version %d has made %d of its %d safe encryptions", cur.Version, cur.Encryptions, k.cfg.MaxEncryptions)
	}
	return ""
}

func rotationWarning(keyID, why string) string {
	return fmt.Sprintf("Rotation of key %s is due: %s. Create a new version (POST /v1/datakeys/%s/versions with the current EKB), load it, and translate old ciphertexts to it.", keyID, why, keyID)
}

// rotateIfDue rotates a retained key whose rotation is due and returns the
// key as it is afterwards. Other keys are returned as they are (the
// rotator in the background rotates those whose EKB the KMS holds). Two
// requests racing to rotate make one new version.
func (k *KMS) rotateIfDue(ctx context.Context, key store.Key) (store.Key, error) {
	if !key.Retained || key.DisabledAt != nil {
		return key, nil
	}
	changed, err := k.rotate(ctx, key)
	if err != nil || !changed {
		return key, err
	}
	if key, err = k.st.GetKey(ctx, key.KeyID); err != nil {
		return key, storeErr(err, "key")
	}
	return key, nil
}

// retired is the error for a version below the key's minimum decryption
// version.
func retired(key store.Key, version int) error {
	return api.Errorf(api.CodeRevoked, "Version %d of key %s is retired: its minimum decryption version is %d.", version, key.KeyID, key.MinDecryptionVersion)
}

// versionErr is checkVersion's verdict on GetKeyVersion's error.
func versionErr(key store.Key, version int, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return api.Errorf(api.CodeInvalidEKB, "Version %d of key %s is not registered at this KMS.", version, key.KeyID)
	}
	if err != nil {
		return storeErr(err, "key version")
	}
	return nil
}

// checkRelease checks that a version may leave the KMS for a sidecar: the
// current version of an AES-GCM key must not be past its safe limit. It
// returns a rotation warning for the custodian, or "".
func (k *KMS) checkRelease(key store.Key, v store.KeyVersion) (string, error) {
	if key.Type == string(api.KeyAES256KBPK) {
		return "", api.Errorf(api.CodeWrongKeyType, "Key %s is a key-block protection key (aes-256-kbpk): the KMS uses it for TR-31 key blocks and never releases it to a sidecar.", key.KeyID)
	}
	if v.Version != key.CurrentVersion {
		return "", nil
	}
	if usageLimited(key.Type) && v.Encryptions >= k.cfg.MaxEncryptions {
		return "", ops.ErrUsageLimit(key.KeyID, v.Version, k.cfg.MaxEncryptions)
	}
	if why := k.rotationDue(key, v); why != "" {
		return rotationWarning(key.KeyID, why), nil
	}
	return "", nil
}

// centralUsage counts what one central request encrypted, per key version;
// the KMS adds it to the registry when the request ends (flushUsage).
type centralUsage struct {
	mu sync.Mutex
	m  map[verKey]*store.KeyUsage
}

type verKey struct {
	id string
	v  int
}

// charge counts one encryption of n bytes with version v of key id, whose
// registry count was stored when it was acquired, unless that reaches max.
func (u *centralUsage) charge(id string, v int, stored, max int64, n int) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	c := u.m[verKey{id, v}]
	if c == nil {
		if u.m == nil {
			u.m = map[verKey]*store.KeyUsage{}
		}
		c = &store.KeyUsage{KeyID: id, Version: v}
		u.m[verKey{id, v}] = c
	}
	if stored+c.Encryptions >= max {
		return ops.ErrUsageLimit(id, v, max)
	}
	c.Encryptions++
	c.Bytes += int64(n)
	return nil
}

// flushUsage adds what the central request c encrypted to the registry,
// with the call's audit record. When it cannot, the request fails: its
// ciphertexts are not returned, so no one sees them and they need no
// counting.
func (k *KMS) flushUsage(ctx context.Context, c *call) error {
	u := c.usage
	u.mu.Lock()
	counts := make([]store.KeyUsage, 0, len(u.m))
	for _, x := range u.m {
		counts = append(counts, *x)
	}
	u.mu.Unlock()
	if len(counts) == 0 {
		return nil
	}
	ctx = context.WithoutCancel(ctx) // the results are computed: store their usage even if the client left
	err := c.commit(ctx, func(tx store.Tx) error {
		_, err := tx.AddKeyUsage(ctx, c.caller.Tenant, counts)
		return err
	})
	if err != nil {
		k.log.Error("central usage not recorded", "err", err)
		return &wrapped{api.Errorf(api.CodeUnavailable, "The KMS could not record the key usage of this request, so its results are withheld; retry later."), err}
	}
	k.reads.noteUsage(counts)
	return nil
}

// maxBytesPerEncryption bounds the bytes one AES-GCM encryption can
// take: 2^36, GCM's 2^39 − 256 bits per message rounded up (NIST SP
// 800-38D §5.2.1.1).
const maxBytesPerEncryption = 1 << 36

// usageReport serves POST /v1/usage: a sidecar adds what it encrypted
// since its last report (issue 12).
//
//   - A count adds only to a version released to the reporting instance
//     (recorded by rewrap, load, derive and refresh) of an AES-GCM key of
//     its tenant. Every other count — another custodian's key, a version
//     the instance was never given, a seed-derived or unknown key — is
//     skipped alike, so accepted says nothing the sidecar does not know.
//   - Each count is bounded before any key is looked up: at most
//     MaxEncryptions encryptions (a sidecar never encrypts past the safe
//     limit with a version, so more is no honest report), at most
//     maxBytesPerEncryption bytes per encryption, each version once per
//     report, at most MaxBatch counts. A report out of bounds is refused
//     whole.
//   - The totals saturate at the largest int64 (the store).
//
// A sidecar the key was released to can still over-report, up to the
// limit: that makes the version reach it sooner (a retained key then
// rotates; an EKB key needs its owner to rotate it), which the sidecar
// could also do by encrypting. See docs/threat-model.md.
func (k *KMS) usageReport(ctx context.Context, c *call) (any, error) {
	var req api.UsageReport
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if len(req.Counts) > k.cfg.MaxBatch {
		return nil, api.Errorf(api.CodeTooLarge, "At most %d counts per report.", k.cfg.MaxBatch)
	}
	counts := make([]store.KeyUsage, len(req.Counts))
	seen := make(map[verKey]bool, len(req.Counts))
	for i, u := range req.Counts {
		if err := k.checkCount(u); err != nil {
			return nil, prefixIndex(err, i, len(req.Counts))
		}
		if seen[verKey{u.KeyID, u.Version}] {
			return nil, prefixIndex(api.Errorf(api.CodeInvalidArgument, "Version %d of key %s is counted twice; a report counts each key version once.", u.Version, u.KeyID), i, len(req.Counts))
		}
		seen[verKey{u.KeyID, u.Version}] = true
		counts[i] = store.KeyUsage{KeyID: u.KeyID, Version: u.Version, Encryptions: u.Encryptions, Bytes: u.Bytes}
	}
	in := c.caller.Instance
	var n int
	err := c.commit(ctx, func(tx store.Tx) error {
		var err error
		if n, err = tx.AddReleasedUsage(ctx, in.Tenant, in.ID, string(api.KeyAES256GCM), counts); err != nil {
			return storeErr(err, "key usage")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return api.UsageAccepted{Accepted: n}, nil
}

// checkCount checks one count of a usage report against the bounds of
// usageReport, whatever key it names.
func (k *KMS) checkCount(u api.UsageCount) error {
	switch {
	case u.KeyID == "" || u.Version < 1:
		return api.Errorf(api.CodeInvalidArgument, "Each count needs a key_id and a version of at least 1.")
	case u.Encryptions < 0 || u.Bytes < 0:
		return api.Errorf(api.CodeInvalidArgument, "Encryptions and bytes must not be negative.")
	case u.Encryptions > k.cfg.MaxEncryptions:
		return api.Errorf(api.CodeInvalidArgument, "A count may hold at most %d encryptions, the safe number for a key version; a sidecar must use the KMS's limit (sidecar.Config.MaxEncryptions).", k.cfg.MaxEncryptions)
	case u.Encryptions <= math.MaxInt64/maxBytesPerEncryption && u.Bytes > u.Encryptions*maxBytesPerEncryption:
		return api.Errorf(api.CodeInvalidArgument, "A count may hold at most %d bytes per encryption.", int64(maxBytesPerEncryption))
	}
	return nil
}

// ownedKey loads the key named in the path for its owner (a custodian) or
// an admin; to anyone else it does not exist.
func (k *KMS) ownedKey(ctx context.Context, c *call) (store.Key, error) {
	id := c.r.PathValue("key_id")
	c.keyID = id
	key, err := k.st.GetKey(ctx, id)
	notFound := api.Errorf(api.CodeNotFound, "There is no key %q.", id)
	if errors.Is(err, store.ErrNotFound) {
		return key, notFound
	}
	if err != nil {
		return key, storeErr(err, "key")
	}
	c.tenant = key.Tenant
	if c.caller.Role == api.RoleCustodian && (key.Tenant != c.caller.Tenant || key.Owner != c.caller.DN) {
		return key, notFound
	}
	return key, nil
}

// getDataKey serves GET /v1/datakeys/{key_id}: the registry view of a key.
func (k *KMS) getDataKey(ctx context.Context, c *call) (any, error) {
	key, err := k.ownedKey(ctx, c)
	if err != nil {
		return nil, err
	}
	info, err := k.keyInfo(ctx, k.st, key)
	if err != nil {
		return nil, err
	}
	if filled := k.fillKCVs(ctx, key, info); filled != nil {
		// Versions made before KCVs were stored get theirs now, stored
		// with this read's audit record. The answer is right even if
		// that fails: the next read computes them again.
		if err := c.commit(ctx, func(tx store.Tx) error { return storeKCVs(ctx, tx, filled) }); err != nil {
			k.log.Warn("storing key check values failed", "key", key.KeyID, "err", err)
		}
	}
	return info, nil
}

// setMinDecryptionVersion serves POST
// /v1/datakeys/{key_id}/min-decryption-version.
func (k *KMS) setMinDecryptionVersion(ctx context.Context, c *call) (any, error) {
	var req api.MinDecryptionVersionRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	key, err := k.ownedKey(ctx, c)
	if err != nil {
		return nil, err
	}
	switch {
	case req.Version < 1 || req.Version > key.CurrentVersion:
		return nil, api.Errorf(api.CodeInvalidArgument, "version must be between 1 and the current version, %d: the current version cannot be retired (disable the key instead).", key.CurrentVersion)
	case req.Version < key.MinDecryptionVersion:
		return nil, api.Errorf(api.CodeConflict, "The minimum decryption version of key %s is %d already; retired versions stay retired.", key.KeyID, key.MinDecryptionVersion)
	}
	use, err := k.approvalFor(ctx, c, api.ApprovalMinDecryption, key.Tenant, key.KeyID, req)
	if err != nil {
		return nil, err
	}
	var info *api.DataKeyInfo
	err = c.commit(ctx, func(tx store.Tx) error {
		if err := use.consumeIn(ctx, tx); err != nil {
			return err
		}
		if err := tx.SetMinDecryptionVersion(ctx, key.KeyID, req.Version, k.now()); err != nil {
			return storeErr(err, "key")
		}
		// The answer is read in the transaction, so it shows the change.
		key, err := tx.GetKey(ctx, key.KeyID)
		if err != nil {
			return storeErr(err, "key")
		}
		info, err = k.keyInfo(ctx, tx, key)
		return err
	})
	if err != nil {
		return nil, err
	}
	k.fillKCVs(ctx, key, info) // shown, not stored: this call has committed; the next read stores them
	return info, nil
}

// keyInfo builds the registry view of key from st.
func (k *KMS) keyInfo(ctx context.Context, st reader, key store.Key) (*api.DataKeyInfo, error) {
	vs, err := st.ListKeyVersions(ctx, key.KeyID)
	if err != nil {
		return nil, storeErr(err, "key")
	}
	info := &api.DataKeyInfo{
		KeyID: key.KeyID, Type: api.KeyType(key.Type), Owner: key.Owner, Retained: key.Retained,
		CreatedAt: key.CreatedAt.UTC(), CurrentVersion: key.CurrentVersion, MinDecryptionVersion: key.MinDecryptionVersion,
		RotationPeriodSeconds: int64(key.RotationPeriod / time.Second), Disabled: key.DisabledAt != nil,
		Versions: make([]api.DataKeyVersionInfo, 0, len(vs)),
	}
	if usageLimited(key.Type) {
		info.EncryptionLimit = k.cfg.MaxEncryptions
	}
	for _, v := range vs {
		info.Versions = append(info.Versions, api.DataKeyVersionInfo{
			Version: v.Version, CreatedAt: v.CreatedAt.UTC(), Encryptions: v.Encryptions, Bytes: v.Bytes,
			Retired: v.Version < key.MinDecryptionVersion, KCV: v.KCV,
		})
		if v.Version == key.CurrentVersion && key.DisabledAt == nil {
			info.RotationDue = k.rotationDue(key, v) != ""
		}
	}
	return info, nil
}

// parseFloor reads the Subject of a RevocationKeyVersion event.
func parseFloor(subject string) (api.KeyVersionFloor, bool) {
	i := strings.LastIndexByte(subject, ':')
	if i < 0 {
		return api.KeyVersionFloor{}, false
	}
	v, err := strconv.Atoi(subject[i+1:])
	if err != nil {
		return api.KeyVersionFloor{}, false
	}
	return api.KeyVersionFloor{KeyID: subject[:i], MinDecryptionVersion: v}, true
}
