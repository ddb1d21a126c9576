package format

import (
	"encoding/binary"
	"fmt"
)

// SealedKey is the stateless-mode blob (docs/design.md, "Stateless sealed keys"): a data key sealed
// by a sidecar under its local master key, with its metadata and lease in
// the clear but authenticated.
//
//	magic "DSKB" | ver u8=1 | metadata (u32 len, 1..65536 bytes of JSON) |
//	lease_until i64 (unix nanos; 0 = none) | blob (rest, 1..16384 bytes:
//	the enclave's LocalSeal output, whose associated data is Header())
type SealedKey struct {
	Metadata   []byte
	LeaseUntil int64
	Blob       []byte
}

const (
	sealedMagic   = "DSKB"
	maxSealedMeta = 1 << 16
	maxSealedBlob = 16384
)

// Header is the bytes before Blob: the associated data of the seal.
func (s *SealedKey) Header() []byte {
	b := make([]byte, 0, 4+1+4+len(s.Metadata)+8)
	b = append(b, sealedMagic...)
	b = append(b, Version)
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.Metadata)))
	b = append(b, s.Metadata...)
	return binary.BigEndian.AppendUint64(b, uint64(s.LeaseUntil))
}

// Marshal encodes s.
func (s *SealedKey) Marshal() []byte { return append(s.Header(), s.Blob...) }

// ParseSealedKey decodes a sealed key blob; errors wrap ErrMalformed. The
// result copies out of b.
func ParseSealedKey(b []byte) (*SealedKey, error) {
	if len(b) < 4+1+4 || string(b[:4]) != sealedMagic {
		return nil, fmt.Errorf("%w: not a sealed key", ErrMalformed)
	}
	if b[4] != Version {
		return nil, fmt.Errorf("%w: sealed key version %d", ErrMalformed, b[4])
	}
	n := binary.BigEndian.Uint32(b[5:9])
	rest := b[9:]
	if n == 0 || n > maxSealedMeta || uint64(len(rest)) < uint64(n)+8+1 {
		return nil, fmt.Errorf("%w: sealed key metadata length", ErrMalformed)
	}
	s := &SealedKey{Metadata: append([]byte(nil), rest[:n]...)}
	s.LeaseUntil = int64(binary.BigEndian.Uint64(rest[n : n+8]))
	blob := rest[n+8:]
	if len(blob) > maxSealedBlob {
		return nil, fmt.Errorf("%w: sealed key blob too long", ErrMalformed)
	}
	s.Blob = append([]byte(nil), blob...)
	return s, nil
}
