package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestConsoleCommand runs `dcaas console` against a real KMS: the first
// line of standard output is the one-time login URL, on loopback, and it
// starts a session once.
func TestConsoleCommand(t *testing.T) {
	k := startCLIKMS(t, nil)
	k.env.Tenant(t, "acme")
	conn := k.admin

	ctx, cancel := context.WithCancel(t.Context())
	root := newRoot()
	pr, pw := io.Pipe()
	root.SetArgs(append([]string{"console", "--listen", "127.0.0.1:0", "--log-level", "error"}, conn...))
	root.SetOut(pw)
	root.SetErr(io.Discard)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx); pw.Close() }()
	defer func() {
		cancel()
		go func() { _, _ = io.Copy(io.Discard, pr) }() // drain whatever else it prints
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("dcaas console after cancel = %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("dcaas console did not stop")
		}
	}()
	first, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the first line: %v", err)
	}
	loginURL := strings.TrimSpace(first)
	if !strings.HasPrefix(loginURL, "http://127.0.0.1:") || !strings.Contains(loginURL, "/login?token=") {
		t.Fatalf("first line = %q, want the login URL on loopback", first)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for i, want := range []int{http.StatusSeeOther, http.StatusUnauthorized} {
		resp, err := noRedirect.Get(loginURL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("opening the login URL, time %d = %d, want %d", i+1, resp.StatusCode, want)
		}
	}
}

func TestConsoleRefusesPlainHTTPOffLoopback(t *testing.T) {
	k := startCLIKMS(t, nil)
	_, _, err := cliRun(t, nil, with(k.admin, "console", "--listen", "0.0.0.0:0")...)
	if err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Fatalf("dcaas console --listen 0.0.0.0:0 without TLS = %v, want a refusal naming --tls-cert", err)
	}
}
