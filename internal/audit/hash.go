package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"

	"github.com/dcaas/dcaas/internal/store"
)

const hashSize = sha256.Size

// Domain separation: every hashed or signed encoding starts with its own
// label, so an audit hash or signature is never one of anything else dcaas
// encodes, and a record signature is never a checkpoint signature.
const (
	hashDomain       = "dcaas/v1 audit"
	recordSigDomain  = "dcaas/v1 audit-record-sig"
	checkpointDomain = "dcaas/v1 audit-checkpoint"
)

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
// prefix, so two different records never encode alike. r.Hash and r.Sig
// are not covered; for the first record PrevHash is 32 zero bytes.
func recordHash(r store.AuditRecord) []byte {
	var buf []byte
	buf = field(buf, []byte(hashDomain))
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.Seq))
	buf = binary.BigEndian.AppendUint64(buf, uint64(r.Time.UnixNano()))
	for _, s := range []string{r.Caller, r.Role, r.Action, r.Tenant, r.KeyID, r.Outcome, r.Code} {
		buf = field(buf, []byte(s))
	}
	buf = field(buf, r.PrevHash)
	sum := sha256.Sum256(buf)
	return sum[:]
}

// recordSigInput is what the audit key signs for record seq whose hash is
// hash (Ed25519, RFC 8032, over these bytes):
//
//	field("dcaas/v1 audit-record-sig") u64(seq) field(hash)
func recordSigInput(seq int64, hash []byte) []byte {
	buf := field(nil, []byte(recordSigDomain))
	buf = binary.BigEndian.AppendUint64(buf, uint64(seq))
	return field(buf, hash)
}

// checkpointSigInput is what the audit key signs for a checkpoint:
//
//	field("dcaas/v1 audit-checkpoint") u64(Seq)
//	u64(Time as Unix nanoseconds) field(Hash)
//
// Hash is the hash of record Seq (32 zero bytes for Seq 0, the empty log).
func checkpointSigInput(cp store.AuditCheckpoint) []byte {
	buf := field(nil, []byte(checkpointDomain))
	buf = binary.BigEndian.AppendUint64(buf, uint64(cp.Seq))
	buf = binary.BigEndian.AppendUint64(buf, uint64(cp.Time.UnixNano()))
	return field(buf, cp.Hash)
}

// field appends u32(len(b)) big-endian and b to buf.
func field(buf, b []byte) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(b)))
	return append(buf, b...)
}

func hashEqual(a, b []byte) bool { return bytes.Equal(a, b) }
