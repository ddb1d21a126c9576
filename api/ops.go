package api

// The operations API, the same on the KMS (central path) and on every
// sidecar. A request names its key by KeyID (loaded or retained), or carries
// it as SealedKey (sidecar, stateless) or EKB (KMS, central path).

// KeyRef names the key of an operation. Exactly one of its fields is set,
// except for decrypt, where the ciphertext names the key.
type KeyRef struct {
	KeyID     string `json:"key_id,omitempty"`
	SealedKey []byte `json:"sealed_key,omitempty"`
	EKB       []byte `json:"ekb,omitempty"`
}

// EncryptRequest is the body of POST /v1/crypto/encrypt.
type EncryptRequest struct {
	KeyRef
	Plaintext []byte `json:"plaintext"`
	AAD       []byte `json:"aad,omitempty"`
}

// EncryptResponse carries a self-describing dcaas ciphertext.
type EncryptResponse struct {
	Ciphertext []byte `json:"ciphertext"`
	KeyID      string `json:"key_id"`
	KeyVersion int    `json:"key_version"`
	// Warning is a sentence about the key for the caller, e.g. that its
	// rotation is due.
	Warning string `json:"warning,omitempty"`
}

// DecryptRequest is the body of POST /v1/crypto/decrypt.
type DecryptRequest struct {
	KeyRef
	Ciphertext []byte `json:"ciphertext"`
	AAD        []byte `json:"aad,omitempty"`
}

// DecryptResponse carries the plaintext.
type DecryptResponse struct {
	Plaintext []byte `json:"plaintext"`
}

// SignRequest is the body of POST /v1/crypto/sign.
type SignRequest struct {
	KeyRef
	Message []byte `json:"message"`
}

// SignResponse carries a raw signature (Ed25519 64 bytes; ECDSA ASN.1 DER).
type SignResponse struct {
	Signature  []byte `json:"signature"`
	KeyVersion int    `json:"key_version,omitempty"`
	Warning    string `json:"warning,omitempty"` // as in EncryptResponse
}

// VerifyRequest is the body of POST /v1/crypto/verify.
type VerifyRequest struct {
	KeyRef
	Message    []byte `json:"message"`
	Signature  []byte `json:"signature"`
	KeyVersion int    `json:"key_version,omitempty"` // default: the current version
}

// ValidResponse answers verify and mac/verify.
type ValidResponse struct {
	Valid bool `json:"valid"`
}

// MACRequest is the body of POST /v1/crypto/mac.
type MACRequest struct {
	KeyRef
	Message []byte `json:"message"`
}

// MACResponse carries a raw HMAC tag.
type MACResponse struct {
	MAC        []byte `json:"mac"`
	KeyVersion int    `json:"key_version,omitempty"`
	Warning    string `json:"warning,omitempty"` // as in EncryptResponse
}

// MACVerifyRequest is the body of POST /v1/crypto/mac/verify.
type MACVerifyRequest struct {
	KeyRef
	Message    []byte `json:"message"`
	MAC        []byte `json:"mac"`
	KeyVersion int    `json:"key_version,omitempty"` // default: the current version
}

// HashRequest is the body of POST /v1/crypto/hash.
type HashRequest struct {
	Algorithm string `json:"algorithm"`
	Message   []byte `json:"message"`
}

// HashResponse carries the digest.
type HashResponse struct {
	Digest []byte `json:"digest"`
}

// RandomRequest is the body of POST /v1/crypto/random.
type RandomRequest struct {
	Bytes int `json:"bytes"`
}

// RandomResponse carries random bytes.
type RandomResponse struct {
	Random []byte `json:"random"`
}

// TranslateRequest is the body of POST /v1/crypto/translate.
type TranslateRequest struct {
	Ciphertext []byte `json:"ciphertext"`
	AAD        []byte `json:"aad,omitempty"`
	ToKeyID    string `json:"to_key_id"`
	ToAAD      []byte `json:"to_aad,omitempty"`
}

// Operation names for batch items.
const (
	OpEncrypt   = "encrypt"
	OpDecrypt   = "decrypt"
	OpSign      = "sign"
	OpVerify    = "verify"
	OpMAC       = "mac"
	OpMACVerify = "mac/verify"
	OpHash      = "hash"
	OpRandom    = "random"
	OpTranslate = "translate"
)

// BatchItem is one operation of a batch: "op" plus that operation's
// request fields, flattened.
type BatchItem struct {
	Op         string `json:"op"`
	KeyID      string `json:"key_id,omitempty"`
	SealedKey  []byte `json:"sealed_key,omitempty"`
	EKB        []byte `json:"ekb,omitempty"`
	Plaintext  []byte `json:"plaintext,omitempty"`
	Ciphertext []byte `json:"ciphertext,omitempty"`
	AAD        []byte `json:"aad,omitempty"`
	Message    []byte `json:"message,omitempty"`
	Signature  []byte `json:"signature,omitempty"`
	MAC        []byte `json:"mac,omitempty"`
	KeyVersion int    `json:"key_version,omitempty"`
	Algorithm  string `json:"algorithm,omitempty"`
	Bytes      int    `json:"bytes,omitempty"`
	ToKeyID    string `json:"to_key_id,omitempty"`
	ToAAD      []byte `json:"to_aad,omitempty"`
}

// BatchRequest is the body of POST /v1/crypto/batch.
type BatchRequest struct {
	Ops []BatchItem `json:"ops"`
}

// MaxBatchOps is the most operations a batch request may carry (more is
// too_large).
const MaxBatchOps = 10000

// BatchResult is one result: the operation's response fields, or Error.
type BatchResult struct {
	Ciphertext []byte `json:"ciphertext,omitempty"`
	KeyID      string `json:"key_id,omitempty"`
	KeyVersion int    `json:"key_version,omitempty"`
	Plaintext  []byte `json:"plaintext,omitempty"`
	Signature  []byte `json:"signature,omitempty"`
	Valid      *bool  `json:"valid,omitempty"`
	MAC        []byte `json:"mac,omitempty"`
	Digest     []byte `json:"digest,omitempty"`
	Random     []byte `json:"random,omitempty"`
	Warning    string `json:"warning,omitempty"`
	Error      *Error `json:"error,omitempty"`
}

// BatchResponse holds one result per op, in order.
type BatchResponse struct {
	Results []BatchResult `json:"results"`
}
