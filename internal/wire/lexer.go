package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/dcaas/dcaas/api"
)

// countArrayElements counts values directly inside arrays that sit at
// nesting depth want-1 (objects and arrays both count as depth), outside
// strings. It stops counting past api.MaxBatchOps+1. Malformed input yields
// some count; the decoder reports the malformation.
func countArrayElements(b []byte, want int) int {
	depth, n := 0, 0
	inString, escaped, pending := false, false, false
	for _, c := range b {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '"':
			inString = true
		case '{', '[':
			depth++
			if c == '[' && depth == want {
				pending = true // the next value starts the first element
				continue
			}
		case '}', ']':
			depth--
			if depth == want-1 {
				pending = false
			}
			continue
		case ',':
			if depth == want {
				pending = true
			}
			continue
		}
		if pending && (depth == want || (depth == want+1 && (c == '{' || c == '['))) {
			n++
			pending = false
			if n > api.MaxBatchOps {
				return n
			}
		}
	}
	return n
}

// lexer is a minimal JSON reader for Decode.
type lexer struct {
	b  []byte
	i  int
	ok bool
}

func (l *lexer) ws() {
	for l.i < len(l.b) {
		switch l.b[l.i] {
		case ' ', '\t', '\n', '\r':
			l.i++
		default:
			return
		}
	}
}

// tok consumes byte c after whitespace.
func (l *lexer) tok(c byte) bool {
	l.ws()
	if l.i < len(l.b) && l.b[l.i] == c {
		l.i++
		return true
	}
	return false
}

// rawString reads a string without escapes or control characters and
// returns its bytes (aliasing the input); ok=false on anything else.
func (l *lexer) rawString() ([]byte, bool) {
	s, ok := l.quoted()
	if !ok {
		return nil, false
	}
	for _, c := range s {
		if c < 0x20 {
			return nil, false
		}
	}
	return s, true
}

// quoted consumes a string without escapes (a backslash is refused) and
// returns its raw bytes, which may hold control characters: the caller
// refuses them, or decodes base64, which refuses all but CR and LF
// (refused here).
func (l *lexer) quoted() ([]byte, bool) {
	if !l.tok('"') {
		return nil, false
	}
	rest := l.b[l.i:]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return nil, false
	}
	s := rest[:end]
	if bytes.IndexByte(s, '\\') >= 0 || bytes.IndexByte(s, '\n') >= 0 || bytes.IndexByte(s, '\r') >= 0 {
		return nil, false
	}
	l.i += end + 1
	return s, true
}

// null consumes a literal null.
func (l *lexer) null() bool {
	l.ws()
	if len(l.b)-l.i >= 4 && string(l.b[l.i:l.i+4]) == "null" {
		l.i += 4
		return true
	}
	return false
}

// str reads a JSON string field value into a Go string (null leaves it).
func (l *lexer) str(dst *string) {
	if l.null() {
		return
	}
	s, ok := l.rawString()
	if !ok || !utf8.Valid(s) {
		l.ok = false
		return
	}
	*dst = string(s)
}

// bytes reads a standard-base64 string into a new slice (null → nil), as
// encoding/json decodes []byte.
func (l *lexer) bytes(dst *[]byte) {
	if l.null() {
		*dst = nil
		return
	}
	s, ok := l.quoted() // base64 refuses the other control characters
	if !ok {
		l.ok = false
		return
	}
	b := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(b, s)
	if err != nil {
		l.ok = false
		return
	}
	*dst = b[:n]
}

// bytesArray reads a JSON array of base64 strings (null leaves nil).
func (l *lexer) bytesArray(dst *[][]byte) { array(l, dst, l.bytes) }

// strArray reads a JSON array of strings without escapes (null leaves
// nil).
func (l *lexer) strArray(dst *[]string) { array(l, dst, l.str) }

// array reads a JSON array whose items item reads (null leaves dst nil).
func array[T any](l *lexer, dst *[]T, item func(*T)) { arrayUpTo(l, dst, math.MaxInt, item) }

// arrayUpTo is array for at most limit items: more fails (l.ok = false)
// before the item past the limit is allocated.
func arrayUpTo[T any](l *lexer, dst *[]T, limit int, item func(*T)) {
	if l.null() {
		*dst = nil
		return
	}
	if !l.tok('[') {
		l.ok = false
		return
	}
	out := make([]T, 0, 16)
	if !l.tok(']') {
		for l.ok {
			if len(out) == limit {
				l.ok = false
				break
			}
			var zero T
			out = append(out, zero)
			item(&out[len(out)-1])
			if l.tok(',') {
				continue
			}
			if !l.tok(']') {
				l.ok = false
			}
			break
		}
	}
	*dst = out
}

// escStr reads a JSON string that may hold escapes (a PEM's "\n"): the
// token is found here and decoded by encoding/json, so escapes, invalid
// UTF-8 and all mean exactly what they mean to the strict decoder (null
// leaves dst).
func (l *lexer) escStr(dst *string) {
	if l.null() {
		return
	}
	if !l.tok('"') {
		l.ok = false
		return
	}
	start := l.i - 1
	for i := l.i; i < len(l.b); i++ {
		switch l.b[i] {
		case '\\':
			i++ // the escaped character is not the end
		case '"':
			if err := json.Unmarshal(l.b[start:i+1], dst); err != nil {
				l.ok = false
				return
			}
			l.i = i + 1
			return
		}
	}
	l.ok = false
}

// int reads a JSON integer that fits an int (null leaves it).
func (l *lexer) int(dst *int) {
	var v int64
	if l.integer(&v, strconv.IntSize) {
		*dst = int(v)
	}
}

// int64 reads a JSON integer that fits an int64 (null leaves it).
func (l *lexer) int64(dst *int64) { l.integer(dst, 64) }

// bool reads true or false (null leaves it).
func (l *lexer) bool(dst *bool) {
	if l.null() {
		return
	}
	l.ws()
	switch rest := l.b[l.i:]; {
	case bytes.HasPrefix(rest, []byte("true")):
		*dst = true
		l.i += 4
	case bytes.HasPrefix(rest, []byte("false")):
		*dst = false
		l.i += 5
	default:
		l.ok = false
	}
}

// time reads a time as encoding/json does, through time.Time's
// UnmarshalJSON on the string token (null leaves it).
func (l *lexer) time(dst *time.Time) {
	if l.null() {
		return
	}
	l.ws()
	start := l.i
	if _, ok := l.rawString(); !ok || dst.UnmarshalJSON(l.b[start:l.i]) != nil {
		l.ok = false
	}
}

// timePtr reads an optional time (null: nil), as encoding/json does.
func (l *lexer) timePtr(dst **time.Time) {
	if l.null() {
		*dst = nil
		return
	}
	if *dst == nil {
		*dst = new(time.Time)
	}
	l.time(*dst)
}

// integer reads a JSON integer that fits bits into dst and reports
// whether it did (null leaves dst and reports false).
func (l *lexer) integer(dst *int64, bits int) bool {
	if l.null() {
		return false
	}
	l.ws()
	start := l.i
	if l.i < len(l.b) && l.b[l.i] == '-' {
		l.i++
	}
	digits := l.i
	for l.i < len(l.b) && l.b[l.i] >= '0' && l.b[l.i] <= '9' {
		l.i++
	}
	if l.i == digits || (l.b[digits] == '0' && l.i-digits > 1) {
		l.ok = false
		return false
	}
	if l.i < len(l.b) {
		switch l.b[l.i] {
		case '.', 'e', 'E':
			l.ok = false
			return false
		}
	}
	v, err := strconv.ParseInt(string(l.b[start:l.i]), 10, bits)
	if err != nil {
		l.ok = false
		return false
	}
	*dst = v
	return true
}

// object reads {"k": v, ...}, calling field for each key; field reads the
// value and returns false for an unknown key. A repeated key is not this
// path's business (the strict decoder refuses it): it stops here.
func (l *lexer) object(field func(key string) bool) {
	if !l.ok || !l.tok('{') {
		l.ok = false
		return
	}
	if l.tok('}') {
		return
	}
	var seen [16][]byte // the fast types have fewer fields than this
	n := 0
	for l.ok {
		k, ok := l.rawString()
		if !ok || !l.tok(':') || n == len(seen) {
			l.ok = false
			return
		}
		for _, s := range seen[:n] {
			if string(s) == string(k) {
				l.ok = false
				return
			}
		}
		seen[n] = k
		n++
		if !field(string(k)) {
			l.ok = false
			return
		}
		if !l.ok {
			return
		}
		if l.tok(',') {
			continue
		}
		if !l.tok('}') {
			l.ok = false
		}
		return
	}
}

// decodeTop reads data as one JSON object into a fresh T, calling field to
// read the value of each key k into v (false: a key this path does not
// take), and stores the result in r only if all of data was consumed.
func decodeTop[T any](r *T, data []byte, field func(l *lexer, v *T, k string) bool) bool {
	l := &lexer{b: data, ok: true}
	var v T
	l.object(func(k string) bool { return field(l, &v, k) })
	if !l.end() {
		return false
	}
	*r = v
	return true
}

// end checks that only whitespace follows.
func (l *lexer) end() bool {
	l.ws()
	return l.ok && l.i == len(l.b)
}
