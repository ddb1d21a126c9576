package client

import (
	"context"
	"fmt"
	"net/http"
	"strings"
)

// Do sends one request to the KMS for an endpoint this SDK has no method
// for (a newer server's, or one an operator's script calls by path): in
// is encoded as JSON (nil: no body; a json.RawMessage is sent as it is)
// and a 200 answer is decoded into out (nil: discard; *[]byte: the raw
// body). An error answer is an *Error. GET requests are retried as reads;
// every other method as a change of state (see KMS). WithApproval on ctx
// sends an approval id. path must start with "/" (it is appended to the
// base URL: anything else could name another host). A pointer to one of
// the api request types the typed methods send (*api.EncryptRequest,
// *api.BatchRequest, *api.RewrapRequest, …) takes the SDK's hand-written
// encoder, as those methods do; a struct value takes encoding/json, which
// is slower for large batches.
func (k *KMS) Do(ctx context.Context, method, path string, in, out any) error {
	if err := checkPath(path); err != nil {
		return err
	}
	return k.t.do(ctx, classOf(method), method, path, in, out)
}

// Do is KMS.Do against the sidecar.
func (s *Sidecar) Do(ctx context.Context, method, path string, in, out any) error {
	if err := checkPath(path); err != nil {
		return err
	}
	return s.t.do(ctx, classOf(method), method, path, in, out)
}

// checkPath refuses a path that would not stay below the base URL once
// appended to it ("@host/…", "x.example/…", "//host").
func checkPath(path string) error {
	if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") {
		return fmt.Errorf("client: path %q: want an absolute path such as /v1/status", path)
	}
	return nil
}

// classOf is how a request the SDK knows only by its method is retried.
func classOf(method string) retryClass {
	if method == http.MethodGet || method == http.MethodHead {
		return idempotent
	}
	return once
}
