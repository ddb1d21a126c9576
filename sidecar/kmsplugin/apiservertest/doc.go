// Package apiservertest tests the dcaas KMS v2 plugin with the Kubernetes
// API server's own client side: k8s.io/apiserver's KMS v2 gRPC envelope
// service and envelope transformer, the code that encrypts Secrets before
// they reach etcd. It holds tests only.
package apiservertest
