// Package wire is a hand-written JSON codec for the api types of the hot
// operations, which a sidecar serves at tens of thousands of requests per
// second, where encoding/json's reflection would dominate the cost (the
// decode, encode and client stages of `dcaas bench --breakdown`, README
// "Performance").
//
// Decode handles the common shape of a body (the known fields, strings
// without escapes, integers) and reports false for anything else; callers
// then decode the same bytes with encoding/json strictly, so unknown
// fields, repeated keys and bad input get the usual errors. It never
// accepts input that encoding/json would reject or decode differently: a
// differential fuzz test (FuzzDecode) holds it to that. Append writes what
// json.Marshal would mean (the same fields and values; the byte layout may
// differ). CheckSize refuses an oversized batch on the raw body, before
// encoding/json allocates its items.
//
// Which side each part serves:
//
//   - Server (internal/httpapi.Decode and WriteJSON, so the KMS and the
//     sidecar): Decode of *api.EncryptRequest, *api.DecryptRequest,
//     *api.BatchRequest, *api.RewrapRequest, *api.LoadRequest,
//     *api.GrantRequest and *api.WrappedKeys (a sidecar's import), and of
//     *api.KeyMetadata (the KMS reads an EKB's metadata on each opening,
//     a sidecar each imported key's);
//     CheckSize of *api.BatchRequest; Append of *api.EncryptResponse,
//     *api.DecryptResponse, *api.BatchResponse, *api.BatchResult and
//     *api.WrappedKeys (the KMS's rewrap, load and derive answers).
//   - Client (the public SDK in client/: the one client of the KMS and the
//     sidecar, which dcaas bench, the demo, dev and the tests use): Append of
//     *api.EncryptRequest, *api.BatchRequest and *api.WrappedKeys (an
//     import), and of *api.RewrapRequest, *api.GrantRequest and
//     *api.LoadRequest (a custodian's rewraps and grants, a sidecar's
//     loads: up to thousands of EKBs each); Decode of
//     *api.EncryptResponse, *api.DecryptResponse, *api.BatchResponse and
//     *api.WrappedKeys (rewrap, load and derive answers).
//     An application gets the same client the benchmark reports on.
//
// Both sides read and encode bodies in pooled arrays (GetBody, ReadBody,
// AppendPooled, PutBody), which leave no copy of a body (plaintexts,
// keys) in an array they grow out of, after a failed read, or once the
// body is given back.
//
// Only pointers to those types are handled; anything else (another type,
// a struct value) reports false and takes encoding/json.
//
// encoding/json/v2 is not used: in Go 1.26 it builds only with
// GOEXPERIMENT=jsonv2, which would apply to the whole build.
package wire

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/dcaas/dcaas/api"
)

// Decode decodes data into v if v is one of the types listed in the
// package doc and data has the shape this path takes. It reports false
// otherwise, leaving v as it was: the caller decodes data with
// encoding/json, strictly.
func Decode(data []byte, v any) bool {
	switch r := v.(type) {
	case *api.EncryptRequest:
		return decodeEncryptRequest(r, data)
	case *api.DecryptRequest:
		return decodeDecryptRequest(r, data)
	case *api.BatchRequest:
		return decodeBatchRequest(r, data)
	case *api.RewrapRequest:
		return decodeRewrapRequest(r, data)
	case *api.LoadRequest:
		return decodeLoadRequest(r, data)
	case *api.GrantRequest:
		return decodeGrantRequest(r, data)
	case *api.EncryptResponse:
		return decodeEncryptResponse(r, data)
	case *api.DecryptResponse:
		return decodeDecryptResponse(r, data)
	case *api.BatchResponse:
		return decodeBatchResponse(r, data)
	case *api.WrappedKeys:
		return decodeWrappedKeys(r, data)
	case *api.KeyMetadata:
		return decodeKeyMetadata(r, data)
	}
	return false
}

// Append appends the JSON of v to dst if v is one of the types listed in
// the package doc; otherwise it returns dst and false, and the caller uses
// encoding/json.
func Append(dst []byte, v any) ([]byte, bool) {
	switch r := v.(type) {
	case *api.EncryptResponse:
		return appendEncryptResponse(dst, r), true
	case *api.DecryptResponse:
		return appendDecryptResponse(dst, r), true
	case *api.BatchResponse:
		return appendBatchResponse(dst, r), true
	case *api.BatchResult:
		return appendBatchResult(reserve(dst, batchResultSize(r)), r), true
	case *api.EncryptRequest:
		return appendEncryptRequest(dst, r), true
	case *api.BatchRequest:
		return appendBatchRequest(dst, r), true
	case *api.WrappedKeys:
		return appendWrappedKeys(dst, r)
	case *api.RewrapRequest:
		return appendRewrapRequest(dst, r), true
	case *api.GrantRequest:
		return appendGrantRequest(dst, r), true
	case *api.LoadRequest:
		return appendLoadRequest(dst, r), true
	}
	return dst, false
}

// itemSize is what reserve allows per object for member names,
// punctuation and numbers.
const itemSize = 160

// reserve makes room for n more bytes in dst, so that an appender writes
// its whole body into one allocation: a batch of 100 1 KiB items grew its
// buffer a dozen times, copying and zeroing each time. Each appender
// passes about how many bytes it writes (every byte field's base64
// length, every string's length, itemSize per object); that may fall
// short (strings needing escapes), and append then grows as needed.
func reserve(dst []byte, n int) []byte {
	if n > cap(dst)-len(dst) {
		dst = slices.Grow(dst, n)
	}
	return dst
}

// b64Len is the length of bs written as base64 strings, quotes not
// counted.
func b64Len(bs ...[]byte) int {
	n := 0
	for _, b := range bs {
		n += base64.StdEncoding.EncodedLen(len(b))
	}
	return n
}

// strLen is the length of ss as a JSON array of plain strings.
func strLen(ss []string) int {
	n := 2
	for _, s := range ss {
		n += len(s) + 3
	}
	return n
}

// members writes the members of one JSON object after its '{', a comma
// before each but the first. str, bytes and int write a member; optStr,
// optBytes and optInt write it only when its value is set, as
// encoding/json's omitempty does (small enough to inline, so an unset
// member of a batch item costs a comparison).
type members struct {
	dst  []byte
	more bool
}

// key returns m.dst with the next member's name and colon appended; the
// caller appends the value and stores the result in m.dst. (One local
// slice, not m.dst written back after each append: this is the inner
// loop of a batch.)
func (m *members) key(name string) []byte {
	dst := m.dst
	if m.more {
		dst = append(dst, ',')
	}
	m.more = true
	dst = append(dst, '"')
	dst = append(dst, name...)
	return append(dst, `":`...)
}

func (m *members) str(name, v string) { m.dst = appendString(m.key(name), v) }

func (m *members) bytes(name string, v []byte) { m.dst = appendBytes(m.key(name), v) }

func (m *members) int(name string, v int) { m.dst = strconv.AppendInt(m.key(name), int64(v), 10) }

func (m *members) optStr(name, v string) {
	if v != "" {
		m.str(name, v)
	}
}

func (m *members) optBytes(name string, v []byte) {
	if len(v) > 0 {
		m.bytes(name, v)
	}
}

func (m *members) optInt(name string, v int) {
	if v != 0 {
		m.int(name, v)
	}
}

// keyRef writes the members of an api.KeyRef that are set: of an encrypt
// request, or the same fields of a batch item.
func (m *members) keyRef(keyID string, sealedKey, ekb []byte) {
	m.optStr("key_id", keyID)
	m.optBytes("sealed_key", sealedKey)
	m.optBytes("ekb", ekb)
}

// appendRewrapRequest: client side (a custodian's rewrap).
func appendRewrapRequest(dst []byte, r *api.RewrapRequest) []byte {
	dst = reserve(dst, itemSize+b64Len(r.EKBs...)+3*len(r.EKBs)+len(r.WrappingCertPEM))
	dst = append(dst, `{"ekbs":`...)
	dst = appendBytesArray(dst, r.EKBs)
	dst = append(dst, `,"wrapping_cert_pem":`...)
	dst = appendString(dst, r.WrappingCertPEM)
	return append(dst, '}')
}

// appendGrantRequest: client side (a custodian's grant).
func appendGrantRequest(dst []byte, r *api.GrantRequest) []byte {
	dst = reserve(dst, itemSize+b64Len(r.EKBs...)+b64Len(r.Seeds...)+3*(len(r.EKBs)+len(r.Seeds))+len(r.InstanceID)+strLen(r.KeyIDs))
	dst = append(dst, `{"instance_id":`...)
	dst = appendString(dst, r.InstanceID)
	dst = appendKeys(dst, r.EKBs, r.KeyIDs)
	if len(r.Seeds) > 0 {
		dst = append(dst, `,"seeds":`...)
		dst = appendBytesArray(dst, r.Seeds)
	}
	if r.TTLSeconds != 0 {
		dst = append(dst, `,"ttl_seconds":`...)
		dst = strconv.AppendInt(dst, int64(r.TTLSeconds), 10)
	}
	return append(dst, '}')
}

// appendLoadRequest: client side (a sidecar's grant load).
func appendLoadRequest(dst []byte, r *api.LoadRequest) []byte {
	dst = reserve(dst, itemSize+b64Len(r.EKBs...)+3*len(r.EKBs)+b64Len(r.Recipient.PublicKey)+len(r.Grant)+strLen(r.KeyIDs))
	dst = append(dst, `{"grant":`...)
	dst = appendString(dst, r.Grant)
	dst = appendKeys(dst, r.EKBs, r.KeyIDs)
	dst = append(dst, `,"recipient":{"kem":`...)
	dst = appendString(dst, string(r.Recipient.KEM))
	dst = append(dst, `,"public_key":`...)
	dst = appendBytes(dst, r.Recipient.PublicKey)
	return append(dst, "}}"...)
}

// appendKeys writes the "ekbs" and "key_ids" members of a grant or load
// request that are set (encoding/json's omitempty), each after a comma.
func appendKeys(dst []byte, ekbs [][]byte, keyIDs []string) []byte {
	if len(ekbs) > 0 {
		dst = append(dst, `,"ekbs":`...)
		dst = appendBytesArray(dst, ekbs)
	}
	if len(keyIDs) > 0 {
		dst = append(dst, `,"key_ids":`...)
		dst = appendArray(dst, keyIDs, appendString)
	}
	return dst
}

// appendBytesArray writes bs as a JSON array of base64 strings (nil as
// null, as encoding/json does, for the slice and its elements).
func appendBytesArray(dst []byte, bs [][]byte) []byte { return appendArray(dst, bs, appendBytes) }

// appendArray writes items as a JSON array (nil as null, as encoding/json
// does), each item with one.
func appendArray[T any](dst []byte, items []T, one func([]byte, T) []byte) []byte {
	if items == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i, it := range items {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = one(dst, it)
	}
	return append(dst, ']')
}

// CheckSize is for requests whose cost grows with their item count:
// servers call it on the raw body before decoding it with encoding/json, so
// an oversized batch is refused without allocating its items. For a
// *api.BatchRequest it counts the elements of the "ops" array (every value
// at array depth 1 inside the top-level object, without decoding them) and
// refuses more than api.MaxBatchOps with api.CodeTooLarge; other types
// pass. (Decode declines more than api.MaxBatchOps items by itself.)
func CheckSize(data []byte, v any) error {
	if _, ok := v.(*api.BatchRequest); !ok {
		return nil
	}
	if n := countArrayElements(data, 2); n > api.MaxBatchOps {
		return api.Errorf(api.CodeTooLarge, "At most %d operations per batch (this one has at least %d).", api.MaxBatchOps, n)
	}
	return nil
}

func (l *lexer) keyRef(r *api.KeyRef, k string) bool {
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

// decodeEncryptRequest: server side (POST /v1/crypto/encrypt).
func decodeEncryptRequest(r *api.EncryptRequest, data []byte) bool {
	return decodeTop(r, data, func(l *lexer, v *api.EncryptRequest, k string) bool {
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

// decodeDecryptRequest: server side (POST /v1/crypto/decrypt).
func decodeDecryptRequest(r *api.DecryptRequest, data []byte) bool {
	return decodeTop(r, data, func(l *lexer, v *api.DecryptRequest, k string) bool {
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

func (l *lexer) batchItem(it *api.BatchItem) {
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

// decodeBatchRequest: server side (POST /v1/crypto/batch). It declines
// more than api.MaxBatchOps items by itself.
func decodeBatchRequest(r *api.BatchRequest, data []byte) bool {
	return decodeTop(r, data, func(l *lexer, v *api.BatchRequest, k string) bool {
		if k != "ops" {
			return false
		}
		arrayUpTo(l, &v.Ops, api.MaxBatchOps, l.batchItem) // too many: CheckSize says so
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

// decodeRewrapRequest: server side (the KMS's rewrap). A rewrap carries up
// to thousands of EKBs, which encoding/json decodes several times slower.
func decodeRewrapRequest(r *api.RewrapRequest, data []byte) bool {
	return decodeTop(r, data, func(l *lexer, v *api.RewrapRequest, k string) bool {
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

// decodeLoadRequest: server side (the KMS's grant load, which a sidecar
// sends). It carries up to thousands of EKBs, like a rewrap.
func decodeLoadRequest(r *api.LoadRequest, data []byte) bool {
	return decodeTop(r, data, func(l *lexer, v *api.LoadRequest, k string) bool {
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

// decodeGrantRequest: server side. A custodian grants up to thousands of
// EKBs (or seeds) to a sidecar at once.
func decodeGrantRequest(r *api.GrantRequest, data []byte) bool {
	return decodeTop(r, data, func(l *lexer, v *api.GrantRequest, k string) bool {
		switch k {
		case "instance_id":
			l.str(&v.InstanceID)
		case "ekbs":
			l.bytesArray(&v.EKBs)
		case "key_ids":
			l.strArray(&v.KeyIDs)
		case "seeds":
			l.bytesArray(&v.Seeds)
		case "ttl_seconds":
			l.int(&v.TTLSeconds)
		default:
			return false
		}
		return true
	})
}

// appendEncryptResponse: server side.
func appendEncryptResponse(dst []byte, r *api.EncryptResponse) []byte {
	dst = reserve(dst, itemSize+b64Len(r.Ciphertext)+len(r.KeyID)+len(r.Warning))
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

// appendDecryptResponse: server side.
func appendDecryptResponse(dst []byte, r *api.DecryptResponse) []byte {
	dst = reserve(dst, itemSize+b64Len(r.Plaintext))
	dst = append(dst, `{"plaintext":`...)
	dst = appendBytes(dst, r.Plaintext)
	return append(dst, '}')
}

// appendBatchResult: server side (omitempty as the struct tags say). The
// caller reserves the size: batchResultSize(r), or a whole batch's.
func appendBatchResult(dst []byte, r *api.BatchResult) []byte {
	m := members{dst: append(dst, '{')}
	m.optBytes("ciphertext", r.Ciphertext)
	m.optStr("key_id", r.KeyID)
	m.optInt("key_version", r.KeyVersion)
	m.optBytes("plaintext", r.Plaintext)
	m.optBytes("signature", r.Signature)
	if r.Valid != nil {
		m.dst = strconv.AppendBool(m.key("valid"), *r.Valid)
	}
	m.optBytes("mac", r.MAC)
	m.optBytes("digest", r.Digest)
	m.optBytes("random", r.Random)
	m.optStr("warning", r.Warning)
	if r.Error != nil {
		dst := append(m.key("error"), `{"code":`...)
		dst = appendString(dst, string(r.Error.Code))
		dst = append(dst, `,"message":`...)
		dst = appendString(dst, r.Error.Message)
		m.dst = append(dst, '}')
	}
	return append(m.dst, '}')
}

// batchResultSize is about how many bytes appendBatchResult writes for r.
func batchResultSize(r *api.BatchResult) int {
	return itemSize + b64Len(r.Ciphertext, r.Plaintext, r.Signature, r.MAC, r.Digest, r.Random) + len(r.KeyID) + len(r.Warning)
}

// appendBatchResponse: server side. The body's size is reserved at once,
// before the results are written.
func appendBatchResponse(dst []byte, r *api.BatchResponse) []byte {
	n := 16
	for i := range r.Results {
		n += batchResultSize(&r.Results[i])
	}
	dst = append(reserve(dst, n), `{"results":[`...)
	for i := range r.Results {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendBatchResult(dst, &r.Results[i])
	}
	return append(dst, "]}"...)
}

// decodeEncryptResponse: client side.
func decodeEncryptResponse(r *api.EncryptResponse, data []byte) bool {
	return decodeTop(r, data, func(l *lexer, v *api.EncryptResponse, k string) bool {
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

// decodeDecryptResponse: client side.
func decodeDecryptResponse(r *api.DecryptResponse, data []byte) bool {
	return decodeTop(r, data, func(l *lexer, v *api.DecryptResponse, k string) bool {
		if k != "plaintext" {
			return false
		}
		l.bytes(&v.Plaintext)
		return true
	})
}

// appendEncryptRequest: client side.
func appendEncryptRequest(dst []byte, r *api.EncryptRequest) []byte {
	dst = reserve(dst, itemSize+b64Len(r.Plaintext, r.AAD, r.EKB, r.SealedKey)+len(r.KeyID))
	m := members{dst: append(dst, '{')}
	m.keyRef(r.KeyID, r.SealedKey, r.EKB)
	m.bytes("plaintext", r.Plaintext)
	m.optBytes("aad", r.AAD)
	return append(m.dst, '}')
}

// appendBatchRequest: client side (omitempty as tagged). The body's size
// is reserved at once, before the items are written.
func appendBatchRequest(dst []byte, r *api.BatchRequest) []byte {
	n := 16
	for i := range r.Ops {
		it := &r.Ops[i]
		n += itemSize + b64Len(it.SealedKey, it.EKB, it.Plaintext, it.Ciphertext, it.AAD, it.Message, it.Signature, it.MAC, it.ToAAD) +
			len(it.Op) + len(it.KeyID) + len(it.Algorithm) + len(it.ToKeyID)
	}
	dst = append(reserve(dst, n), `{"ops":[`...)
	for i := range r.Ops {
		if i > 0 {
			dst = append(dst, ',')
		}
		it := &r.Ops[i]
		m := members{dst: append(dst, '{')}
		m.str("op", it.Op)
		m.keyRef(it.KeyID, it.SealedKey, it.EKB)
		m.optBytes("plaintext", it.Plaintext)
		m.optBytes("ciphertext", it.Ciphertext)
		m.optBytes("aad", it.AAD)
		m.optBytes("message", it.Message)
		m.optBytes("signature", it.Signature)
		m.optBytes("mac", it.MAC)
		m.optInt("key_version", it.KeyVersion)
		m.optStr("algorithm", it.Algorithm)
		m.optInt("bytes", it.Bytes)
		m.optStr("to_key_id", it.ToKeyID)
		m.optBytes("to_aad", it.ToAAD)
		dst = append(m.dst, '}')
	}
	return append(dst, "]}"...)
}

// decodeBatchResponse: client side. Results with an error or a "valid"
// field, and a null list, fall back to encoding/json.
func decodeBatchResponse(r *api.BatchResponse, data []byte) bool {
	return decodeTop(r, data, func(l *lexer, v *api.BatchResponse, k string) bool {
		if k != "results" || l.null() {
			return false
		}
		array(l, &v.Results, func(res *api.BatchResult) {
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
		})
		return true
	})
}

// decodeWrappedKeys: both sides. The SDK reads it in the answers to
// rewrap, load and derive (a sidecar's grant load and derive too), the
// sidecar in an import. A batch of 1,000 keys is one long base64 string
// and 1,000 small metadata objects, which encoding/json scans twice and
// decodes by reflection. Metadata with labels or a policy is left to
// encoding/json (the whole body).
func decodeWrappedKeys(r *api.WrappedKeys, data []byte) bool {
	return decodeTop(r, data, func(l *lexer, v *api.WrappedKeys, k string) bool {
		switch k {
		case "batch":
			l.bytes(&v.Batch)
		case "expires_at":
			l.timePtr(&v.ExpiresAt)
		case "keys":
			array(l, &v.Keys, l.wrappedKey)
		case "warnings":
			array(l, &v.Warnings, l.escStr)
		default:
			return false
		}
		return true
	})
}

func (l *lexer) wrappedKey(w *api.WrappedKey) {
	if l.null() {
		return
	}
	l.object(func(k string) bool {
		switch k {
		case "key_id":
			l.str(&w.KeyID)
		case "version":
			l.int(&w.Version)
		case "wrapped":
			l.bytes(&w.Wrapped)
		case "metadata":
			l.metadata(&w.Metadata)
		case "encryptions":
			l.int64(&w.Encryptions)
		default:
			return false
		}
		return true
	})
}

// decodeKeyMetadata: the KMS reads the metadata an EKB authenticates on
// every opening (rewrap, grant, load and the central path).
func decodeKeyMetadata(r *api.KeyMetadata, data []byte) bool {
	l := &lexer{b: data, ok: true}
	var v api.KeyMetadata
	l.metadata(&v)
	if !l.end() {
		return false
	}
	*r = v
	return true
}

func (l *lexer) metadata(m *api.KeyMetadata) {
	if l.null() {
		return
	}
	l.object(func(k string) bool {
		switch k {
		case "key_id":
			l.str(&m.KeyID)
		case "version":
			l.int(&m.Version)
		case "tenant":
			l.str(&m.Tenant)
		case "type":
			l.str((*string)(&m.Type))
		case "owner":
			l.escStr(&m.Owner)
		case "purpose":
			l.escStr(&m.Purpose)
		case "created_at":
			l.time(&m.CreatedAt)
		case "expires_at":
			l.timePtr(&m.ExpiresAt)
		case "retained":
			l.bool(&m.Retained)
		case "exportable":
			l.bool(&m.Exportable)
		case "rotation_period_seconds":
			l.int64(&m.RotationPeriodSeconds)
		case "public_key_pem":
			l.escStr(&m.PublicKeyPEM)
		default: // labels, policy: encoding/json
			return false
		}
		return true
	})
}

// appendWrappedKeys: the KMS's answer to rewrap, load and derive, and the
// body of the SDK's import. It declines (dst unchanged) when a key's
// metadata has labels or a policy, or a time json.Marshal would refuse.
func appendWrappedKeys(dst []byte, r *api.WrappedKeys) ([]byte, bool) {
	start := len(dst)
	dst = append(dst, '{')
	if len(r.Batch) > 0 {
		dst = append(dst, `"batch":`...)
		dst = appendBytes(dst, r.Batch)
		dst = append(dst, ',')
	}
	ok := true
	if r.ExpiresAt != nil {
		dst = append(dst, `"expires_at":`...)
		dst, ok = appendTime(dst, *r.ExpiresAt)
		dst = append(dst, ',')
	}
	dst = append(dst, `"keys":`...)
	if r.Keys == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i := range r.Keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			var kok bool
			dst, kok = appendWrappedKey(dst, &r.Keys[i])
			ok = ok && kok
		}
		dst = append(dst, ']')
	}
	if len(r.Warnings) > 0 {
		dst = append(dst, `,"warnings":`...)
		dst = appendArray(dst, r.Warnings, appendString)
	}
	if !ok {
		return dst[:start], false
	}
	return append(dst, '}'), true
}

func appendWrappedKey(dst []byte, w *api.WrappedKey) ([]byte, bool) {
	dst = append(dst, `{"key_id":`...)
	dst = appendString(dst, w.KeyID)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendInt(dst, int64(w.Version), 10)
	if len(w.Wrapped) > 0 {
		dst = append(dst, `,"wrapped":`...)
		dst = appendBytes(dst, w.Wrapped)
	}
	ok := true
	if !reflect.ValueOf(w.Metadata).IsZero() { // omitzero
		dst = append(dst, `,"metadata":`...)
		dst, ok = appendMetadata(dst, &w.Metadata)
	}
	if w.Encryptions != 0 {
		dst = append(dst, `,"encryptions":`...)
		dst = strconv.AppendInt(dst, w.Encryptions, 10)
	}
	return append(dst, '}'), ok
}

func appendMetadata(dst []byte, m *api.KeyMetadata) ([]byte, bool) {
	if len(m.Labels) > 0 || m.Policy != nil {
		return dst, false
	}
	dst = append(dst, `{"key_id":`...)
	dst = appendString(dst, m.KeyID)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendInt(dst, int64(m.Version), 10)
	dst = append(dst, `,"tenant":`...)
	dst = appendString(dst, m.Tenant)
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, string(m.Type))
	dst = append(dst, `,"owner":`...)
	dst = appendString(dst, m.Owner)
	if m.Purpose != "" {
		dst = append(dst, `,"purpose":`...)
		dst = appendString(dst, m.Purpose)
	}
	dst = append(dst, `,"created_at":`...)
	dst, ok := appendTime(dst, m.CreatedAt)
	if m.ExpiresAt != nil {
		var eok bool
		dst = append(dst, `,"expires_at":`...)
		dst, eok = appendTime(dst, *m.ExpiresAt)
		ok = ok && eok
	}
	if m.Retained {
		dst = append(dst, `,"retained":true`...)
	}
	if m.Exportable {
		dst = append(dst, `,"exportable":true`...)
	}
	if m.RotationPeriodSeconds != 0 {
		dst = append(dst, `,"rotation_period_seconds":`...)
		dst = strconv.AppendInt(dst, m.RotationPeriodSeconds, 10)
	}
	if m.PublicKeyPEM != "" {
		dst = append(dst, `,"public_key_pem":`...)
		dst = appendString(dst, m.PublicKeyPEM)
	}
	return append(dst, '}'), ok
}

// appendTime writes t as time.Time's MarshalJSON does, or reports false
// where it fails (a year outside 0..9999).
func appendTime(dst []byte, t time.Time) ([]byte, bool) {
	out, err := t.AppendText(append(dst, '"'))
	if err != nil {
		return dst, false // AppendText's answer on failure is not dst
	}
	return append(out, '"'), true
}
