// Package software implements the "white-box" enclave: enclave.Enclave
// purely in software, for sidecars with no TPM. Start with New.
//
// # What it does
//
// Every secret (identity key, transport keys, local master key, protected
// data keys) lives in a memguard.Enclave: ciphertext (XSalsa20-Poly1305)
// under a process-wide session key that memguard keeps in mlock'd pages
// flanked by guard pages. A secret is decrypted only for the one operation
// that needs it, into a fresh LockedBuffer (mlock'd, guard pages, canary,
// MADV_DONTDUMP, read-only), and that buffer is wiped and unmapped as soon
// as the operation returns. New also hardens the process once: core dumps
// off (RLIMIT_CORE 0, soft and hard) and PR_SET_DUMPABLE 0, so processes
// of the same uid cannot ptrace it or read /proc/<pid>/mem (nor can a
// debugger attach: that is the point).
//
// # What it cannot do
//
// Go's crypto packages copy key material into their own heap values
// (ecdsa.PrivateKey, the AES key schedule, ML-KEM's expanded key, ECDH
// shared secrets) and offer no way to wipe them; those copies live until
// the garbage collector reuses their memory. The enclave keeps that window
// to one operation. A reader of the whole process memory (root, or
// CAP_SYS_PTRACE) can read the session key and so everything; this enclave
// protects against leaks (swap, core dumps, stray logging, heap reads of
// idle memory), not against such a reader. Use the TPM enclave where that
// matters.
//
// The local master key is random per process: LocalSeal blobs do not
// survive a restart.
//
// # memguard behaviours worth knowing
//
//   - Each open of a secret costs two mmap'd regions (the LockedBuffer and
//     a view of the session key), each an mlock'd page between two guard
//     pages: roughly a dozen system calls. See BenchmarkOpen.
//   - mlock is bounded by RLIMIT_MEMLOCK unless the process has
//     CAP_IPC_LOCK (root does). When mlock fails memguard panics (after a
//     purge). New raises the soft limit to the hard one, and the package
//     bounds how many secrets are open at once by what the limit allows, so
//     a small limit (64 KiB on old kernels) throttles rather than crashes.
//   - memguard.Purge (also run by memguard.SafePanic, SafeExit and a
//     memguard signal handler) destroys every LockedBuffer in the process
//     and replaces the session key: every memguard.Enclave made before it
//     can never be opened again. This package then reports ErrPurged: the
//     identity and transport keys are gone and the sidecar must re-enroll.
//     Purging while an operation is in flight unmaps its buffer under it
//     and crashes the process, so purge only after Close. This package
//     never purges, and does not install memguard.CatchInterrupt (the
//     sidecar handles signals itself).
//   - memguard.Enclave has no Destroy: Close and Protected.Destroy drop
//     the ciphertext and refuse further use, but the ciphertext itself
//     stays in the heap, still sealed under the session key, until it is
//     collected. It becomes unrecoverable when the session key is purged
//     or the process exits.
//   - Importing memguard disables core dumps (its init) and starts a
//     goroutine that re-splits the session key every 500ms.
package software
