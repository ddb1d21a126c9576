// Package archtest holds one test, and nothing else: TestArchitecture,
// which turns the layering the code promises into a check (as Go's own
// crypto/internal/fips140deps test does for the FIPS module). Its rules
// table says who may import what, each rule and each exception with its
// reason: cryptographic primitives only in internal/crypto and the
// enclaves, concrete stores and seals only where the process is wired,
// the SDK and the bottom layer free of the rest of the module.
//
// Run it with go test ./internal/archtest (it runs go list).
package archtest
