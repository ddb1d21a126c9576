// Package secretcheck holds tests, and nothing else, that keep key material
// from being printed: every type that holds secret bytes (internal/secret,
// internal/crypto, the enclaves, the keyring, the seals, configurations
// that carry a passphrase, PIN or token) is built with known material and
// formatted with every fmt verb, marshaled to JSON and logged with slog,
// and the output must not contain the material in any common encoding.
// A source scan makes every exported []byte field whose name says it holds
// a key or secret, and every exported string field whose name says it holds
// a credential (token, grant, PIN, passphrase, DSN, ...), justify itself in
// an allow-list.
//
// Run it with go test ./internal/secretcheck (it needs the TPM simulator,
// like internal/enclave/tpm).
package secretcheck
