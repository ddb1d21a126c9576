package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/wire"
)

// maxResponse bounds how much of a response a client reads.
const maxResponse = 256 << 20

// Client is a minimal JSON client of a dcaas API (KMS or sidecar). The
// HTTP client carries the transport: TLS with a client certificate, or a
// Unix socket dialer.
type Client struct {
	HTTP *http.Client
	Base string // e.g. "https://kms:8443" or "http://sidecar" for a socket
}

// Do sends in as JSON (nil: no body) and decodes a 200 answer into out
// (nil: discard). Any other answer is returned as *api.Error with Status
// set; transport failures are returned as they are.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if b, ok := wire.Append(nil, in); ok {
		body = bytes.NewReader(b)
	} else if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var eb api.ErrorBody
		if err := json.Unmarshal(data, &eb); err != nil || eb.Error == nil {
			return &api.Error{Code: api.CodeUnavailable, Status: resp.StatusCode,
				Message: fmt.Sprintf("%s %s answered %d without an API error body.", method, path, resp.StatusCode)}
		}
		eb.Error.Status = resp.StatusCode
		return eb.Error
	}
	if wire.Decode(data, out) {
		return nil
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
		}
	}
	return nil
}
