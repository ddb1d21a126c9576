package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
)

// TestWriteExit: a failure prints as text, or with --json as the API's
// error object, carrying the code of an answer the KMS gave.
func TestWriteExit(t *testing.T) {
	answer := fmt.Errorf("creating the key: %w", &client.Error{Code: api.CodeForbidden, Message: "The policy does not name you.", Status: 403})
	for _, c := range []struct {
		name     string
		args     []string
		err      error
		code     int
		text     string   // the whole output in text form
		jsonCode api.Code // with --json
	}{
		{"success", []string{"key", "create", "--json"}, nil, 0, "", ""},
		{"text", []string{"key", "create"}, errors.New("--tenant is required"), 1, "dcaas: --tenant is required\n", ""},
		{"json, local error", []string{"key", "create", "--json"}, errors.New("unknown flag: --bogus"), 1, "", ""},
		{"json, an answer", []string{"--json=true", "key", "create"}, answer, 1, "", api.CodeForbidden},
		{"--json after --", []string{"encrypt", "--", "--json"}, answer, 1, "dcaas: " + answer.Error() + "\n", ""},
		{"already logged", []string{"kms", "serve"}, reportedError{errors.New("x")}, 1, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			if got := writeExit(&out, c.args, c.err); got != c.code {
				t.Errorf("exit code %d, want %d", got, c.code)
			}
			if c.err == nil || !jsonRequested(c.args) {
				if out.String() != c.text {
					t.Errorf("printed %q, want %q", out.String(), c.text)
				}
				return
			}
			var body struct {
				Error struct {
					Code    api.Code `json:"code"`
					Message string   `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(out.Bytes(), &body); err != nil {
				t.Fatalf("printed %q: %v", out.String(), err)
			}
			if body.Error.Code != c.jsonCode || body.Error.Message != c.err.Error() {
				t.Errorf("printed %+v, want code %q and message %q", body.Error, c.jsonCode, c.err.Error())
			}
		})
	}
}
