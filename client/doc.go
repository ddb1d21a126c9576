// Package client is the Go SDK of dcaas for custodians: the applications
// that own data keys, store their EKBs, and use the keys through a crypto
// sidecar (or, as a baseline, the KMS's central path).
//
// Start with NewKMS (mutual TLS to one or more KMS replicas, with retries
// and failover) and NewSidecarUnix or NewSidecarTLS. Each has one method
// per API call of docs/api.md. The four ways of loading keys into a sidecar
// are one call each: LoadByRewrap (the primary flow), LoadByGrant,
// LoadBySeeds and Stateless. EKBStore keeps EKBs on disk.
//
// Error answers are *Error values carrying the stable api.Code; branch on
// them with errors.Is and the sentinel of the code:
//
//	if errors.Is(err, client.ErrAlreadyUsed) { … }
//
// The package imports only the api package, internal/wire (the JSON codec
// of the hot operations, which the servers share) and the standard library.
package client

//go:generate go run gen_errors.go
