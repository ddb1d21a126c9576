// Package spec holds the conformance test of the REST API's machine-readable
// spec, api/openapi.yaml: the routes the KMS and the sidecar register must be
// exactly the paths the spec lists for each server, every $ref must resolve,
// and components/schemas must mirror the wire types of package api. It has
// no non-test code.
package spec
