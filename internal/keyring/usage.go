package keyring

import (
	"cmp"
	"slices"
	"sync/atomic"
	"time"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/ops"
	"github.com/dcaas/dcaas/internal/policy"
)

// verKey names one key version.
type verKey struct {
	id string
	v  int
}

// usage is one key version's encryption count. It outlives loads and
// evictions, so a reloaded version counts on, and what the ring has not
// reported yet is not lost.
type usage struct {
	base        atomic.Int64 // known to the KMS: its count at the last load, plus this ring's reports since
	unsent      atomic.Int64 // this ring's encryptions not reported yet
	unsentBytes atomic.Int64
	// sealed: the version was sealed for the stateless mode (KeepSealed,
	// ChargeSealed). Its blobs are used without a load that would bring
	// the KMS's count again, so the ring keeps the count for good.
	sealed atomic.Bool
}

// total is the version's count as the ring knows it.
func (u *usage) total() int64 { return u.base.Load() + u.unsent.Load() }

func (r *Ring) usageOf(keyID string, version int) *usage {
	k := verKey{keyID, version}
	if u, ok := r.usage.Load(k); ok {
		return u.(*usage)
	}
	u, _ := r.usage.LoadOrStore(k, &usage{})
	return u.(*usage)
}

// setLimits prepares e's accounting: its policy's per-load limits, the
// load starting at now. (Put sets e.use under the ring's lock.)
func (e *entry) setLimits(r *Ring, now time.Time) {
	e.limited = e.md.Type == api.KeyAES256GCM
	e.maxEnc = r.maxEnc
	lim := policy.Limits(e.md.Policy)
	e.maxOps, e.maxBytes = lim.MaxOperations, lim.MaxBytes
	if lim.MaxLeaseSeconds > 0 {
		e.leaseCap = now.Add(time.Duration(lim.MaxLeaseSeconds) * time.Second).UnixNano()
	}
}

// charge accounts for one operation on n bytes (encrypt, sign or MAC)
// before it is performed: against the load's policy limits, and for
// AES-GCM against the version's safe number of encryptions. A refused
// charge counts nothing.
func (e *entry) charge(n int) error {
	if e.maxOps > 0 && e.ops.Add(1) > e.maxOps {
		e.ops.Add(-1)
		return api.Errorf(api.CodeExpired, "Key %s has made the %d operations its policy allows per load (limits.max_operations); reload it from the KMS.", e.md.KeyID, e.maxOps)
	}
	if e.maxBytes > 0 && e.bytes.Add(int64(n)) > e.maxBytes {
		e.bytes.Add(-int64(n))
		if e.maxOps > 0 {
			e.ops.Add(-1)
		}
		return api.Errorf(api.CodeExpired, "Key %s would pass the %d bytes its policy allows per load (limits.max_bytes); reload it from the KMS.", e.md.KeyID, e.maxBytes)
	}
	if e.limited {
		if err := chargeVersion(e.use, &e.md, e.maxEnc, n); err != nil {
			if e.maxBytes > 0 {
				e.bytes.Add(-int64(n))
			}
			if e.maxOps > 0 {
				e.ops.Add(-1)
			}
			return err
		}
	}
	return nil
}

// chargeVersion counts one encryption of n bytes unless the version has
// made max already.
func chargeVersion(u *usage, md *api.KeyMetadata, max int64, n int) error {
	if u.base.Load()+u.unsent.Add(1) > max {
		u.unsent.Add(-1)
		return ops.ErrUsageLimit(md.KeyID, md.Version, max)
	}
	u.unsentBytes.Add(int64(n))
	return nil
}

// ChargeSealed counts one encryption of n bytes with a key that is not
// loaded but carried by the caller (a sidecar's sealed blob): it counts
// toward the version's safe limit like a loaded key's. Keys of other types
// than AES-GCM are not counted. A retired version is refused.
func (r *Ring) ChargeSealed(md *api.KeyMetadata, n int) error {
	if floor := r.MinVersion(md.KeyID); md.Version < floor {
		return errRetired(md.KeyID, md.Version, floor)
	}
	if md.Type != api.KeyAES256GCM {
		return nil
	}
	u := r.usageOf(md.KeyID, md.Version)
	u.sealed.Store(true)
	return chargeVersion(u, md, r.maxEnc, n)
}

// KeepSealed tells the ring that version of keyID leaves it sealed (the
// stateless mode) with reported encryptions known to the KMS: its count is
// kept, and goes on from there, for as long as the ring lives, since its
// blobs come back without the KMS.
func (r *Ring) KeepSealed(keyID string, version int, reported int64) {
	u := r.usageOf(keyID, version)
	u.sealed.Store(true)
	u.setReported(reported)
}

// dropUsage forgets the count of a version that is leaving the ring, unless
// it holds encryptions not reported yet (MarkReported drops it then) or was
// sealed (its blobs count on without a load). The
// caller holds r.mu. An encryption still in flight with the version as it
// is evicted may go unreported.
func (r *Ring) dropUsage(keyID string, version int) {
	k := verKey{keyID, version}
	if u, ok := r.usage.Load(k); ok && u.(*usage).unsent.Load() == 0 && !u.(*usage).sealed.Load() {
		r.usage.Delete(k)
	}
}

// setReported raises the count known to the KMS to encryptions (it never
// goes down).
func (u *usage) setReported(encryptions int64) {
	for {
		b := u.base.Load()
		if encryptions <= b || u.base.CompareAndSwap(b, encryptions) {
			return
		}
	}
}

// Reported returns what the ring knows the KMS counted for version of
// keyID (0 when it knows nothing).
func (r *Ring) Reported(keyID string, version int) int64 {
	if u, ok := r.usage.Load(verKey{keyID, version}); ok {
		return u.(*usage).base.Load()
	}
	return 0
}

// Unreported returns, for every key version that encrypted since the last
// MarkReported, what it encrypted, sorted by key id and version.
func (r *Ring) Unreported() []api.UsageCount {
	var out []api.UsageCount
	r.usage.Range(func(k, v any) bool {
		u := v.(*usage)
		if n := u.unsent.Load(); n > 0 {
			vk := k.(verKey)
			out = append(out, api.UsageCount{KeyID: vk.id, Version: vk.v, Encryptions: n, Bytes: u.unsentBytes.Load()})
		}
		return true
	})
	slices.SortFunc(out, func(a, b api.UsageCount) int {
		return cmp.Or(cmp.Compare(a.KeyID, b.KeyID), cmp.Compare(a.Version, b.Version))
	})
	return out
}

// MarkReported records that counts (from Unreported) reached the KMS: they
// move from unreported to known. Encryptions made meanwhile stay
// unreported.
func (r *Ring) MarkReported(counts []api.UsageCount) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range counts {
		u := r.usageOf(c.KeyID, c.Version)
		u.base.Add(c.Encryptions) // first, so the total never dips
		u.unsent.Add(-c.Encryptions)
		u.unsentBytes.Add(-c.Bytes)
		if vs := r.load(c.KeyID); vs == nil || vs.byVer[c.Version] == nil {
			r.dropUsage(c.KeyID, c.Version) // evicted, or only ever sealed
		}
	}
}

// MinVersion returns keyID's minimum decryption version as the ring knows
// it (0: none).
func (r *Ring) MinVersion(keyID string) int {
	if v, ok := r.floors.Load(keyID); ok {
		return v.(int)
	}
	return 0
}

// Retire makes min keyID's minimum decryption version (it never goes
// down): the loaded versions below it are evicted and wiped, and those
// versions are refused from now on, loaded or sealed. It returns how many
// versions it evicted.
func (r *Ring) Retire(keyID string, min int) int {
	r.mu.Lock()
	if min <= r.MinVersion(keyID) {
		r.mu.Unlock()
		return 0
	}
	r.floors.Store(keyID, min)
	vs := r.load(keyID)
	var gone []*entry
	if vs != nil {
		next := &versions{byVer: map[int]*entry{}}
		for v, e := range vs.byVer {
			if v < min {
				gone = append(gone, e)
				r.dropUsage(keyID, v)
				continue
			}
			next.byVer[v] = e
			next.current = max(next.current, v)
		}
		if len(next.byVer) == 0 {
			r.keys.Delete(keyID)
		} else {
			r.keys.Store(keyID, next)
		}
		r.n.Add(-int64(len(gone)))
	}
	r.mu.Unlock()
	for _, e := range gone {
		e.destroy()
	}
	return len(gone)
}

func errRetired(keyID string, version, floor int) error {
	return api.Errorf(api.CodeRevoked, "Version %d of key %s is retired: its minimum decryption version is %d.", version, keyID, floor)
}
