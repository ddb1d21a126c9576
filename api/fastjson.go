package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// A fast path for the JSON of the hot operations (encrypt, decrypt, batch),
// which a sidecar serves at tens of thousands of requests per second where
// encoding/json's reflection dominates the cost.
//
// UnmarshalFast handles the common shape of a request — the known fields,
// strings without escapes, integers — and reports false for anything else,
// in which case callers decode the same bytes with encoding/json (strictly,
// so unknown fields and bad input get the usual errors). It never accepts
// input that encoding/json would reject or decode differently; a
// differential fuzz test (fastjson_test.go) holds it to that. AppendJSON
// writes what json.Marshal would mean (the same fields and values; byte
// layout may differ).

// FastUnmarshaler is implemented by request and response types with a fast
// decoding path.
type FastUnmarshaler interface {
	UnmarshalFast(data []byte) bool
}

// FastMarshaler is implemented by types with a fast encoding path.
type FastMarshaler interface {
	AppendJSON(dst []byte) []byte
}

// MaxBatchOps is the most operations a batch request may carry.
const MaxBatchOps = 10000

// SizeChecker is implemented by requests whose cost grows with their item
// count: servers call CheckSize on the raw body before decoding it with
// encoding/json, so an oversized batch is refused without allocating its
// items. (The fast path stops by itself past MaxBatchOps items.)
type SizeChecker interface {
	CheckSize(data []byte) error
}

// CheckSize counts the elements of the "ops" array (every value at array
// depth 1 inside the top-level object, without decoding them) and refuses
// more than MaxBatchOps.
func (r *BatchRequest) CheckSize(data []byte) error {
	if n := countArrayElements(data, 2); n > MaxBatchOps {
		return Errorf(CodeTooLarge, "At most %d operations per batch (this one has at least %d).", MaxBatchOps, n)
	}
	return nil
}

// countArrayElements counts values directly inside arrays that sit at
// nesting depth want-1 (objects and arrays both count as depth), outside
// strings. It stops counting past MaxBatchOps+1. Malformed input yields
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
			if n > MaxBatchOps {
				return n
			}
		}
	}
	return n
}

// lexer is a minimal JSON reader for UnmarshalFast.
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
func (l *lexer) bytesArray(dst *[][]byte) {
	if l.null() {
		*dst = nil
		return
	}
	if !l.tok('[') {
		l.ok = false
		return
	}
	out := make([][]byte, 0, 64)
	if !l.tok(']') {
		for l.ok {
			out = append(out, nil)
			l.bytes(&out[len(out)-1])
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

// strArray reads a JSON array of strings without escapes (null leaves
// nil).
func (l *lexer) strArray(dst *[]string) {
	if l.null() {
		*dst = nil
		return
	}
	if !l.tok('[') {
		l.ok = false
		return
	}
	out := make([]string, 0, 16)
	if !l.tok(']') {
		for l.ok {
			out = append(out, "")
			l.str(&out[len(out)-1])
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
	if l.null() {
		return
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
		return
	}
	if l.i < len(l.b) {
		switch l.b[l.i] {
		case '.', 'e', 'E':
			l.ok = false
			return
		}
	}
	v, err := strconv.Atoi(string(l.b[start:l.i]))
	if err != nil {
		l.ok = false
		return
	}
	*dst = v
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

func (l *lexer) keyRef(r *KeyRef, k string) bool {
	switch k {
	case "key_id":
		l.str(&r.KeyID)
	case "sealed_key":
		l.bytes(&r.SealedKey)
	case "ekb":
		l.bytes(&r.EKB)
	default:
		return false
	}
	return true
}

// UnmarshalFast implements FastUnmarshaler.
func (r *EncryptRequest) UnmarshalFast(data []byte) bool {
	return decodeTop(r, data, func(l *lexer, v *EncryptRequest, k string) bool {
		switch k {
		case "plaintext":
			l.bytes(&v.Plaintext)
		case "aad":
			l.bytes(&v.AAD)
		default:
			return l.keyRef(&v.KeyRef, k)
		}
		return true
	})
}

// UnmarshalFast implements FastUnmarshaler.
func (r *DecryptRequest) UnmarshalFast(data []byte) bool {
	return decodeTop(r, data, func(l *lexer, v *DecryptRequest, k string) bool {
		switch k {
		case "ciphertext":
			l.bytes(&v.Ciphertext)
		case "aad":
			l.bytes(&v.AAD)
		default:
			return l.keyRef(&v.KeyRef, k)
		}
		return true
	})
}

func (l *lexer) batchItem(it *BatchItem) {
	l.object(func(k string) bool {
		switch k {
		case "op":
			l.str(&it.Op)
		case "key_id":
			l.str(&it.KeyID)
		case "sealed_key":
			l.bytes(&it.SealedKey)
		case "ekb":
			l.bytes(&it.EKB)
		case "plaintext":
			l.bytes(&it.Plaintext)
		case "ciphertext":
			l.bytes(&it.Ciphertext)
		case "aad":
			l.bytes(&it.AAD)
		case "message":
			l.bytes(&it.Message)
		case "signature":
			l.bytes(&it.Signature)
		case "mac":
			l.bytes(&it.MAC)
		case "key_version":
			l.int(&it.KeyVersion)
		case "algorithm":
			l.str(&it.Algorithm)
		case "bytes":
			l.int(&it.Bytes)
		case "to_key_id":
			l.str(&it.ToKeyID)
		case "to_aad":
			l.bytes(&it.ToAAD)
		default:
			return false
		}
		return true
	})
}

// UnmarshalFast implements FastUnmarshaler.
func (r *BatchRequest) UnmarshalFast(data []byte) bool {
	return decodeTop(r, data, func(l *lexer, v *BatchRequest, k string) bool {
		if k != "ops" {
			return false
		}
		if l.null() {
			v.Ops = nil
			return true
		}
		if !l.tok('[') {
			l.ok = false
			return true
		}
		v.Ops = make([]BatchItem, 0, 16)
		if l.tok(']') {
			return true
		}
		for l.ok {
			if len(v.Ops) == MaxBatchOps {
				l.ok = false // too many: CheckSize says so
				break
			}
			v.Ops = append(v.Ops, BatchItem{})
			l.batchItem(&v.Ops[len(v.Ops)-1])
			if l.tok(',') {
				continue
			}
			if !l.tok(']') {
				l.ok = false
			}
			break
		}
		return true
	})
}

// appendString writes s as a JSON string.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			b, _ := json.Marshal(s) // rare: escapes, non-ASCII or invalid UTF-8
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// appendBytes writes b as a standard-base64 JSON string (nil as null, as
// encoding/json does).
func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, '"')
}

// UnmarshalFast implements FastUnmarshaler: a rewrap carries up to
// thousands of EKBs, which encoding/json decodes several times slower.
func (r *RewrapRequest) UnmarshalFast(data []byte) bool {
	return decodeTop(r, data, func(l *lexer, v *RewrapRequest, k string) bool {
		switch k {
		case "ekbs":
			l.bytesArray(&v.EKBs)
		case "wrapping_cert_pem":
			l.escStr(&v.WrappingCertPEM)
		default:
			return false
		}
		return true
	})
}

// UnmarshalFast implements FastUnmarshaler: a sidecar's grant load
// carries up to thousands of EKBs, like a rewrap.
func (r *LoadRequest) UnmarshalFast(data []byte) bool {
	return decodeTop(r, data, func(l *lexer, v *LoadRequest, k string) bool {
		switch k {
		case "grant":
			l.str(&v.Grant)
		case "ekbs":
			l.bytesArray(&v.EKBs)
		case "key_ids":
			l.strArray(&v.KeyIDs)
		case "recipient":
			l.object(func(k string) bool {
				switch k {
				case "kem":
					l.str((*string)(&v.Recipient.KEM))
				case "public_key":
					l.bytes(&v.Recipient.PublicKey)
				default:
					return false
				}
				return true
			})
		default:
			return false
		}
		return true
	})
}

// AppendJSON implements FastMarshaler.
func (r *EncryptResponse) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"ciphertext":`...)
	dst = appendBytes(dst, r.Ciphertext)
	dst = append(dst, `,"key_id":`...)
	dst = appendString(dst, r.KeyID)
	dst = append(dst, `,"key_version":`...)
	dst = strconv.AppendInt(dst, int64(r.KeyVersion), 10)
	if r.Warning != "" {
		dst = append(dst, `,"warning":`...)
		dst = appendString(dst, r.Warning)
	}
	return append(dst, '}')
}

// AppendJSON implements FastMarshaler.
func (r *DecryptResponse) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"plaintext":`...)
	dst = appendBytes(dst, r.Plaintext)
	return append(dst, '}')
}

// AppendJSON implements FastMarshaler (omitempty as the struct tags say).
func (r *BatchResult) AppendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	first := true
	field := func(name string) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, name...)
		dst = append(dst, `":`...)
	}
	bytesField := func(name string, b []byte) {
		if len(b) > 0 {
			field(name)
			dst = appendBytes(dst, b)
		}
	}
	bytesField("ciphertext", r.Ciphertext)
	if r.KeyID != "" {
		field("key_id")
		dst = appendString(dst, r.KeyID)
	}
	if r.KeyVersion != 0 {
		field("key_version")
		dst = strconv.AppendInt(dst, int64(r.KeyVersion), 10)
	}
	bytesField("plaintext", r.Plaintext)
	bytesField("signature", r.Signature)
	if r.Valid != nil {
		field("valid")
		dst = strconv.AppendBool(dst, *r.Valid)
	}
	bytesField("mac", r.MAC)
	bytesField("digest", r.Digest)
	bytesField("random", r.Random)
	if r.Warning != "" {
		field("warning")
		dst = appendString(dst, r.Warning)
	}
	if r.Error != nil {
		field("error")
		dst = append(dst, `{"code":`...)
		dst = appendString(dst, string(r.Error.Code))
		dst = append(dst, `,"message":`...)
		dst = appendString(dst, r.Error.Message)
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// AppendJSON implements FastMarshaler.
func (r *BatchResponse) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"results":[`...)
	for i := range r.Results {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = r.Results[i].AppendJSON(dst)
	}
	return append(dst, "]}"...)
}

// UnmarshalFast implements FastUnmarshaler (client side).
func (r *EncryptResponse) UnmarshalFast(data []byte) bool {
	return decodeTop(r, data, func(l *lexer, v *EncryptResponse, k string) bool {
		switch k {
		case "ciphertext":
			l.bytes(&v.Ciphertext)
		case "key_id":
			l.str(&v.KeyID)
		case "key_version":
			l.int(&v.KeyVersion)
		case "warning":
			l.str(&v.Warning)
		default:
			return false
		}
		return true
	})
}

// UnmarshalFast implements FastUnmarshaler (client side).
func (r *DecryptResponse) UnmarshalFast(data []byte) bool {
	return decodeTop(r, data, func(l *lexer, v *DecryptResponse, k string) bool {
		if k != "plaintext" {
			return false
		}
		l.bytes(&v.Plaintext)
		return true
	})
}

// AppendJSON implements FastMarshaler (client side).
func (r *EncryptRequest) AppendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	dst = r.KeyRef.appendFields(dst)
	dst = append(dst, `"plaintext":`...)
	dst = appendBytes(dst, r.Plaintext)
	if len(r.AAD) > 0 {
		dst = append(dst, `,"aad":`...)
		dst = appendBytes(dst, r.AAD)
	}
	return append(dst, '}')
}

// appendFields writes the set fields of r, each followed by a comma.
func (r *KeyRef) appendFields(dst []byte) []byte {
	if r.KeyID != "" {
		dst = append(dst, `"key_id":`...)
		dst = appendString(dst, r.KeyID)
		dst = append(dst, ',')
	}
	if len(r.SealedKey) > 0 {
		dst = append(dst, `"sealed_key":`...)
		dst = appendBytes(dst, r.SealedKey)
		dst = append(dst, ',')
	}
	if len(r.EKB) > 0 {
		dst = append(dst, `"ekb":`...)
		dst = appendBytes(dst, r.EKB)
		dst = append(dst, ',')
	}
	return dst
}

// AppendJSON implements FastMarshaler (client side; omitempty as tagged).
func (r *BatchRequest) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"ops":[`...)
	for i := range r.Ops {
		if i > 0 {
			dst = append(dst, ',')
		}
		it := &r.Ops[i]
		dst = append(dst, `{"op":`...)
		dst = appendString(dst, it.Op)
		str := func(name, v string) {
			if v != "" {
				dst = append(dst, `,"`...)
				dst = append(dst, name...)
				dst = append(dst, `":`...)
				dst = appendString(dst, v)
			}
		}
		bytesF := func(name string, v []byte) {
			if len(v) > 0 {
				dst = append(dst, `,"`...)
				dst = append(dst, name...)
				dst = append(dst, `":`...)
				dst = appendBytes(dst, v)
			}
		}
		num := func(name string, v int) {
			if v != 0 {
				dst = append(dst, `,"`...)
				dst = append(dst, name...)
				dst = append(dst, `":`...)
				dst = strconv.AppendInt(dst, int64(v), 10)
			}
		}
		str("key_id", it.KeyID)
		bytesF("sealed_key", it.SealedKey)
		bytesF("ekb", it.EKB)
		bytesF("plaintext", it.Plaintext)
		bytesF("ciphertext", it.Ciphertext)
		bytesF("aad", it.AAD)
		bytesF("message", it.Message)
		bytesF("signature", it.Signature)
		bytesF("mac", it.MAC)
		num("key_version", it.KeyVersion)
		str("algorithm", it.Algorithm)
		num("bytes", it.Bytes)
		str("to_key_id", it.ToKeyID)
		bytesF("to_aad", it.ToAAD)
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

// UnmarshalFast implements FastUnmarshaler (client side). Results with an
// error or a "valid" field fall back to encoding/json.
func (r *BatchResponse) UnmarshalFast(data []byte) bool {
	return decodeTop(r, data, func(l *lexer, v *BatchResponse, k string) bool {
		if k != "results" || !l.tok('[') {
			return false
		}
		v.Results = make([]BatchResult, 0, 16)
		if l.tok(']') {
			return true
		}
		for l.ok {
			v.Results = append(v.Results, BatchResult{})
			res := &v.Results[len(v.Results)-1]
			l.object(func(k string) bool {
				switch k {
				case "ciphertext":
					l.bytes(&res.Ciphertext)
				case "key_id":
					l.str(&res.KeyID)
				case "key_version":
					l.int(&res.KeyVersion)
				case "plaintext":
					l.bytes(&res.Plaintext)
				case "signature":
					l.bytes(&res.Signature)
				case "mac":
					l.bytes(&res.MAC)
				case "digest":
					l.bytes(&res.Digest)
				case "random":
					l.bytes(&res.Random)
				case "warning":
					l.str(&res.Warning)
				default:
					return false
				}
				return true
			})
			if l.tok(',') {
				continue
			}
			if !l.tok(']') {
				l.ok = false
			}
			break
		}
		return true
	})
}
