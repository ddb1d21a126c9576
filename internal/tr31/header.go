package tr31

import (
	"fmt"
	"strconv"
	"strings"
)

// Header is a key block's clear header (ANSI X9.143 §6.2, table 1): the
// fixed 16 characters and the optional blocks. It holds no secret. The
// zero value is not a valid header; Parse fills one in, and a caller of
// Wrap sets at least Version, KeyUsage, Algorithm, ModeOfUse, KeyVersion,
// Exportability and KeyContext.
type Header struct {
	Version       byte   // key block version ID: 'D' (AES key derivation binding)
	KeyUsage      string // two characters, e.g. "D0" (symmetric data encryption), "M7" (HMAC), "K1" (KBPK)
	Algorithm     byte   // 'A' AES, 'H' HMAC, 'T' TDES, ...
	ModeOfUse     byte   // 'B' encrypt and decrypt, 'E', 'D', 'C' MAC generate and verify, 'G', 'V', 'N', ...
	KeyVersion    string // two characters: "00" (none), a version, or 'c' and a component number
	Exportability byte   // 'E' exportable under a trusted key, 'N' not exportable, 'S' sensitive
	KeyContext    byte   // '0' determined by the wrapping key, '1' storage only, '2' exchange only
	// Blocks are the optional blocks in their order, the padding block PB
	// included (Wrap adds or resizes one as needed).
	Blocks []Block
}

// Block is an optional block: a two-character ID and printable ASCII data.
type Block struct {
	ID   string
	Data string
	// extended records that the block arrived with an extended length
	// ("00", "04" and four hex digits) although a short one would have done,
	// so that Marshal gives back the bytes it was parsed from.
	extended bool
}

// Find returns the data of the first optional block with id.
func (h *Header) Find(id string) (string, bool) {
	for _, b := range h.Blocks {
		if b.ID == id {
			return b.Data, true
		}
	}
	return "", false
}

const (
	fixedLen  = 16 // the fixed header fields
	blockSize = 16 // AES: the header and the key data are whole AES blocks
	macLen    = 16 // version D: a full AES-CMAC
	maxLen    = 9999
)

// The values ANSI X9.143 (2021/2022, tables 2-6) defines. Values that start
// with a digit are reserved for proprietary use and accepted as such.
var (
	keyUsages = strings.Fields(`B0 B1 B2 B3 C0 D0 D1 D2 D3 E0 E1 E2 E3 E4 E5 E6 E7 I0
		K0 K1 K2 K3 K4 M0 M1 M2 M3 M4 M5 M6 M7 M8 P0 P1 S0 S1 S2 V0 V1 V2 V3 V4 V5`)
	algorithms     = "ADEHRST"
	modesOfUse     = "BCDEGNSTVXY"
	exportability  = "ENS"
	keyContexts    = "012"
	hexDigits      = "0123456789ABCDEF"
	decimalDigits  = "0123456789"
	alphanumerics  = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	hexFormatBlock = map[string]bool{"HM": true, "KC": true, "KP": true, "PK": true, "BI": true, "IK": true, "KS": true}
)

func only(s, set string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(set, s[i]) < 0 {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// check validates the fixed fields and the optional blocks' IDs and data.
func (h *Header) check() error {
	switch {
	case h.Version != 'D':
		if printable(string(h.Version)) && h.Version != 0 {
			return unsupported("version ID", string(h.Version), "only version D (AES key block protection key, key derivation binding) is supported")
		}
		return formatErr("version ID", "", "missing or not printable")
	case len(h.KeyUsage) != 2 || !(only(h.KeyUsage, decimalDigits) || contains(keyUsages, h.KeyUsage)):
		return formatErr("key usage", h.KeyUsage, "not a key usage ANSI X9.143 defines (two characters such as D0, K1, M7, or two digits for proprietary use)")
	case !oneOf(h.Algorithm, algorithms):
		return formatErr("algorithm", string(h.Algorithm), "not an algorithm ANSI X9.143 defines (A, D, E, H, R, S, T, or a digit)")
	case !oneOf(h.ModeOfUse, modesOfUse):
		return formatErr("mode of use", string(h.ModeOfUse), "not a mode of use ANSI X9.143 defines (B, C, D, E, G, N, S, T, V, X, Y, or a digit)")
	case len(h.KeyVersion) != 2 || !only(h.KeyVersion, alphanumerics):
		return formatErr("key version number", h.KeyVersion, "must be two alphanumeric characters (00 for none)")
	case h.KeyVersion[0] == 'c' && !(h.KeyVersion[1] >= '1' && h.KeyVersion[1] <= '9'):
		return formatErr("key version number", h.KeyVersion, "a key component is marked c1 to c9")
	case h.Exportability == 0 || strings.IndexByte(exportability, h.Exportability) < 0:
		return formatErr("exportability", string(h.Exportability), "must be E (exportable under a trusted key), N (not exportable) or S (sensitive)")
	case h.KeyContext == 0 || strings.IndexByte(keyContexts, h.KeyContext) < 0:
		return formatErr("key context", string(h.KeyContext), "must be 0 (determined by the wrapping key), 1 (storage only) or 2 (exchange only)")
	case len(h.Blocks) > 99:
		return formatErr("number of optional blocks", strconv.Itoa(len(h.Blocks)), "at most 99")
	}
	for i, b := range h.Blocks {
		if err := b.check(i == len(h.Blocks)-1); err != nil {
			return err
		}
	}
	return nil
}

func oneOf(c byte, set string) bool {
	return (c >= '0' && c <= '9') || (c != 0 && strings.IndexByte(set, c) >= 0)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (b *Block) check(last bool) error {
	field := "optional block " + b.ID
	switch {
	case len(b.ID) != 2 || !only(b.ID, alphanumerics):
		return formatErr("optional block ID", b.ID, "must be two alphanumeric characters")
	case !printable(b.Data):
		return formatErr(field, "", "data must be printable ASCII")
	case b.ID == "PB" && !last:
		return formatErr(field, "", "the padding block must be the last optional block")
	case hexFormatBlock[b.ID] && (b.Data == "" || !only(b.Data, hexDigits)):
		return formatErr(field, b.Data, "data must be upper-case hex digits")
	case b.ID == "HM" && len(b.Data) != 2:
		return formatErr(field, b.Data, "names the HMAC hash in two hex digits (21: SHA-256)")
	}
	return nil
}

// encodedLen is the length of b in the header.
func (b *Block) encodedLen() int {
	if n := 4 + len(b.Data); n <= 255 && !b.extended {
		return n
	}
	return 10 + len(b.Data)
}

// appendBlock appends b's encoding.
func (b *Block) appendTo(out []byte) ([]byte, error) {
	n := b.encodedLen()
	if n > 0xffff {
		return nil, formatErr("optional block "+b.ID, "", "%d characters of data is too long", len(b.Data))
	}
	out = append(out, b.ID...)
	if n <= 255 && !b.extended {
		out = fmt.Appendf(out, "%02X", n)
	} else {
		out = fmt.Appendf(out, "0004%04X", n)
	}
	return append(out, b.Data...), nil
}

// headerLen is the length of the header with its optional blocks.
func (h *Header) headerLen() int {
	n := fixedLen
	for i := range h.Blocks {
		n += h.Blocks[i].encodedLen()
	}
	return n
}

// marshal encodes the header of a block of total length n.
func (h *Header) marshal(n int) ([]byte, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	if n > maxLen {
		return nil, formatErr("key block length", strconv.Itoa(n), "a key block has at most %d characters", maxLen)
	}
	out := make([]byte, 0, h.headerLen())
	out = append(out, h.Version)
	out = fmt.Appendf(out, "%04d", n)
	out = append(out, h.KeyUsage...)
	out = append(out, h.Algorithm, h.ModeOfUse)
	out = append(out, h.KeyVersion...)
	out = append(out, h.Exportability)
	out = fmt.Appendf(out, "%02d", len(h.Blocks))
	out = append(out, h.KeyContext, '0')
	var err error
	for i := range h.Blocks {
		if out, err = h.Blocks[i].appendTo(out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// parseHeader reads the header at the start of s: its fields, its optional
// blocks, and the total length its length field states. It returns the
// header's length in s.
func parseHeader(s string) (*Header, int, int, error) {
	if len(s) < fixedLen {
		return nil, 0, 0, formatErr("header", "", "a key block starts with a 16-character header; this one has %d characters", len(s))
	}
	if !printable(s[:fixedLen]) {
		return nil, 0, 0, formatErr("header", "", "the header must be printable ASCII")
	}
	h := &Header{
		Version: s[0], KeyUsage: s[5:7], Algorithm: s[7], ModeOfUse: s[8], KeyVersion: s[9:11],
		Exportability: s[11], KeyContext: s[14],
	}
	if h.Version != 'D' {
		return nil, 0, 0, h.check()
	}
	if !only(s[1:5], decimalDigits) {
		return nil, 0, 0, formatErr("key block length", s[1:5], "must be four decimal digits")
	}
	total, _ := strconv.Atoi(s[1:5])
	if !only(s[12:14], decimalDigits) {
		return nil, 0, 0, formatErr("number of optional blocks", s[12:14], "must be two decimal digits")
	}
	count, _ := strconv.Atoi(s[12:14])
	if s[15] != '0' {
		return nil, 0, 0, formatErr("reserved field", s[15:16], "must be 0")
	}
	i := fixedLen
	for range count {
		b, n, err := parseBlock(s[i:])
		if err != nil {
			return nil, 0, 0, err
		}
		h.Blocks = append(h.Blocks, b)
		i += n
	}
	if err := h.check(); err != nil {
		return nil, 0, 0, err
	}
	return h, i, total, nil
}

// parseBlock reads one optional block at the start of s and returns it
// with its encoded length.
func parseBlock(s string) (Block, int, error) {
	if len(s) < 4 {
		return Block{}, 0, formatErr("optional block", clip(s), "truncated: an optional block starts with a 2-character ID and a 2-digit hex length")
	}
	id := s[:2]
	field := "optional block " + id
	if !only(id, alphanumerics) {
		return Block{}, 0, formatErr("optional block ID", id, "must be two alphanumeric characters")
	}
	if !only(s[2:4], hexDigits) {
		return Block{}, 0, formatErr(field, s[2:4], "length must be two upper-case hex digits")
	}
	n, _ := strconv.ParseUint(s[2:4], 16, 8)
	head, extended := 4, false
	if n == 0 { // extended length: "00", the length's length "04", four hex digits
		if len(s) < 10 {
			return Block{}, 0, formatErr(field, "", "truncated extended length")
		}
		if s[4:6] != "04" {
			return Block{}, 0, formatErr(field, s[4:6], "the length of an extended length must be 04 (ANSI X9.143 table 1)")
		}
		if !only(s[6:10], hexDigits) {
			return Block{}, 0, formatErr(field, s[6:10], "extended length must be four upper-case hex digits")
		}
		n, _ = strconv.ParseUint(s[6:10], 16, 16)
		head, extended = 10, true
	}
	if int(n) < head {
		return Block{}, 0, formatErr(field, "", "length %d does not cover its own ID and length (%d characters)", n, head)
	}
	if int(n) > len(s) {
		return Block{}, 0, formatErr(field, "", "length %d runs past the end of the key block", n)
	}
	b := Block{ID: id, Data: s[head:n], extended: extended}
	return b, int(n), nil
}
