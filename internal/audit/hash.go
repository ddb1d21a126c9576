package audit

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/dcaas/dcaas/internal/store"
)

const hashSize = sha256.Size

// hashDomain starts every hashed encoding, so an audit hash is never the
// hash of anything else dcaas encodes.
const hashDomain = "dcaas/v1 audit"

// recordHash returns the hash of r: SHA-256 over
//
//	field("dcaas/v1 audit")
//	u64(Seq)
//	u64(Time as Unix nanoseconds, two's complement)
//	field(Caller) field(Role) field(Action) field(Tenant)
//	field(KeyID) field(Outcome) field(Code)
//	field(PrevHash)
//
// where u64 is 8 bytes big-endian and field(x) is u32(len(x)) big-endian
// followed by the bytes of x. Every part has a fixed size or a length
// prefix, so two different records never encode alike. r.Hash is not
// covered; for the first record PrevHash is 32 zero bytes.
func recordHash(r store.AuditRecord) []byte {
	h := sha256.New()
	var buf []byte
	field := func(b []byte) {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(b)))
		buf = append(buf, b...)
	}
	field([]byte(hashDomain))
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.Seq))
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.Time.UnixNano()))
	for _, s := range []string{r.Caller, r.Role, r.Action, r.Tenant, r.KeyID, r.Outcome, r.Code} {
		field([]byte(s))
	}
	field(r.PrevHash)
	h.Write(buf)
	return h.Sum(nil)
}
