package client

import (
	"context"
	"net/http"
)

// Do sends one request to the KMS for an endpoint this SDK has no method
// for (a newer server's, or one an operator's script calls by path): in
// is encoded as JSON (nil: no body; a json.RawMessage is sent as it is)
// and a 200 answer is decoded into out (nil: discard; *[]byte: the raw
// body). An error answer is an *Error. GET requests are retried as reads;
// every other method as a change of state (see KMS). WithApproval on ctx
// sends an approval id.
func (k *KMS) Do(ctx context.Context, method, path string, in, out any) error {
	return k.t.do(ctx, classOf(method), method, path, in, out)
}

// Do is KMS.Do against the sidecar.
func (s *Sidecar) Do(ctx context.Context, method, path string, in, out any) error {
	return s.t.do(ctx, classOf(method), method, path, in, out)
}

// classOf is how a request the SDK knows only by its method is retried.
func classOf(method string) retryClass {
	if method == http.MethodGet || method == http.MethodHead {
		return idempotent
	}
	return once
}
