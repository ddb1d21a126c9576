// Package crypto is the only dcaas code that touches cryptographic
// primitives (with the enclaves, which hold raw keys by design; the rules
// and their exceptions are internal/archtest's TestArchitecture), all from the Go standard library except ML-DSA-65
// (cloudflare/circl, until the standard library exports it; refused in FIPS
// mode) and RFC 5649 key wrap with padding (built here on crypto/aes, which
// has no KWP; proven with the RFC's and NIST CAVP vectors and OpenSSL).
// Callers import it under an alias (kcrypto) and hold handles, never raw
// key bytes. Import and export wrapping: [WrapRSAAES], [UnwrapRSAAES],
// [WrapExport], [UnwrapImport], [WrapKeyPadded].
//
// Where to start:
//
//   - Randomness and identifiers: [Random], [RandomID], [NewToken],
//     [HashToken], [Equal].
//   - Symmetric encryption: [AEAD] (AES-256-GCM with random nonces), its
//     self-describing ciphertexts ([AEAD.EncryptMessage], format.Ciphertext),
//     and [HKDF].
//   - Encrypted key blobs under a tenant master key: [SealEKB], [OpenEKB].
//   - Data keys: [GenerateKey], [CheckMaterial], [PublicKeyPEM], and [Key],
//     the operation handle (encrypt, decrypt, sign, verify, MAC).
//   - HPKE key transport (RFC 9180) to sidecars: [KEMOf], [GenerateKEMKey],
//     [ParseKEMPublicKey], [WrapBatch] and [Unwrapper]; the handles
//     [KEMPrivateKey] and [KEMPublicKey]; single-shot [HPKESeal] and
//     [HPKEOpen].
//   - Key derivation: [HKDF], [PBKDF2] (the file seal's passphrase).
//   - TLS identity keys: [GenerateIdentityKey], [MarshalPrivateKeyPEM].
//   - The audit log's signing key (Ed25519): [LogKey], [LogVerifyKey].
//
// Secrets (keys, derived keys, plaintext key material) are *secret.Bytes
// with one owner, who wipes them. Every authentication failure, whatever
// its cause (wrong key, tag, associated data, key id or version), is the one
// opaque [ErrDecrypt].
//
// FIPS 140-3: with GODEBUG=fips140=on ([FIPS] reports it), every algorithm
// used is approved; the non-approved KEMs (X25519 and the ML-KEM-768 +
// X25519 hybrid) are refused with [ErrNotApproved]. AES-GCM always runs as
// crypto/cipher.NewGCMWithRandomNonce, the approved mode in which the
// module draws the nonce itself, so the code also runs with
// GODEBUG=fips140=only. docs/formats.md describes every construction.
package crypto
