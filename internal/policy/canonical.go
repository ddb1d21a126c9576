package policy

import (
	"bytes"
	"encoding/binary"
	"slices"

	"github.com/dcaas/dcaas/api"
)

// Canonical returns the canonical bytes of p, which SeedKDF v2 binds into
// a derived key and its id (docs/formats.md, "Canonical policy bytes"). p
// is normalized first (Normalize; its errors are returned), then encoded
// with every integer big-endian and every string as its UTF-8 bytes:
//
//	nil policy: the empty string
//	policy    = u32(#rules) || rule... || u64(max_lease_seconds) || u64(max_operations) || u64(max_bytes) [|| release]
//	rule      = u32(#principals) || str(principal)... || u32(#actions) || str(action)...
//	release   = str(enclave) || str(attestation_profile) || u64(max_attestation_age_seconds)
//	str(s)    = u32(len(s)) || s
//
// Principals are in canonical pattern form and sorted, actions sorted (as
// Normalize leaves them); the encoded rules are then sorted bytewise and
// duplicates dropped, so rule order does not change the bytes. Absent or
// all-zero limits encode as three zeros. The release conditions follow
// only when the policy has some (after normalization, which makes a
// profile or an age imply enclave "tpm"), so a policy without them has
// the bytes it had before they existed. The encoding is fixed: a new
// field of api.Policy needs a new SeedKDF version (TestCanonicalFields).
func Canonical(p *api.Policy) ([]byte, error) {
	n, err := Normalize(p)
	if err != nil || n == nil {
		return nil, err
	}
	rules := make([][]byte, len(n.Rules))
	for i, r := range n.Rules {
		var b []byte
		b = binary.BigEndian.AppendUint32(b, uint32(len(r.Principals)))
		for _, s := range r.Principals {
			b = appendString(b, s)
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(r.Actions)))
		for _, a := range r.Actions {
			b = appendString(b, string(a))
		}
		rules[i] = b
	}
	slices.SortFunc(rules, bytes.Compare)
	rules = slices.CompactFunc(rules, bytes.Equal)
	out := binary.BigEndian.AppendUint32(nil, uint32(len(rules)))
	for _, r := range rules {
		out = append(out, r...)
	}
	l := Limits(n)
	out = binary.BigEndian.AppendUint64(out, uint64(l.MaxLeaseSeconds))
	out = binary.BigEndian.AppendUint64(out, uint64(l.MaxOperations))
	out = binary.BigEndian.AppendUint64(out, uint64(l.MaxBytes))
	if r := n.Release; r != nil {
		out = appendString(out, string(r.Enclave))
		out = appendString(out, r.AttestationProfile)
		out = binary.BigEndian.AppendUint64(out, uint64(r.MaxAttestationAgeSeconds))
	}
	return out, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
