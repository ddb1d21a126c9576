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
	// One allocation for the whole body: a batch of 100 1 KiB items grew
	// its buffer a dozen times, copying and zeroing each time.
	if n := sizeHint(v); n > cap(dst)-len(dst) {
		dst = slices.Grow(dst, n)
	}
	switch r := v.(type) {
	case *api.EncryptResponse:
		return appendEncryptResponse(dst, r), true
	case *api.DecryptResponse:
		return appendDecryptResponse(dst, r), true
	case *api.BatchResponse:
		return appendBatchResponse(dst, r), true
	case *api.BatchResult:
		return appendBatchResult(dst, r), true
	case *api.EncryptRequest:
		return appendEncryptRequest(dst, r), true
	case *api.BatchRequest:
		return appendBatchRequest(dst, r), true
	case *api.WrappedKeys:
		return appendWrappedKeys(dst, r)
	case *api.RewrapRequest:
		dst = append(dst, `{"ekbs":`...)
		dst = appendBytesArray(dst, r.EKBs)
		dst = append(dst, `,"wrapping_cert_pem":`...)
		dst = appendString(dst, r.WrappingCertPEM)
		return append(dst, '}'), true
	case *api.GrantRequest:
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
		return append(dst, '}'), true
	case *api.LoadRequest:
		dst = append(dst, `{"grant":`...)
		dst = appendString(dst, r.Grant)
		dst = appendKeys(dst, r.EKBs, r.KeyIDs)
		dst = append(dst, `,"recipient":{"kem":`...)
		dst = appendString(dst, string(r.Recipient.KEM))
		dst = append(dst, `,"public_key":`...)
		dst = appendBytes(dst, r.Recipient.PublicKey)
		return append(dst, "}}"...), true
	}
	return dst, false
}

// appendKeys writes the "ekbs" and "key_ids" members of a grant or load
// request that are set (encoding/json's omitempty), each after a comma.
func appendKeys(dst []byte, ekbs [][]byte, keyIDs []string) []byte {
	if len(ekbs) > 0 {
		dst = append(dst, `,"ekbs":`...)
		dst = appendBytesArray(dst, ekbs)
	}
	if len(keyIDs) > 0 {
		dst = append(dst, `,"key_ids":[`...)
		for i, id := range keyIDs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, id)
		}
		dst = append(dst, ']')
	}
	return dst
}

// appendBytesArray writes bs as a JSON array of base64 strings (nil as
// null, as encoding/json does, for the slice and its elements).
func appendBytesArray(dst []byte, bs [][]byte) []byte {
	if bs == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i, b := range bs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendBytes(dst, b)
	}
	return append(dst, ']')
}

// sizeHint is about how many bytes Append writes for v: every byte
// field's base64 length, every string's length, and a fixed allowance per
// item for names, punctuation and numbers. It may fall short (strings
// needing escapes); Append then grows as needed.
func sizeHint(v any) int {
	enc := func(bs ...[]byte) int {
		n := 0
		for _, b := range bs {
			n += base64.StdEncoding.EncodedLen(len(b))
		}
		return n
	}
	const item = 160
	switch r := v.(type) {
	case *api.EncryptResponse:
		return item + enc(r.Ciphertext) + len(r.KeyID) + len(r.Warning)
	case *api.DecryptResponse:
		return item + enc(r.Plaintext)
	case *api.EncryptRequest:
		return item + enc(r.Plaintext, r.AAD, r.EKB, r.SealedKey) + len(r.KeyID)
	case *api.BatchResult:
		return item + enc(r.Ciphertext, r.Plaintext, r.Signature, r.MAC, r.Digest, r.Random) + len(r.KeyID) + len(r.Warning)
	case *api.BatchResponse:
		n := 16
		for i := range r.Results {
			n += sizeHint(&r.Results[i])
		}
		return n
	case *api.RewrapRequest:
		return item + enc(r.EKBs...) + 3*len(r.EKBs) + len(r.WrappingCertPEM)
	case *api.GrantRequest:
		return item + enc(r.EKBs...) + enc(r.Seeds...) + 3*(len(r.EKBs)+len(r.Seeds)) + len(r.InstanceID) + strLen(r.KeyIDs)
	case *api.LoadRequest:
		return item + enc(r.EKBs...) + 3*len(r.EKBs) + enc(r.Recipient.PublicKey) + len(r.Grant) + strLen(r.KeyIDs)
	case *api.BatchRequest:
		n := 16
		for i := range r.Ops {
			it := &r.Ops[i]
			n += item + enc(it.SealedKey, it.EKB, it.Plaintext, it.Ciphertext, it.AAD, it.Message, it.Signature, it.MAC, it.ToAAD) +
				len(it.Op) + len(it.KeyID) + len(it.Algorithm) + len(it.ToKeyID)
		}
		return n
	}
	return 0
}

// strLen is the length of ss as a JSON array of plain strings.
func strLen(ss []string) int {
	n := 2
	for _, s := range ss {
		n += len(s) + 3
	}
	return n
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
		if l.null() {
			v.Ops = nil
			return true
		}
		if !l.tok('[') {
			l.ok = false
			return true
		}
		v.Ops = make([]api.BatchItem, 0, 16)
		if l.tok(']') {
			return true
		}
		for l.ok {
			if len(v.Ops) == api.MaxBatchOps {
				l.ok = false // too many: CheckSize says so
				break
			}
			v.Ops = append(v.Ops, api.BatchItem{})
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
	dst = append(dst, `{"plaintext":`...)
	dst = appendBytes(dst, r.Plaintext)
	return append(dst, '}')
}

// appendBatchResult: server side (omitempty as the struct tags say).
func appendBatchResult(dst []byte, r *api.BatchResult) []byte {
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

// appendBatchResponse: server side.
func appendBatchResponse(dst []byte, r *api.BatchResponse) []byte {
	dst = append(dst, `{"results":[`...)
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
	dst = append(dst, '{')
	dst = appendKeyRef(dst, &r.KeyRef)
	dst = append(dst, `"plaintext":`...)
	dst = appendBytes(dst, r.Plaintext)
	if len(r.AAD) > 0 {
		dst = append(dst, `,"aad":`...)
		dst = appendBytes(dst, r.AAD)
	}
	return append(dst, '}')
}

// appendKeyRef writes the set fields of r, each followed by a comma.
func appendKeyRef(dst []byte, r *api.KeyRef) []byte {
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

// appendBatchRequest: client side (omitempty as tagged).
func appendBatchRequest(dst []byte, r *api.BatchRequest) []byte {
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

// decodeBatchResponse: client side. Results with an
// error or a "valid" field fall back to encoding/json.
func decodeBatchResponse(r *api.BatchResponse, data []byte) bool {
	return decodeTop(r, data, func(l *lexer, v *api.BatchResponse, k string) bool {
		if k != "results" || !l.tok('[') {
			return false
		}
		v.Results = make([]api.BatchResult, 0, 16)
		if l.tok(']') {
			return true
		}
		for l.ok {
			v.Results = append(v.Results, api.BatchResult{})
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
		dst = append(dst, `,"warnings":[`...)
		for i, w := range r.Warnings {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, w)
		}
		dst = append(dst, ']')
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
