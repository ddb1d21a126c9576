// Package failover holds dcaas's replica failover test (issue 5): two
// `dcaas kms serve` processes on one PostgreSQL database, a custodian SDK
// client (package client) configured with both URLs, and a SIGKILL of the
// replica the client prefers in the middle of a stream of data-key and
// grant requests. The test checks that every request either succeeded
// exactly once or failed with an error the client surfaced by its
// documented retry rules, and that no acknowledged key or grant is lost or
// duplicated.
//
// TestFailoverThroughHAProxy is the same story with a load balancer and a
// real sidecar: two replicas behind HAProxy (TCP mode, TLS passing
// through), a `dcaas sidecar serve` process pointed at HAProxy, a stream of
// key loads by the grant flow and by rewrap through the SDK, and a SIGKILL
// of the replica the sidecar talks to (restarted later). Every
// acknowledged load must be in the sidecar once and work, no load may need
// more than one retry, and a key disabled after the kill must be evicted
// within a couple of revocation polls.
//
// The package has no non-test code. Its processes come from the e2e
// fixture (internal/e2e), which builds the dcaas binary (with -race when
// the test binary has it), and its database from internal/store/pgtest,
// which starts a throwaway PostgreSQL cluster when none is configured.
// Run it with:
//
//	go test -race ./internal/failover
package failover
