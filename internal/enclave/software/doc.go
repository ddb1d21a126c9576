// Package software implements the "white-box" enclave: enclave.Enclave
// purely in software, for sidecars with no TPM. Start with New.
//
// # What it does
//
// Every secret (identity key, transport keys, local master key, the
// protection key of data keys) lives in a memguard.Enclave: ciphertext (XSalsa20-Poly1305)
// under a process-wide session key that memguard keeps in mlock'd pages
// flanked by guard pages. A secret is decrypted only for the one operation
// that needs it, into a fresh LockedBuffer (mlock'd, guard pages, canary,
// MADV_DONTDUMP, read-only), and that buffer is wiped and unmapped as soon
// as the operation returns. Protected data keys are AES-256-GCM
// ciphertexts under the protection key (protect.go): a batch is sealed
// with one open of it, not one memguard.Enclave per key. New also hardens the process once: core dumps
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
//   - Each open of a secret maps two regions (the LockedBuffer and a view
//     of the session key), each one mlock'd page between two guard pages,
//     and unmaps them after: 19 system calls (2 mmap, 2 madvise, 2 mlock,
//     9 mprotect, 2 munlock, 2 munmap), about 80µs on a small VM. Every
//     Sign, ECDH, Decapsulate, Protected.Open, LocalSeal and LocalOpen
//     pays it once (a hybrid decapsulation twice). See the benchmarks.
//   - mlock is bounded by RLIMIT_MEMLOCK unless the process has
//     CAP_IPC_LOCK (root has it; the limit does not apply). memguard keeps
//     three pages locked for the session key and two more per open. When
//     mlock fails memguard panics, and if it fails while viewing the
//     session key it deadlocks instead (the panic path re-takes the lock
//     it holds). So New raises the soft limit to the hard one, refuses to
//     start below six pages (24 KiB with 4 KiB pages), and the package
//     lets only as many memguard operations run at once as the limit
//     holds (up to 256): a small limit (64 KiB on old kernels, 8 MiB by
//     default since Linux 5.16) throttles rather than crashes.
//   - memguard.Purge (also run by memguard.SafePanic, SafeExit and a
//     memguard signal handler) destroys every LockedBuffer in the process
//     and replaces the session key: every memguard.Enclave made before it
//     can never be opened again. This package then reports ErrPurged: the
//     identity and transport keys are gone and the sidecar must restart
//     and re-enroll. A failed open leaks two locked pages (until the next
//     purge), so after the first one the package stops asking. Purging
//     while an operation is in flight unmaps its buffer under it and
//     crashes the process: purge only after Close. This package never
//     purges and does not install memguard.CatchInterrupt (the sidecar
//     handles signals itself).
//   - memguard.Enclave has no Destroy: Close and Protected.Destroy drop
//     the ciphertext and refuse further use, but the ciphertext itself
//     stays in the heap, still sealed under the session key, until it is
//     collected. It becomes unrecoverable when the session key is purged
//     or the process exits.
//   - Importing memguard disables core dumps (its init) and starts a
//     goroutine that re-splits the session key every 500ms (the key itself
//     stays the same until a purge).
package software
