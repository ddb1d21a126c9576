package tr31

import (
	"encoding/hex"
	"fmt"
	"strconv"

	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/secret"
)

// KeyBlock is a parsed version D key block: its header and its protected
// parts. Nothing in it is secret without the KBPK.
type KeyBlock struct {
	Header Header
	// EncryptedKeyData is the AES-CBC encryption of the clear key data.
	EncryptedKeyData []byte
	// MAC is the 16-byte AES-CMAC of the header and the clear key data.
	MAC []byte
}

// Parse reads a version D key block's structure and header without a key:
// what a caller needs to decide whether it wants the block before it
// unwraps it. It checks the length field against the block's length, every
// header field, the optional blocks, that the header is a whole number of
// AES blocks, and that the rest is upper-case hex of whole AES blocks of key
// data and a 16-byte MAC. Errors are *FieldError.
func Parse(block []byte) (*KeyBlock, error) {
	s := string(block)
	h, hlen, total, err := parseHeader(s)
	if err != nil {
		return nil, err
	}
	if total != len(s) {
		return nil, formatErr("key block length", s[1:5], "the block has %d characters", len(s))
	}
	if hlen%blockSize != 0 {
		return nil, formatErr("optional blocks", "", "the header is %d characters, not a multiple of %d: a padding block (PB) is missing or has the wrong length", hlen, blockSize)
	}
	rest := s[hlen:]
	if len(rest) < 2*(blockSize+macLen) || len(rest)%(2*blockSize) != 0 {
		return nil, formatErr("key data", "", "%d characters after the header; version D needs whole 16-byte blocks of key data and a 16-byte MAC, in hex", len(rest))
	}
	if !only(rest, hexDigits) {
		return nil, formatErr("key data", "", "the encrypted key data and the MAC must be upper-case hex digits")
	}
	raw, _ := hex.DecodeString(rest)
	n := len(raw) - macLen
	return &KeyBlock{Header: *h, EncryptedKeyData: raw[:n:n], MAC: raw[n:]}, nil
}

// Marshal encodes kb; for a block Parse returned, it gives back exactly the
// parsed bytes.
func (kb *KeyBlock) Marshal() ([]byte, error) {
	if len(kb.MAC) != macLen || len(kb.EncryptedKeyData) < blockSize || len(kb.EncryptedKeyData)%blockSize != 0 {
		return nil, formatErr("key data", "", "version D needs whole 16-byte blocks of key data and a 16-byte MAC")
	}
	hlen := kb.Header.headerLen()
	if hlen%blockSize != 0 {
		return nil, formatErr("optional blocks", "", "the header is %d characters, not a multiple of %d", hlen, blockSize)
	}
	total := hlen + 2*(len(kb.EncryptedKeyData)+macLen)
	out, err := kb.Header.marshal(total)
	if err != nil {
		return nil, err
	}
	out = hex.AppendEncode(out, kb.EncryptedKeyData)
	out = hex.AppendEncode(out, kb.MAC)
	return upper(out, hlen), nil
}

// upper turns the hex after the header to upper case.
func upper(b []byte, from int) []byte {
	for i := from; i < len(b); i++ {
		if b[i] >= 'a' && b[i] <= 'f' {
			b[i] -= 'a' - 'A'
		}
	}
	return b
}

// Unwrap parses block, authenticates it under the AES key block protection
// key kbpk (16, 24 or 32 bytes) and returns its header and the key, which
// is secret and the caller's to wipe. A wrong KBPK or any modification of
// the block is ErrAuth; a malformed block is a *FieldError.
func Unwrap(kbpk *secret.Bytes, block []byte) (*Header, *secret.Bytes, error) {
	kb, err := Parse(block)
	if err != nil {
		return nil, nil, err
	}
	// A KP block names the KBPK the block was made under: a different one
	// is said as such, before the MAC would refuse it anonymously.
	if err := kb.Header.checkKCV("KP", kbpk); err != nil {
		return nil, nil, err
	}
	clearData, err := kb.open(kbpk, block)
	if err != nil {
		return nil, nil, err
	}
	defer clearData.Wipe()
	d := clearData.Expose()
	bits := int(d[0])<<8 | int(d[1])
	if bits == 0 || bits%8 != 0 || bits/8 > len(d)-2 {
		// Authenticated, so the sender wrapped it this way: not a key.
		return nil, nil, formatErr("key length", strconv.Itoa(bits), "the authenticated key data holds no whole key of that many bits (%d bytes of key data)", len(d)-2)
	}
	key := secret.Copy(d[2 : 2+bits/8])
	if kb.Header.Algorithm == 'A' { // X9.24-1 defines the KC methods for AES keys (and TDES, not taken here)
		if err := kb.Header.checkKCV("KC", key); err != nil {
			key.Wipe()
			return nil, nil, err
		}
	}
	return &kb.Header, key, nil
}

// checkKCV checks the optional block id (KC: the wrapped key's check value,
// KP: the KBPK's; ANSI X9.143 §6.3.6), if h has one, against key: two hex
// digits naming the method (00 legacy, at most 3 bytes; 01 CMAC, at most
// 5; ANSI X9.24-1:2017 Annex A), then the leftmost bytes of the check
// value in hex. A block that names another value refuses the key block.
func (h *Header) checkKCV(id string, key *secret.Bytes) error {
	data, ok := h.Find(id)
	if !ok {
		return nil
	}
	field := "optional block " + id
	method, digits := data[:min(2, len(data))], data[min(2, len(data)):]
	var maxBytes int
	switch method {
	case "00":
		maxBytes = 3
	case "01":
		maxBytes = 5
	default:
		return formatErr(field, data, "names key check value method %q; ANSI X9.24-1 defines 00 (legacy) and 01 (CMAC)", method)
	}
	kcv, err := hex.DecodeString(digits)
	if err != nil || len(kcv) == 0 || len(kcv) > maxBytes {
		return formatErr(field, data, "holds no check value of 1 to %d bytes in hex after its method", maxBytes)
	}
	match, err := kcrypto.KCVPrefix(key, kcv, method == "01")
	if err != nil {
		return unsupported(field, data, "the check value cannot be computed for a key of %d bytes", key.Len())
	}
	if !match {
		if id == "KP" {
			return formatErr(field, data, "is the check value of another key block protection key: the block was made under a different KBPK")
		}
		return formatErr(field, data, "is not the check value of the key the block holds")
	}
	return nil
}

// open authenticates kb (parsed from block) and returns its clear key
// data (length, key and padding), which the caller wipes.
func (kb *KeyBlock) open(kbpk *secret.Bytes, block []byte) (*secret.Bytes, error) {
	kbek, kbak, err := derive(kbpk)
	if err != nil {
		return nil, err
	}
	defer kbek.Wipe()
	defer kbak.Wipe()
	clearData, err := kcrypto.DecryptAESCBC(kbek, kb.MAC, kb.EncryptedKeyData)
	if err != nil {
		return nil, err
	}
	hlen := len(block) - 2*(len(kb.EncryptedKeyData)+macLen)
	m, err := kcrypto.NewCMAC(kbak)
	if err != nil {
		clearData.Wipe()
		return nil, err
	}
	msg := append([]byte(string(block[:hlen])), clearData.Expose()...)
	ok := m.Verify(msg, kb.MAC)
	secret.Zero(msg)
	if !ok {
		clearData.Wipe()
		return nil, ErrAuth
	}
	return clearData, nil
}

// Wrap builds a version D key block of key (which stays the caller's)
// under the AES key block protection key kbpk with header h. The key data
// is padded with random bytes to a whole number of AES blocks; Wrap adds,
// resizes or drops a padding block (PB) at the end of h's optional blocks
// so that the header is a whole number of AES blocks. h's KeyVersion etc.
// are checked as Parse checks them.
func Wrap(kbpk *secret.Bytes, h Header, key *secret.Bytes) ([]byte, error) {
	return wrap(kbpk, h, key, kcrypto.Random)
}

// wrap is Wrap with the padding's source: random(n) returns n bytes.
func wrap(kbpk *secret.Bytes, h Header, key *secret.Bytes, random func(int) []byte) ([]byte, error) {
	k := key.Expose()
	if len(k) == 0 || len(k) > 0x1fff {
		return nil, fmt.Errorf("tr31: a key of %d bytes cannot be wrapped", len(k))
	}
	n := 2 + len(k)
	pad := (blockSize - n%blockSize) % blockSize
	clearData := make([]byte, 0, n+pad)
	clearData = append(clearData, byte(len(k)*8>>8), byte(len(k)*8))
	clearData = append(clearData, k...)
	clearData = append(clearData, random(pad)...)
	cd := secret.New(clearData)
	defer cd.Wipe()
	padHeader(&h)
	return seal(kbpk, &h, cd)
}

// padHeader makes h's optional blocks end in a padding block of the right
// length, or in none when none is needed.
func padHeader(h *Header) {
	if l := len(h.Blocks); l > 0 && h.Blocks[l-1].ID == "PB" {
		h.Blocks = h.Blocks[:l-1]
	}
	if r := h.headerLen() % blockSize; r != 0 {
		need := blockSize - r // PB is 4 characters and its data
		if need < 4 {
			need += blockSize
		}
		data := make([]byte, need-4)
		for i := range data {
			data[i] = '0'
		}
		h.Blocks = append(h.Blocks, Block{ID: "PB", Data: string(data)})
	}
}

// seal builds a block of the clear key data (length, key, padding) under
// kbpk with header h, which must already be a whole number of AES blocks.
func seal(kbpk *secret.Bytes, h *Header, clearData *secret.Bytes) ([]byte, error) {
	d := clearData.Expose()
	if len(d) < blockSize || len(d)%blockSize != 0 {
		return nil, fmt.Errorf("tr31: clear key data of %d bytes is not whole AES blocks", len(d))
	}
	hlen := h.headerLen()
	if hlen%blockSize != 0 {
		return nil, formatErr("optional blocks", "", "the header is %d characters, not a multiple of %d", hlen, blockSize)
	}
	total := hlen + 2*(len(d)+macLen)
	head, err := h.marshal(total)
	if err != nil {
		return nil, err
	}
	kbek, kbak, err := derive(kbpk)
	if err != nil {
		return nil, err
	}
	defer kbek.Wipe()
	defer kbak.Wipe()
	m, err := kcrypto.NewCMAC(kbak)
	if err != nil {
		return nil, err
	}
	msg := append(head[:len(head):len(head)], d...)
	mac := m.Sum(msg)
	secret.Zero(msg)
	ct, err := kcrypto.EncryptAESCBC(kbek, mac[:], d)
	if err != nil {
		return nil, err
	}
	out := hex.AppendEncode(head, ct)
	out = hex.AppendEncode(out, mac[:])
	return upper(out, hlen), nil
}

// derive returns the key block encryption and authentication keys of an
// AES KBPK (TR-31:2018 §5.3.3.2, ANSI X9.143 §7.3): SP 800-108 counter
// mode with AES-CMAC as the PRF. Both are the KBPK's length and secret.
func derive(kbpk *secret.Bytes) (kbek, kbak *secret.Bytes, err error) {
	var alg, bits uint16
	switch kbpk.Len() {
	case 16:
		alg, bits = 2, 128
	case 24:
		alg, bits = 3, 192
	case 32:
		alg, bits = 4, 256
	default:
		return nil, nil, unsupported("key block protection key", "", "version D needs an AES key of 16, 24 or 32 bytes, not %d", kbpk.Len())
	}
	m, err := kcrypto.NewCMAC(kbpk)
	if err != nil {
		return nil, nil, err
	}
	one := func(usage uint16) *secret.Bytes {
		out := make([]byte, 0, 32)
		for counter := byte(1); len(out) < int(bits/8); counter++ {
			in := [8]byte{counter, byte(usage >> 8), byte(usage), 0, byte(alg >> 8), byte(alg), byte(bits >> 8), byte(bits)}
			sum := m.Sum(in[:])
			out = append(out, sum[:]...)
			clear(sum[:])
		}
		k := secret.Copy(out[:bits/8])
		secret.Zero(out)
		return k
	}
	return one(0x0000), one(0x0001), nil
}
