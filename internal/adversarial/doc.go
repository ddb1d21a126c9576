// Package adversarial holds dcaas's black-box adversarial suite (issue 7):
// tests that drive a real KMS (internal/kms/kmstest) and real sidecars
// (package sidecar, on Unix sockets and mutual TLS) through their REST
// APIs the way an attacker would, and check that each attack is refused
// with the documented status and error code and leaves nothing behind.
//
// The package has no non-test code. Each test names the actor and the
// attack of docs/threat-model.md it covers; attacks that other packages'
// end-to-end tests already prove (internal/kms, sidecar) are listed in the
// threat model with those tests instead of being repeated here.
//
// Run it with:
//
//	go test -race ./internal/adversarial
//
// The wrong-uid test re-executes the test binary as uid 65534 (nobody)
// and needs root; it skips otherwise.
package adversarial
