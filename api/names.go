package api

// KeyType names a data-key algorithm.
type KeyType string

// Key types. The zero value is unset and rejected.
const (
	KeyAES256GCM  KeyType = "aes-256-gcm"
	KeyHMACSHA256 KeyType = "hmac-sha256"
	KeyEd25519    KeyType = "ed25519"
	KeyECDSAP256  KeyType = "ecdsa-p256"
	KeyMLDSA65    KeyType = "ml-dsa-65"
	// KeyAES256KBPK is a key-block protection key: 32 bytes the KMS uses
	// only to wrap and unwrap TR-31 key blocks (docs/import-export.md). It
	// is never released to a sidecar and does not encrypt data.
	KeyAES256KBPK KeyType = "aes-256-kbpk"
)

// Valid reports whether t is a key type dcaas knows.
func (t KeyType) Valid() bool {
	switch t {
	case KeyAES256GCM, KeyHMACSHA256, KeyEd25519, KeyECDSAP256, KeyMLDSA65, KeyAES256KBPK:
		return true
	}
	return false
}

// Signing reports whether t is an asymmetric signing key type.
func (t KeyType) Signing() bool {
	return t == KeyEd25519 || t == KeyECDSAP256 || t == KeyMLDSA65
}

// KEM names an HPKE key-encapsulation mechanism. HPKE always runs with
// HKDF-SHA-256 and AES-256-GCM.
type KEM string

// KEMs.
const (
	KEMX25519         KEM = "x25519"          // DHKEM(X25519, HKDF-SHA256)
	KEMP256           KEM = "p256"            // DHKEM(P-256, HKDF-SHA256)
	KEMMLKEM768X25519 KEM = "mlkem768-x25519" // ML-KEM-768 + X25519 hybrid (X-Wing style)
	KEMMLKEM768P256   KEM = "mlkem768-p256"   // ML-KEM-768 + P-256 hybrid (FIPS mode)
)

// Action is something a key policy can allow.
type Action string

// Actions. "mac" covers MAC verification; "verify" signature verification.
const (
	ActionEncrypt Action = "encrypt"
	ActionDecrypt Action = "decrypt"
	ActionSign    Action = "sign"
	ActionVerify  Action = "verify"
	ActionMAC     Action = "mac"
)

// Valid reports whether a is a known action.
func (a Action) Valid() bool {
	switch a {
	case ActionEncrypt, ActionDecrypt, ActionSign, ActionVerify, ActionMAC:
		return true
	}
	return false
}

// Role is what a KMS caller may do, decided by its client certificate.
type Role string

// Roles.
const (
	RoleAdmin     Role = "admin"
	RoleCustodian Role = "custodian"
	RolePipeline  Role = "pipeline"
	RoleSidecar   Role = "sidecar"
)

// Enclave names where a sidecar keeps its keys.
type Enclave string

// Enclaves.
const (
	EnclaveSoftware Enclave = "software"
	EnclaveTPM      Enclave = "tpm"
)
