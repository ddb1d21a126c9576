// Package tpm implements enclave.Enclave and enclave.Attester with a TPM 2.0
// (hardware, firmware, vTPM or swtpm): the sidecar's identity key, its
// key-transport key, its attestation key and its local master key (LMK)
// are created inside the TPM and never leave it in clear.
//
// Where to start: open the TPM with [OpenDevice] (normally /dev/tpmrm0, the
// kernel's resource manager), then [Open] an [Enclave] over it with a
// directory for the key blobs. Tests use the simulator in tpmsim.
//
// # What lives where
//
//   - Storage root key (SRK): an ECC P-256 primary key under the owner
//     hierarchy, created with TPM2_CreatePrimary from the TCG template, so
//     the same TPM always yields the same SRK. Nothing about it is stored.
//     The owner hierarchy's authorization must be empty (the default).
//   - Identity key (ECDSA P-256, SHA-256 only), transport key (ECC P-256
//     ECDH, for HPKE DHKEM(P-256)), attestation key (AK: restricted ECDSA
//     P-256) and the sealed LMK are ordinary objects under the SRK. Their
//     blobs (TPM2B_PUBLIC || TPM2B_PRIVATE, the private part encrypted and
//     integrity-protected by the SRK) are files in the directory: useless
//     without this TPM, so safe on disk, and the reason a restart over the
//     same TPM and directory finds the same keys. The keys have no
//     authorization value: whoever can both read the directory and send
//     commands to the TPM can use them (not extract them), so the directory
//     and the TPM device belong to the sidecar's user alone.
//   - The LMK is 32 random bytes sealed in a keyed-hash object. Open unseals
//     it once; from then on it is an AES-256-GCM key in process memory
//     until Close. LocalSeal blobs therefore survive restarts.
//   - Data keys (Protect) cannot live in a TPM at operation speed: they are
//     kept AES-256-GCM-encrypted under the LMK in process memory and each
//     Open decrypts a copy. A TPM enclave protects them at rest in memory no
//     better than the software enclave does; what the TPM adds is that the
//     LMK itself, and the sidecar's private keys, are bound to this machine.
//
// Secrets that cross the TPM bus (the LMK when it is sealed and unsealed,
// the ECDH shared point) travel in HMAC sessions salted with the SRK and
// AES-CFB parameter encryption, so a bus interposer does not see them
// (except with GODEBUG=fips140=only, where Go refuses AES-CFB: then they
// cross in clear). Go cannot wipe every intermediate buffer of go-tpm's
// command marshalling; the values this package owns are wiped.
//
// The TPM holds very few transient objects at once (three in the reference
// implementation). The enclave keeps only the SRK loaded and loads each key
// for one operation (TPM2_Load, use, TPM2_FlushContext), serializing its
// commands, so it works without a resource manager and next to other users
// of /dev/tpmrm0. Each identity signature or decapsulation costs a load.
package tpm
