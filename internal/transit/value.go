package transit

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrMalformed is wrapped by every error ParseValue returns.
var ErrMalformed = errors.New("transit: malformed value")

// valuePrefix starts every transit ciphertext, HMAC and signature:
// "vault:v<version>:<base64>".
const valuePrefix = "vault:v"

// FormatValue returns the transit form of a versioned payload:
// "vault:v<version>:" followed by payload in standard, padded base64. For a
// ciphertext the payload is a whole dcaas ciphertext (docs/formats.md), so
// the version in the prefix repeats the one in its authenticated header.
// version must be at least 1.
func FormatValue(version int, payload []byte) string {
	b := make([]byte, 0, len(valuePrefix)+11+base64.StdEncoding.EncodedLen(len(payload)))
	b = append(b, valuePrefix...)
	b = strconv.AppendInt(b, int64(version), 10)
	b = append(b, ':')
	b = base64.StdEncoding.AppendEncode(b, payload)
	return string(b)
}

// ParseValue splits a "vault:v<version>:<base64>" value into its version
// and decoded payload (a new slice the caller owns). It accepts exactly
// what FormatValue produces: a decimal version from 1 to 2^32-1 without
// sign or leading zeros, and a non-empty payload in strict standard padded
// base64. Every error wraps ErrMalformed.
func ParseValue(s string) (version int, payload []byte, err error) {
	rest, ok := strings.CutPrefix(s, valuePrefix)
	if !ok {
		return 0, nil, fmt.Errorf("%w: no %q prefix", ErrMalformed, valuePrefix)
	}
	num, b64, ok := strings.Cut(rest, ":")
	if !ok {
		return 0, nil, fmt.Errorf("%w: no ':' after the version", ErrMalformed)
	}
	if num == "" || len(num) > 10 || num[0] == '0' || strings.Trim(num, "0123456789") != "" {
		return 0, nil, fmt.Errorf("%w: the version is not a decimal number from 1", ErrMalformed)
	}
	v, err := strconv.ParseUint(num, 10, 64)
	if err != nil || v > math.MaxUint32 {
		return 0, nil, fmt.Errorf("%w: the version is out of range", ErrMalformed)
	}
	if b64 == "" || strings.ContainsAny(b64, "\r\n") {
		// The decoder skips line breaks; a canonical value has none.
		return 0, nil, fmt.Errorf("%w: empty payload or a line break in it", ErrMalformed)
	}
	payload, err = base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: the payload is not standard padded base64", ErrMalformed)
	}
	return int(v), payload, nil
}
