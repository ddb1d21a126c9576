package client

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/dcaas/dcaas/api"
)

// TestBulkRequestsTakeFastCodec: the SDK's rewrap, grant and load bodies
// (thousands of EKBs each) are written by internal/wire, not
// encoding/json. The two mean the same JSON; they tell apart on a string
// holding '<', which encoding/json escapes as \u003c and wire does not.
func TestBulkRequestsTakeFastCodec(t *testing.T) {
	bodies := make(chan string, 1)
	srv, _, caPEM := tlsServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- string(b)
		apiError(w, api.CodeForbidden, "no")
	})
	k := newTestKMS(t, []string{srv.URL}, caPEM)
	ctx := t.Context()
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"Rewrap", func() error { _, err := k.Rewrap(ctx, "a<b", [][]byte{{1}}); return err }},
		{"CreateGrant", func() error {
			_, err := k.CreateGrant(ctx, api.GrantRequest{InstanceID: "a<b", EKBs: [][]byte{{1}}})
			return err
		}},
		{"LoadKeys", func() error {
			_, err := k.LoadKeys(ctx, api.LoadRequest{Grant: "a<b", EKBs: [][]byte{{1}}})
			return err
		}},
	} {
		if err := c.call(); err == nil {
			t.Fatalf("%s: the server refused, want an error", c.name)
		}
		if body := <-bodies; !strings.Contains(body, `"a<b"`) {
			t.Errorf("%s sent %s: encoding/json wrote it, want internal/wire", c.name, body)
		}
	}
}
