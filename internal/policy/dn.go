package policy

import (
	"cmp"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// ErrInvalidDN is wrapped by every error about a malformed distinguished
// name or principal pattern.
var ErrInvalidDN = errors.New("policy: invalid distinguished name")

// Limits NormalizeDN enforces.
const (
	MaxDNLen    = 4096 // bytes in a DN string
	MaxRDNPairs = 32   // attribute-value pairs in one multi-valued RDN
)

// attrTypes maps the upper-cased names and dotted OIDs dcaas knows to the
// canonical short name. Other descriptors are rejected; other numeric OIDs
// are kept as dotted strings.
var attrTypes = map[string]string{
	"CN": "CN", "COMMONNAME": "CN", "2.5.4.3": "CN",
	"SERIALNUMBER": "SERIALNUMBER", "2.5.4.5": "SERIALNUMBER",
	"C": "C", "COUNTRYNAME": "C", "2.5.4.6": "C",
	"L": "L", "LOCALITYNAME": "L", "2.5.4.7": "L",
	"ST": "ST", "STATEORPROVINCENAME": "ST", "2.5.4.8": "ST",
	"STREET": "STREET", "STREETADDRESS": "STREET", "2.5.4.9": "STREET",
	"O": "O", "ORGANIZATIONNAME": "O", "2.5.4.10": "O",
	"OU": "OU", "ORGANIZATIONALUNITNAME": "OU", "2.5.4.11": "OU",
	"POSTALCODE": "POSTALCODE", "2.5.4.17": "POSTALCODE",
	"DC": "DC", "DOMAINCOMPONENT": "DC", "0.9.2342.19200300.100.1.25": "DC",
	"UID": "UID", "USERID": "UID", "0.9.2342.19200300.100.1.1": "UID",
}

// ava is one attribute type and value. A string value is held as parts
// split at wildcards: a DN value has exactly one part; a pattern value
// "a*b" has parts ["a", "b"]. A value given in #hex form that is not a
// plain string is kept as its canonical text in hex ("#" + lower-case hex)
// and never matches a string.
type ava struct {
	typ   string
	parts []string
	hex   string
}

type rdn []ava

// dn is a parsed DN or pattern. any is set for the whole pattern "*".
type dn struct {
	rdns []rdn
	any  bool
}

// NormalizeDN parses s as an RFC 4514 distinguished name and returns its
// canonical form:
//
//   - attribute types are the upper-case short names CN, O, OU, C, L, ST,
//     STREET, POSTALCODE, DC, UID and SERIALNUMBER (long names and their
//     dotted OIDs map to them); other types must be dotted OIDs, kept as
//     they are; unknown descriptors are rejected;
//   - spaces around types, "=", "," and "+" are dropped, as are unescaped
//     leading and trailing spaces of a value;
//   - values given as #hex are decoded when they are a UTF8String,
//     PrintableString or IA5String, so "2.5.4.3=#0c03616263" is "CN=abc";
//   - RDNs are joined with "," in the given order; the attribute-value
//     pairs of a multi-valued RDN are sorted and joined with "+";
//   - values are re-escaped minimally, as crypto/x509/pkix does: one of
//     `"+,;<>\` anywhere, "#" first, and a space first or last get a
//     backslash.
//
// Values are case-sensitive and must be valid UTF-8 without control
// characters. The empty DN, DNs longer than MaxDNLen bytes and RDNs of
// more than MaxRDNPairs pairs are rejected. Errors wrap ErrInvalidDN.
func NormalizeDN(s string) (string, error) {
	r := parseMemo(s, false)
	return r.canonical, r.err
}

// invalid builds an error wrapping ErrInvalidDN.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidDN, fmt.Sprintf(format, args...))
}

// parse parses a DN, or a principal pattern when pattern is set (then an
// unescaped "*" in a value is a wildcard and "\*" a literal star).
func parse(s string, pattern bool) (dn, error) {
	r := parseMemo(s, pattern)
	return r.d, r.err
}

// sameDN reports whether a and b are valid DNs with one canonical form.
func sameDN(a, b string) bool {
	ra, rb := parseMemo(a, false), parseMemo(b, false)
	return ra.err == nil && rb.err == nil && ra.canonical == rb.canonical
}

// parseMemo is parse through the memo, with the DN's canonical form.
func parseMemo(s string, pattern bool) parseResult {
	k := parseKey{s: s, pattern: pattern}
	if v, ok := parsed.Load(k); ok {
		return v.(parseResult)
	}
	var r parseResult
	if r.d, r.err = parseDN(s, pattern); r.err == nil {
		r.canonical = r.d.String(pattern)
	}
	if parsedCount.Add(1) > maxParsed {
		parsed.Clear() // bounded: a burst of distinct DNs starts it over
		parsedCount.Store(1)
	}
	parsed.Store(k, r)
	return r
}

// parsed memoizes parse (a dn is never changed once parsed): the KMS and
// the sidecar evaluate the same few DNs — a tenant's custodians, its
// policies' principals — for every key of a batch and every operation,
// and parsing one costs microseconds and dozens of allocations. At most
// about maxParsed entries are kept.
var (
	parsed      sync.Map // parseKey → parseResult
	parsedCount atomic.Int64
)

const maxParsed = 4096

type parseKey struct {
	s       string
	pattern bool
}

type parseResult struct {
	d         dn
	canonical string // d.String(pattern) when err is nil
	err       error
}

// parseDN is parse without the memo.
func parseDN(s string, pattern bool) (dn, error) {
	if len(s) > MaxDNLen {
		return dn{}, invalid("longer than %d bytes", MaxDNLen)
	}
	// Trailing spaces are left to the value parser: `CN=a\ ` ends in an
	// escaped space.
	switch strings.Trim(s, " ") {
	case "":
		return dn{}, invalid("empty")
	case "*":
		if pattern {
			return dn{any: true}, nil
		}
	}
	p := parser{s: strings.TrimLeft(s, " "), pattern: pattern}
	var d dn
	for {
		r, err := p.rdn()
		if err != nil {
			return dn{}, err
		}
		d.rdns = append(d.rdns, r)
		if p.done() {
			return d, nil
		}
		p.pos++ // the ","
	}
}

type parser struct {
	s       string
	pos     int
	pattern bool
}

func (p *parser) done() bool { return p.pos >= len(p.s) }

func (p *parser) skipSpaces() {
	for !p.done() && p.s[p.pos] == ' ' {
		p.pos++
	}
}

// rdn parses attribute-value pairs up to an unescaped "," or the end.
func (p *parser) rdn() (rdn, error) {
	var r rdn
	for {
		a, err := p.ava()
		if err != nil {
			return nil, err
		}
		r = append(r, a)
		if len(r) > MaxRDNPairs {
			return nil, invalid("more than %d attributes in one RDN", MaxRDNPairs)
		}
		if p.done() || p.s[p.pos] == ',' {
			break
		}
		p.pos++ // the "+"
	}
	slices.SortFunc(r, func(a, b ava) int {
		return cmp.Or(cmp.Compare(a.typ, b.typ), cmp.Compare(a.render(p.pattern), b.render(p.pattern)))
	})
	for i := 1; i < len(r); i++ {
		if r[i].typ == r[i-1].typ && r[i].render(p.pattern) == r[i-1].render(p.pattern) {
			return nil, invalid("attribute %s=%s repeated in one RDN", r[i].typ, r[i].render(p.pattern))
		}
	}
	return r, nil
}

func (p *parser) ava() (ava, error) {
	p.skipSpaces()
	start := p.pos
	for !p.done() && p.s[p.pos] != '=' {
		switch p.s[p.pos] {
		case ',', '+':
			return ava{}, invalid("attribute %q has no \"=\"", p.s[start:p.pos])
		}
		p.pos++
	}
	if p.done() {
		return ava{}, invalid("attribute %q has no \"=\"", p.s[start:])
	}
	typ, err := attrType(strings.TrimRight(p.s[start:p.pos], " "))
	if err != nil {
		return ava{}, err
	}
	p.pos++ // the "="
	p.skipSpaces()
	if !p.done() && p.s[p.pos] == '#' {
		return p.hexValue(typ)
	}
	parts, err := p.stringValue()
	if err != nil {
		return ava{}, err
	}
	return ava{typ: typ, parts: parts}, nil
}

// attrType checks an attribute type (an RFC 4512 descr or numericoid) and
// returns its canonical name.
func attrType(t string) (string, error) {
	if t == "" {
		return "", invalid("empty attribute type")
	}
	if name, ok := attrTypes[strings.ToUpper(t)]; ok {
		return name, nil
	}
	if t[0] >= '0' && t[0] <= '9' {
		if !validOID(t) {
			return "", invalid("attribute type %q is not a valid OID", t)
		}
		return t, nil
	}
	return "", invalid("unknown attribute type %q", t)
}

// validOID reports whether s is number 1*("." number), numbers without
// leading zeros.
func validOID(s string) bool {
	arcs := strings.Split(s, ".")
	if len(arcs) < 2 {
		return false
	}
	for _, a := range arcs {
		if a == "" || len(a) > 1 && a[0] == '0' {
			return false
		}
		for i := 0; i < len(a); i++ {
			if a[i] < '0' || a[i] > '9' {
				return false
			}
		}
	}
	return true
}

// stringValue parses an RFC 4514 string value up to an unescaped "," or
// "+", dropping unescaped trailing spaces.
func (p *parser) stringValue() ([]string, error) {
	var (
		buf   []byte
		stars []int // offsets in buf of wildcards
		keep  int   // len(buf) up to the last significant byte
	)
loop:
	for !p.done() {
		c := p.s[p.pos]
		switch {
		case c == ',' || c == '+':
			break loop
		case c == '\\':
			b, err := p.escape()
			if err != nil {
				return nil, err
			}
			buf = append(buf, b)
			keep = len(buf)
			continue
		case c == '*' && p.pattern:
			stars = append(stars, len(buf))
			keep = len(buf)
			p.pos++
			continue
		case c == '"' || c == ';' || c == '<' || c == '>':
			return nil, invalid("unescaped %q in a value", c)
		}
		buf = append(buf, c)
		if c != ' ' {
			keep = len(buf)
		}
		p.pos++
	}
	buf = buf[:keep]
	if err := checkValue(buf); err != nil {
		return nil, err
	}
	parts := make([]string, 0, len(stars)+1)
	from := 0
	for _, at := range stars {
		parts = append(parts, string(buf[from:at]))
		from = at
	}
	parts = append(parts, string(buf[from:]))
	return collapse(parts), nil
}

// collapse merges runs of wildcards: an empty part between two wildcards
// means "**", which matches what "*" matches.
func collapse(parts []string) []string {
	if len(parts) <= 2 {
		return parts
	}
	out := []string{parts[0]}
	for _, s := range parts[1 : len(parts)-1] {
		if s != "" {
			out = append(out, s)
		}
	}
	return append(out, parts[len(parts)-1])
}

// escape reads "\" followed by a special character or two hex digits.
func (p *parser) escape() (byte, error) {
	p.pos++ // the "\"
	if p.done() {
		return 0, invalid("value ends with a lone backslash")
	}
	c := p.s[p.pos]
	switch c {
	case ' ', '"', '#', '+', ',', ';', '<', '=', '>', '\\', '*':
		p.pos++
		return c, nil
	}
	if p.pos+2 > len(p.s) {
		return 0, invalid("bad escape %q", p.s[p.pos-1:])
	}
	var b [1]byte
	if _, err := hex.Decode(b[:], []byte(p.s[p.pos:p.pos+2])); err != nil {
		return 0, invalid("bad escape %q", p.s[p.pos-1:p.pos+2])
	}
	p.pos += 2
	return b[0], nil
}

// hexValue parses "#" followed by the hex of a BER-encoded value.
func (p *parser) hexValue(typ string) (ava, error) {
	p.pos++ // the "#"
	start := p.pos
	for !p.done() && p.s[p.pos] != ',' && p.s[p.pos] != '+' && p.s[p.pos] != ' ' {
		p.pos++
	}
	text := p.s[start:p.pos]
	p.skipSpaces()
	if !p.done() && p.s[p.pos] != ',' && p.s[p.pos] != '+' {
		return ava{}, invalid("junk after #%s", text)
	}
	der, err := hex.DecodeString(text)
	if err != nil || len(der) == 0 {
		return ava{}, invalid("bad hex value #%s", text)
	}
	var raw asn1.RawValue
	rest, err := asn1.Unmarshal(der, &raw)
	if err != nil || len(rest) != 0 {
		return ava{}, invalid("hex value #%s is not one BER value", text)
	}
	if raw.Class == asn1.ClassUniversal && !raw.IsCompound {
		switch raw.Tag {
		case asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagIA5String:
			if err := checkValue(raw.Bytes); err != nil {
				return ava{}, err
			}
			return ava{typ: typ, parts: []string{string(raw.Bytes)}}, nil
		}
	}
	return ava{typ: typ, hex: "#" + hex.EncodeToString(der)}, nil
}

// checkValue rejects invalid UTF-8 and control characters.
func checkValue(b []byte) error {
	if !utf8.Valid(b) {
		return invalid("value is not valid UTF-8")
	}
	for _, c := range b {
		if c < 0x20 || c == 0x7f {
			return invalid("value holds control character %#02x", c)
		}
	}
	return nil
}

// String renders d canonically. In pattern form wildcards are bare "*" and
// literal stars are "\*".
func (d dn) String(pattern bool) string {
	if d.any {
		return "*"
	}
	var b strings.Builder
	for i, r := range d.rdns {
		if i > 0 {
			b.WriteByte(',')
		}
		for j, a := range r {
			if j > 0 {
				b.WriteByte('+')
			}
			b.WriteString(a.typ)
			b.WriteByte('=')
			b.WriteString(a.render(pattern))
		}
	}
	return b.String()
}

// render is the canonical text of a's value.
func (a ava) render(pattern bool) string {
	if a.hex != "" {
		return a.hex
	}
	var b strings.Builder
	last := len(a.parts) - 1
	for i, part := range a.parts {
		if i > 0 {
			b.WriteByte('*')
		}
		for k := 0; k < len(part); k++ {
			c := part[k]
			first := i == 0 && k == 0
			final := i == last && k == len(part)-1
			switch {
			case strings.IndexByte(`"+,;<>\`, c) >= 0,
				c == ' ' && (first || final),
				c == '#' && first,
				c == '*' && pattern:
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
	}
	return b.String()
}
