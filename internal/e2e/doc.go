// Package e2e is the one end-to-end fixture of dcaas's tests: real
// `dcaas` processes on loopback, real HTTPS with the certificates the KMS
// issues, real Unix sockets, real PostgreSQL, and HAProxy in front of KMS
// replicas. It is test-support code: only _test.go files may import it
// (TestOnlyTestsImportE2E enforces that), and nothing in it runs outside
// `go test`.
//
// A package that uses it runs its tests through Main, which removes the
// binaries it built and stops the PostgreSQL cluster of
// internal/store/pgtest:
//
//	func TestMain(m *testing.M) { e2e.Main(m) }
//
// Where to start:
//
//   - Binary builds `dcaas` once per test process (with -race when the
//     test binary has it, so a data race in a child fails the test).
//   - StartKMS runs `dcaas kms serve` on a SQLite data dir or, with
//     KMSConfig.PostgresDSN, on PostgreSQL; StartReplicas runs several on
//     one database with a shared root key. A KMS can be stopped (SIGTERM,
//     exit 0 checked), killed with SIGKILL and restarted on the same data
//     dir and address. Readiness is its ready line, then GET /healthz
//     answering "ok".
//   - StartHAProxy puts HAProxy in TCP mode in front of replicas: TLS
//     passes through, so mutual TLS still identifies every caller.
//   - NewTenant makes a tenant with a custodian and a pipeline; Token,
//     DataKeys and StartSidecar (a `dcaas sidecar serve` process enrolled
//     with a token from the environment) do the rest, one call each. A
//     sidecar may also start without a token (SidecarConfig.Waiting) or be
//     restarted (it then waits): EnrollSidecar enrolls it with `dcaas
//     sidecar enroll` as the custodian, the way an operator or an enroll
//     agent does.
//   - ServeSidecar runs a sidecar inside the test process instead, for
//     tests that need the library's Config (a settable clock, an enclave
//     of their own); ServeMutualTLS serves such a sidecar on its mutual-TLS
//     listener too. EnrolledSidecar makes one with default settings that
//     is not served, LoadKeys loads keys into it, and StartPluginWorld and
//     ServePlugin are the KMS v2 plugin tests' fixture.
//   - CutProxy stands between a client and a server (a KMS, PostgreSQL)
//     to cut the network between them and restore it.
//   - Every HTTP call goes through the public SDK (package client):
//     Endpoint.Client, Endpoint.Admin and Sidecar.Client return SDK
//     clients.
//
// Every process is killed when its test ends; its stderr goes to a file
// that is printed when the test failed, and a data race it reported fails
// the test.
package e2e
