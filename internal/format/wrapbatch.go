package format

import (
	"math"
	"time"
)

// WrapBatchVersion is the format version of a WrappedBatch: version 2 of
// the "DWRP" wrapped-key format. Version 1 (WrappedKey) is one key per
// value and stays readable.
const WrapBatchVersion = 2

// Limits of a WrappedBatch.
const (
	MaxBatchKeys    = 100_000 // keys in one batch
	MaxRecipientLen = 128     // bytes of the recipient instance id
)

const batchWhat = "wrapped-key batch"

// WrappedBatch is a batch of data keys sealed by HPKE key transport to one
// sidecar instance, with one encapsulation for the whole batch (format
// version 2, docs/formats.md §2). Everything the recipient trusts travels
// inside it and is authenticated: the recipient, when the batch was issued
// and until when it may be imported, and per key the exact metadata bytes
// and the encryption count the KMS knew. Layout:
//
//	"DWRP" | 0x02 | kem_id u16 | enc u16-len | recipient u8-len |
//	issued_at u64 | not_after u64 | count u32 | count × entry
//	entry = metadata u32-len | encryptions u64 | sealed u16-len
//
// Times are Unix milliseconds. Nothing in a WrappedBatch is secret;
// internal/crypto's SealBatch makes them and OpenBatch opens them.
type WrappedBatch struct {
	KEMID     uint16 // HPKE KEM identifier (RFC 9180 §7.1), not 0
	Enc       []byte // HPKE encapsulated key, 1..MaxEncLen bytes
	Recipient string // the sidecar instance id, 1..MaxRecipientLen bytes of UTF-8
	IssuedAt  int64  // Unix milliseconds, >= 0
	NotAfter  int64  // Unix milliseconds, > IssuedAt: the recipient refuses the batch from then on
	Keys      []BatchEntry
}

// BatchEntry is one key of a WrappedBatch.
type BatchEntry struct {
	// Metadata is the key's metadata exactly as the KMS wrote it (canonical
	// JSON of api.KeyMetadata, the bytes an EKB carries), 1..MaxMetadataLen
	// bytes. The recipient parses these bytes; nothing is re-encoded.
	Metadata []byte
	// Encryptions is how many encryptions the KMS knows the version has
	// made, >= 0.
	Encryptions int64
	// Sealed is nonce || ciphertext || tag, MinSealedLen..MaxSealedLen bytes.
	Sealed []byte
}

// IssuedTime and NotAfterTime are IssuedAt and NotAfter as times.
func (w *WrappedBatch) IssuedTime() time.Time { return time.UnixMilli(w.IssuedAt) }

// NotAfterTime is NotAfter as a time.
func (w *WrappedBatch) NotAfterTime() time.Time { return time.UnixMilli(w.NotAfter) }

func (w *WrappedBatch) validateHeader() error {
	switch {
	case w.KEMID == 0:
		return malformed(batchWhat, "kem_id is 0")
	case w.IssuedAt < 0:
		return malformed(batchWhat, "issued_at is negative")
	case w.NotAfter <= w.IssuedAt:
		return malformed(batchWhat, "not_after is not after issued_at")
	}
	return firstErr(
		checkLen(batchWhat, "enc", len(w.Enc), 1, MaxEncLen),
		checkString(batchWhat, "recipient", w.Recipient, MaxRecipientLen),
		checkLen(batchWhat, "count", len(w.Keys), 1, MaxBatchKeys),
	)
}

func validateEntry(e *BatchEntry) error {
	if e.Encryptions < 0 {
		return malformed(batchWhat, "encryptions is negative")
	}
	return firstErr(
		checkLen(batchWhat, "metadata", len(e.Metadata), 1, MaxMetadataLen),
		checkLen(batchWhat, "sealed", len(e.Sealed), MinSealedLen, MaxSealedLen),
	)
}

// Validate reports whether w can be marshaled; the error wraps ErrMalformed.
func (w *WrappedBatch) Validate() error {
	if err := w.validateHeader(); err != nil {
		return err
	}
	for i := range w.Keys {
		if err := validateEntry(&w.Keys[i]); err != nil {
			return err
		}
	}
	return nil
}

func (w *WrappedBatch) headerLen() int {
	return 4 + 1 + 2 + 2 + len(w.Enc) + 1 + len(w.Recipient) + 8 + 8 + 4
}

func (w *WrappedBatch) appendHeader(b []byte) []byte {
	b = appendWrapStart(b, WrapBatchVersion, w.KEMID, w.Enc)
	b = append(b, byte(len(w.Recipient)))
	b = append(b, w.Recipient...)
	b = appendU64(b, uint64(w.IssuedAt))
	b = appendU64(b, uint64(w.NotAfter))
	return appendU32(b, uint32(len(w.Keys)))
}

// Header returns the batch header (every byte before the first entry, the
// count included) in a new slice the caller owns. Only the header fields
// and the number of Keys are used, so the entries' Sealed may be unset. It
// panics if the header fields are invalid (see Validate).
func (w *WrappedBatch) Header() []byte {
	mustValid(w.validateHeader())
	return w.appendHeader(make([]byte, 0, w.headerLen()))
}

// AppendEntryAAD appends the associated data of entry i to dst and returns
// the extended slice: header (see Header) || u32 i || u32 len(metadata) ||
// metadata || u64 encryptions — every byte of the batch that the entry's
// sealing does not cover itself.
func AppendEntryAAD(dst, header []byte, i int, e *BatchEntry) []byte {
	dst = append(dst, header...)
	dst = appendU32(dst, uint32(i))
	dst = appendU32(dst, uint32(len(e.Metadata)))
	dst = append(dst, e.Metadata...)
	return appendU64(dst, uint64(e.Encryptions))
}

// Marshal returns the encoding of w in a new slice the caller owns. It
// panics if w is invalid (see Validate).
func (w *WrappedBatch) Marshal() []byte {
	mustValid(w.Validate())
	n := w.headerLen()
	for i := range w.Keys {
		n += 4 + len(w.Keys[i].Metadata) + 8 + 2 + len(w.Keys[i].Sealed)
	}
	b := w.appendHeader(make([]byte, 0, n))
	for i := range w.Keys {
		e := &w.Keys[i]
		b = appendU32(b, uint32(len(e.Metadata)))
		b = append(b, e.Metadata...)
		b = appendU64(b, uint64(e.Encryptions))
		b = appendU16(b, len(e.Sealed))
		b = append(b, e.Sealed...)
	}
	return b
}

// IsWrappedBatch reports whether b starts like a WrappedBatch (magic and
// version 2); it does not parse the rest.
func IsWrappedBatch(b []byte) bool {
	return len(b) > 5 && string(b[:4]) == wrapMagic && b[4] == WrapBatchVersion
}

// ParseWrappedBatch parses a wrapped-key batch. The result does not alias
// b. Every error wraps ErrMalformed.
func ParseWrappedBatch(b []byte) (*WrappedBatch, error) {
	r := &reader{b: b, what: batchWhat}
	r.prefixVersion(wrapMagic, WrapBatchVersion)
	var w WrappedBatch
	w.KEMID = r.u16("kem_id")
	enc := r.lenPrefixed("enc", int(r.u16("enc length")), 1, MaxEncLen)
	rcpt := r.lenPrefixed("recipient", int(r.u8("recipient length")), 1, MaxRecipientLen)
	issued, notAfter := r.u64("issued_at"), r.u64("not_after")
	count := r.u32("count")
	if r.err != nil {
		return nil, r.err
	}
	if issued > math.MaxInt64 || notAfter > math.MaxInt64 {
		return nil, malformed(batchWhat, "time out of range")
	}
	// Every entry takes at least 4+1+8+2+MinSealedLen bytes: bound count by
	// the input before allocating.
	if count == 0 || count > MaxBatchKeys || uint64(count)*uint64(15+MinSealedLen) > uint64(len(r.b)) {
		return nil, malformed(batchWhat, "count %d does not fit the input", count)
	}
	w.Enc = append([]byte(nil), enc...)
	w.Recipient = string(rcpt)
	w.IssuedAt, w.NotAfter = int64(issued), int64(notAfter)
	w.Keys = make([]BatchEntry, count)
	for i := range w.Keys {
		e := &w.Keys[i]
		md := r.lenPrefixed("metadata", int(r.u32("metadata length")), 1, MaxMetadataLen)
		encs := r.u64("encryptions")
		sealed := r.lenPrefixed("sealed", int(r.u16("sealed length")), MinSealedLen, MaxSealedLen)
		if r.err != nil {
			return nil, r.err
		}
		if encs > math.MaxInt64 {
			return nil, malformed(batchWhat, "encryptions out of range")
		}
		e.Metadata = append([]byte(nil), md...)
		e.Encryptions = int64(encs)
		e.Sealed = append([]byte(nil), sealed...)
	}
	if len(r.b) != 0 {
		return nil, malformed(batchWhat, "%d trailing bytes", len(r.b))
	}
	if err := w.validateHeader(); err != nil {
		return nil, err
	}
	return &w, nil
}

// TransportInfoV2 is the HPKE info of a WrappedBatch sealed to a sidecar
// instance: "dcaas/v2 key-transport" || 0x00 || instance id.
func TransportInfoV2(instanceID string) []byte {
	return []byte("dcaas/v2 key-transport\x00" + instanceID)
}
