package format

const (
	wrapMagic = "DWRP"
	wrapWhat  = "wrapped key"
)

// WrappedKey is one data key sealed by HPKE key transport to a recipient
// (a sidecar). The keys of one batch share one encapsulation (Enc) and
// differ in Index. Layout (docs/formats.md):
//
//	"DWRP" | version u8 | kem_id u16 | enc u16-len | index u32 | ciphertext (rest)
//
// Nothing in a WrappedKey is secret. internal/crypto's WrapBatch makes them
// and its Unwrapper opens them.
type WrappedKey struct {
	KEMID      uint16 // HPKE KEM identifier (RFC 9180 §7.1), not 0
	Enc        []byte // HPKE encapsulated key, 1..MaxEncLen bytes
	Index      uint32 // position in the batch
	Ciphertext []byte // nonce || ciphertext || tag, MinSealedLen..MaxSealedLen bytes
}

func (w *WrappedKey) validateHeader() error {
	if w.KEMID == 0 {
		return malformed(wrapWhat, "kem_id is 0")
	}
	return checkLen(wrapWhat, "enc", len(w.Enc), 1, MaxEncLen)
}

// Validate reports whether w can be marshaled; the error wraps ErrMalformed.
func (w *WrappedKey) Validate() error {
	return firstErr(w.validateHeader(), checkLen(wrapWhat, "ciphertext", len(w.Ciphertext), MinSealedLen, MaxSealedLen))
}

func (w *WrappedKey) headerLen() int { return 4 + 1 + 2 + 2 + len(w.Enc) + 4 }

func (w *WrappedKey) appendHeader(b []byte) []byte {
	b = appendWrapStart(b, Version, w.KEMID, w.Enc)
	return appendU32(b, w.Index)
}

// appendWrapStart writes the start that a WrappedKey and a WrappedBatch
// share: "DWRP" | version u8 | kem_id u16 | enc u16-len.
func appendWrapStart(b []byte, version byte, kemID uint16, enc []byte) []byte {
	b = append(b, wrapMagic...)
	b = append(b, version)
	b = appendU16(b, int(kemID))
	b = appendU16(b, len(enc))
	return append(b, enc...)
}

// Header returns the bytes of w before Ciphertext (KEM id, enc, index), in
// a new slice the caller owns: the start of the AEAD associated data of the
// wrapped key. Ciphertext need not be set yet. It panics if the header
// fields are invalid (see Validate).
func (w *WrappedKey) Header() []byte {
	mustValid(w.validateHeader())
	return w.appendHeader(make([]byte, 0, w.headerLen()))
}

// Marshal returns the encoding of w in a new slice the caller owns. It
// panics if w is invalid (see Validate).
func (w *WrappedKey) Marshal() []byte {
	mustValid(w.Validate())
	b := w.appendHeader(make([]byte, 0, w.headerLen()+len(w.Ciphertext)))
	return append(b, w.Ciphertext...)
}

// ParseWrappedKey parses a wrapped key. The result does not alias b. Every
// error wraps ErrMalformed.
func ParseWrappedKey(b []byte) (*WrappedKey, error) {
	r := &reader{b: b, what: wrapWhat}
	r.prefix(wrapMagic)
	var w WrappedKey
	w.KEMID = r.u16("kem_id")
	enc := r.lenPrefixed("enc", int(r.u16("enc length")), 1, MaxEncLen)
	w.Index = r.u32("index")
	ct := r.rest()
	if r.err != nil {
		return nil, r.err
	}
	if w.KEMID == 0 {
		return nil, malformed(wrapWhat, "kem_id is 0")
	}
	if err := checkLen(wrapWhat, "ciphertext", len(ct), MinSealedLen, MaxSealedLen); err != nil {
		return nil, err
	}
	w.Enc = append([]byte(nil), enc...)
	w.Ciphertext = append([]byte(nil), ct...)
	return &w, nil
}
