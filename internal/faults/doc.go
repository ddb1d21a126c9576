// Package faults holds dcaas's fault and load tests (issue 7, "Faults
// under load"). It has no product code: everything is in its _test files,
// which run a real KMS (internal/kms/kmstest) and real sidecars on Unix
// sockets and break things under them while load runs.
//
//   - sidecar_load_test.go: closed-loop clients encrypt and decrypt over a
//     sidecar's socket while the KMS stops and comes back; not one
//     operation on a loaded key may fail, and the sidecar's status must
//     report the KMS unreachable and then reachable again.
//   - disk_test.go: the KMS data dir on a small tmpfs (root only: the
//     tests skip, saying why, where mount(2) is not permitted). Filled to
//     the last byte, every write answers 503 "unavailable" with a message
//     naming the database; once space returns writes work again, the
//     audit chain verifies and keys made before still rewrap. A data dir
//     that is read-only refuses to start, and a KMS over a read-only store
//     answers writes with 503.
//   - memory_test.go: the memory a sidecar needs per loaded key, measured
//     on 100,000 keys in a keyring over a software enclave and, end to
//     end, on fewer keys loaded through a real KMS and sidecar; eviction
//     must give it back. The figures and how to reproduce them are in
//     docs/memory.md.
//
// The kill -9 test of the KMS under a mixed load runs the real binary and
// lives with the other binary tests in cmd/dcaas (faults_e2e_test.go).
//
// Every test is bounded: waits have deadlines, load runs for a fixed time,
// and processes, sockets and mounts are cleaned up by t.Cleanup. Run them
// with
//
//	go test -race -count=1 -run 'Fault|Memory|Load' ./cmd/dcaas/ ./internal/faults
package faults
