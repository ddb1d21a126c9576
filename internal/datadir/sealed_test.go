package datadir_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/datadir"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// TestSealedConcurrentUnseal posts all five shares of a 3-of-5 split at
// once, from five goroutines, over real TLS: exactly one post opens the
// KMS, the others are counted before it or answered "unsealed" after it,
// and the unseal is audited once.
func TestSealedConcurrentUnseal(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "kms")
	set, shares, err := datadir.Init(ctx, kms.Options{DataDir: dir, Logger: quiet(), ServerHosts: []string{"127.0.0.1"}}, 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(shares) != 5 || set.Threshold != 3 {
		t.Fatalf("Init: %d shares, %+v", len(shares), set)
	}
	// Init refuses a data dir that has a root key, changing nothing.
	if _, _, err := datadir.Init(ctx, kms.Options{DataDir: dir, Logger: quiet()}, 5, 3); err == nil {
		t.Fatal("Init over an initialized data dir succeeded")
	}
	g, err := datadir.OpenSealed(ctx, kms.Options{DataDir: dir, Logger: quiet(), Reg: prometheus.NewRegistry(), ServerHosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: g.Handler()}
	go hs.Serve(tls.NewListener(ln, g.TLSConfig()))
	defer hs.Close()

	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pair, err := tls.X509KeyPair(read(kms.AdminCert), read(kms.AdminKey))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(read(kms.CAFile))
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}}}
	url := "https://" + ln.Addr().String()
	post := func(share []byte) (int, api.SealStatus) {
		body, _ := json.Marshal(api.UnsealRequest{Share: string(share)})
		resp, err := c.Post(url+"/v1/sys/unseal", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Error(err)
			return 0, api.SealStatus{}
		}
		defer resp.Body.Close()
		var st api.SealStatus
		_ = json.NewDecoder(resp.Body).Decode(&st)
		return resp.StatusCode, st
	}
	resp, err := c.Get(url + "/v1/instances")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a data route while sealed: %d", resp.StatusCode)
	}

	var wg sync.WaitGroup
	codes := make([]int, len(shares))
	states := make([]api.SealStatus, len(shares))
	for i, sh := range shares {
		wg.Go(func() { codes[i], states[i] = post(sh) })
	}
	wg.Wait()
	sealedAnswers := 0
	for i := range shares {
		if codes[i] != http.StatusOK {
			t.Fatalf("share %d: HTTP %d", i+1, codes[i])
		}
		if states[i].Sealed {
			sealedAnswers++
		}
	}
	if sealedAnswers != 2 {
		t.Fatalf("%d posts answered still sealed, want 2 (the third opens it): %+v", sealedAnswers, states)
	}
	select {
	case <-g.Unsealed():
	default:
		t.Fatal("not unsealed after five shares")
	}
	srv := g.Server()
	kmstest.WantAuditRecords(t, srv.Store, kms.ActionUnseal, 1)
	resp, err = c.Get(url + "/v1/instances")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a data route once unsealed: %d", resp.StatusCode)
	}
}
