// Package spec holds the conformance tests of the REST API's machine-readable
// spec, api/openapi.yaml, and of the documentation: the routes the KMS and the
// sidecar register must be exactly the paths the spec lists for each server,
// every $ref must resolve, and components/schemas must mirror the wire types
// of package api (spec_test.go); docs/api.md must describe exactly the routes,
// schemas and fields of the spec and every error code of api/errors.go, every
// relative link of the repository's Markdown must resolve, and nothing may
// point at documents outside the repository (docs_test.go). It has no
// non-test code.
package spec
