// Package ops is the one operation engine the KMS (central path) and every
// sidecar share: encrypt, decrypt, sign, verify, MAC, MAC verification,
// hash, random, translate and batch, over keys that a Resolver finds.
//
// The engine knows nothing about where keys live: the sidecar resolves
// loaded key ids and sealed keys from its keyring and enclave, the KMS
// resolves EKBs and retained keys. Both get the same request and response
// shapes (api/ops.go), so an application moves from central to local by
// changing a URL.
package ops

import (
	"context"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"errors"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/format"
)

// Resolver finds the key an operation names, checks that the caller may
// perform action with it, and returns its handle and what the engine
// releases when the operation is done (nil: nothing). version 0 means the
// key's current version.
type Resolver interface {
	Acquire(ctx context.Context, ref api.KeyRef, version int, action api.Action) (*kcrypto.Key, Releaser, error)
}

// Releaser is told when an operation is done with a key.
type Releaser interface{ Release() }

func release(r Releaser) {
	if r != nil {
		r.Release()
	}
}

// Meter is an optional capability of a Releaser: usage accounting. The
// engine calls Charge with the input size before the key encrypts, signs
// or MACs; when Charge refuses (a usage limit is reached), the operation is
// not performed and its error is returned. Decryption and verification are
// not charged.
type Meter interface {
	Charge(n int) error
}

// Warner is an optional capability of a Releaser: Warning returns a
// sentence for the caller about the key (e.g. that its rotation is due),
// or "". The engine puts it in the response of encrypt, sign and MAC.
type Warner interface {
	Warning() string
}

// charge asks rel's Meter, if any, to account for an operation on n bytes.
func charge(rel Releaser, n int) error {
	if m, ok := rel.(Meter); ok {
		return m.Charge(n)
	}
	return nil
}

// warning returns rel's Warner's warning, if any.
func warning(rel Releaser) string {
	if w, ok := rel.(Warner); ok {
		return w.Warning()
	}
	return ""
}

// DefaultMaxEncryptions is the default safe number of encryptions per
// AES-GCM key version: NIST SP 800-38D §8.3 bounds the invocations of
// GCM with random 96-bit nonces under one key to 2^32, which keeps the
// chance of a repeated nonce below 2^-32.
const DefaultMaxEncryptions = 1 << 32

// ErrUsageLimit is the refusal of an encryption with a key version that
// has made max encryptions, its safe limit: the custodian must rotate.
func ErrUsageLimit(keyID string, version int, max int64) error {
	return api.Errorf(api.CodeUsageLimitExceeded,
		"Version %d of key %s has made %d encryptions, the safe limit for AES-GCM with random nonces (NIST SP 800-38D §8.3); rotate the key (POST /v1/datakeys/%s/versions), load the new version and translate old ciphertexts to it.",
		version, keyID, max, keyID)
}

// Limits bound what one request may ask for.
const (
	MaxRandom = 1024
	MaxBatch  = 10000
)

// Engine runs operations. The zero value is not usable: set R.
type Engine struct {
	R Resolver
	// OnEncrypt, if set, is told of every successful encryption (usage
	// accounting).
	OnEncrypt func(keyID string, version int, n int)
}

// Errors with API codes that operations return, fresh each time (callers
// may keep or change what they get).
func errDecrypt() error {
	return api.Errorf(api.CodeDecryptFailed, "The ciphertext does not decrypt: wrong key, wrong associated data, or modified ciphertext.")
}

func errBadCT() error {
	return api.Errorf(api.CodeInvalidCiphertext, "The ciphertext is not a dcaas ciphertext.")
}

// cryptoErr maps errors of internal/crypto to API errors.
func cryptoErr(err error, keyID string) error {
	var e *api.Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, kcrypto.ErrDecrypt):
		return errDecrypt()
	case errors.Is(err, format.ErrMalformed):
		return errBadCT()
	case errors.Is(err, kcrypto.ErrWrongKeyType):
		return api.Errorf(api.CodeWrongKeyType, "Key %s does not support this operation.", keyID)
	case errors.Is(err, kcrypto.ErrTooLarge):
		return api.Errorf(api.CodeTooLarge, "The input is too large for this operation.")
	}
	return err
}

// acquire checks that ref names a key and acquires that key's version
// (0: the current one) for action.
func (e *Engine) acquire(ctx context.Context, ref api.KeyRef, version int, action api.Action) (*kcrypto.Key, Releaser, error) {
	if ref.KeyID == "" && len(ref.SealedKey) == 0 && len(ref.EKB) == 0 {
		return nil, nil, api.Errorf(api.CodeInvalidArgument, "Name the key: key_id, sealed_key or ekb.")
	}
	return e.R.Acquire(ctx, ref, version, action)
}

// Encrypt seals plaintext under the current version of the named key.
func (e *Engine) Encrypt(ctx context.Context, req *api.EncryptRequest) (*api.EncryptResponse, error) {
	k, rel, err := e.acquire(ctx, req.KeyRef, 0, api.ActionEncrypt)
	if err != nil {
		return nil, err
	}
	defer release(rel)
	if err := charge(rel, len(req.Plaintext)); err != nil {
		return nil, err
	}
	ct, err := k.Encrypt(nil, req.Plaintext, req.AAD)
	if err != nil {
		return nil, cryptoErr(err, k.KeyID())
	}
	if e.OnEncrypt != nil {
		e.OnEncrypt(k.KeyID(), int(k.Version()), len(req.Plaintext))
	}
	return &api.EncryptResponse{Ciphertext: ct, KeyID: k.KeyID(), KeyVersion: int(k.Version()), Warning: warning(rel)}, nil
}

// decryptRef is the key reference of a decryption: the key id and version
// come from the ciphertext header; a key_id in the request must agree.
func decryptRef(ref api.KeyRef, ct []byte) (api.KeyRef, int, error) {
	id, ver, err := format.PeekCiphertextKey(ct)
	if err != nil {
		return ref, 0, errBadCT()
	}
	if ref.KeyID != "" && ref.KeyID != id {
		return ref, 0, api.Errorf(api.CodeInvalidArgument, "The ciphertext is under key %s, not %s.", id, ref.KeyID)
	}
	if len(ref.SealedKey) == 0 && len(ref.EKB) == 0 {
		ref.KeyID = id
	}
	return ref, int(ver), nil
}

// Decrypt opens a dcaas ciphertext with the key version its header names.
func (e *Engine) Decrypt(ctx context.Context, req *api.DecryptRequest) (*api.DecryptResponse, error) {
	pt, err := e.decrypt(ctx, req.KeyRef, req.Ciphertext, req.AAD)
	if err != nil {
		return nil, err
	}
	return &api.DecryptResponse{Plaintext: pt}, nil
}

func (e *Engine) decrypt(ctx context.Context, ref api.KeyRef, ct, aad []byte) ([]byte, error) {
	ref, ver, err := decryptRef(ref, ct)
	if err != nil {
		return nil, err
	}
	k, rel, err := e.R.Acquire(ctx, ref, ver, api.ActionDecrypt)
	if err != nil {
		return nil, err
	}
	defer release(rel)
	if k.KeyID() != ref.KeyID && ref.KeyID != "" {
		return nil, errDecrypt()
	}
	pt, err := k.Decrypt(nil, ct, aad)
	if err != nil {
		return nil, cryptoErr(err, k.KeyID())
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}

// Sign signs message with the current version of a signing key.
func (e *Engine) Sign(ctx context.Context, req *api.SignRequest) (*api.SignResponse, error) {
	sig, version, warn, err := e.tag(ctx, req.KeyRef, api.ActionSign, req.Message, (*kcrypto.Key).Sign)
	if err != nil {
		return nil, err
	}
	return &api.SignResponse{Signature: sig, KeyVersion: version, Warning: warn}, nil
}

// Verify checks a signature with the named (default: current) version.
func (e *Engine) Verify(ctx context.Context, req *api.VerifyRequest) (*api.ValidResponse, error) {
	k, rel, err := e.acquire(ctx, req.KeyRef, req.KeyVersion, api.ActionVerify)
	if err != nil {
		return nil, err
	}
	defer release(rel)
	ok, err := k.Verify(req.Message, req.Signature)
	if err != nil {
		return nil, cryptoErr(err, k.KeyID())
	}
	return &api.ValidResponse{Valid: ok}, nil
}

// MAC computes HMAC-SHA-256 with the current version of an HMAC key.
func (e *Engine) MAC(ctx context.Context, req *api.MACRequest) (*api.MACResponse, error) {
	tag, version, warn, err := e.tag(ctx, req.KeyRef, api.ActionMAC, req.Message, (*kcrypto.Key).MAC)
	if err != nil {
		return nil, err
	}
	return &api.MACResponse{MAC: tag, KeyVersion: version, Warning: warn}, nil
}

// MACVerify checks a tag in constant time: it calls Key.VerifyMAC
// directly, never a comparison of its own (internal/adversarial's
// TestConstantTimeComparisons reads this function's calls).
func (e *Engine) MACVerify(ctx context.Context, req *api.MACVerifyRequest) (*api.ValidResponse, error) {
	k, rel, err := e.acquire(ctx, req.KeyRef, req.KeyVersion, api.ActionMAC)
	if err != nil {
		return nil, err
	}
	defer release(rel)
	ok, err := k.VerifyMAC(req.Message, req.MAC)
	if err != nil {
		return nil, cryptoErr(err, k.KeyID())
	}
	return &api.ValidResponse{Valid: ok}, nil
}

// tag is Sign and MAC: it acquires the current version of the key ref
// names for action, charges msg's length, and computes msg's signature or
// MAC. It returns the tag, the key version and the key's warning.
func (e *Engine) tag(ctx context.Context, ref api.KeyRef, action api.Action, msg []byte, compute func(*kcrypto.Key, []byte) ([]byte, error)) ([]byte, int, string, error) {
	k, rel, err := e.acquire(ctx, ref, 0, action)
	if err != nil {
		return nil, 0, "", err
	}
	defer release(rel)
	if err := charge(rel, len(msg)); err != nil {
		return nil, 0, "", err
	}
	t, err := compute(k, msg)
	if err != nil {
		return nil, 0, "", cryptoErr(err, k.KeyID())
	}
	return t, int(k.Version()), warning(rel), nil
}

// Hash digests message; it needs no key.
func (e *Engine) Hash(_ context.Context, req *api.HashRequest) (*api.HashResponse, error) {
	var d []byte
	switch req.Algorithm {
	case "sha-256":
		s := sha256.Sum256(req.Message)
		d = s[:]
	case "sha-384":
		s := sha512.Sum384(req.Message)
		d = s[:]
	case "sha-512":
		s := sha512.Sum512(req.Message)
		d = s[:]
	case "sha3-256":
		s := sha3.Sum256(req.Message)
		d = s[:]
	default:
		return nil, api.Errorf(api.CodeInvalidArgument, "algorithm must be sha-256, sha-384, sha-512 or sha3-256.")
	}
	return &api.HashResponse{Digest: d}, nil
}

// Random returns 1..MaxRandom bytes from the system CSPRNG.
func (e *Engine) Random(_ context.Context, req *api.RandomRequest) (*api.RandomResponse, error) {
	if req.Bytes < 1 || req.Bytes > MaxRandom {
		return nil, api.Errorf(api.CodeInvalidArgument, "bytes must be between 1 and %d.", MaxRandom)
	}
	return &api.RandomResponse{Random: kcrypto.Random(req.Bytes)}, nil
}

// Translate decrypts a ciphertext and encrypts the plaintext under another
// key (or the current version of the same key) in one step; the plaintext
// never leaves the process and is wiped. It always encrypts with the
// newest version of the target key, so after a rotation translating a
// ciphertext to its own key moves it to the new version. The caller needs
// decrypt on the source key and encrypt on the target.
func (e *Engine) Translate(ctx context.Context, req *api.TranslateRequest) (*api.EncryptResponse, error) {
	if req.ToKeyID == "" {
		return nil, api.Errorf(api.CodeInvalidArgument, "to_key_id is required.")
	}
	pt, err := e.decrypt(ctx, api.KeyRef{}, req.Ciphertext, req.AAD)
	if err != nil {
		return nil, err
	}
	defer clear(pt)
	return e.Encrypt(ctx, &api.EncryptRequest{KeyRef: api.KeyRef{KeyID: req.ToKeyID}, Plaintext: pt, AAD: req.ToAAD})
}
