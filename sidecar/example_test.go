package sidecar_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/datadir"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/sidecar"
)

// Example embeds a sidecar in the custodian's own process ("library mode")
// and runs the primary flow end to end: a pipeline mints an enrollment
// token, the sidecar enrolls with it, the custodian creates a data key and
// has the KMS rewrap it to the sidecar, and the sidecar then encrypts and
// decrypts in-process, also after the KMS has gone away.
func Example() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "dcaas-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	quiet := slog.New(slog.DiscardHandler)

	// A KMS (in production: `dcaas kms serve`), and its administrator.
	kmsDir := filepath.Join(tmp, "kms")
	kmsURL, stopKMS := startKMS(ctx, kmsDir, quiet)
	caPEM := readFile(kmsDir, kms.CAFile)
	admin := kmsClient(kmsURL, caPEM, readFile(kmsDir, kms.AdminCert), readFile(kmsDir, kms.AdminKey))

	// Tenant acme, its custodian app (owns keys) and its deployment pipeline.
	must(admin.CreateTenant(ctx, "acme"))
	custodian := must(admin.CreateApp(ctx, "acme", api.CreateAppRequest{Name: "payments-api", Role: api.RoleCustodian}))
	pipeline := must(admin.CreateApp(ctx, "acme", api.CreateAppRequest{Name: "deployer", Role: api.RolePipeline}))
	cust := kmsClient(kmsURL, caPEM, []byte(custodian.CertPEM), []byte(custodian.KeyPEM))
	pipe := kmsClient(kmsURL, caPEM, []byte(pipeline.CertPEM), []byte(pipeline.KeyPEM))

	// The pipeline mints a one-time enrollment token ("secret zero") for the
	// custodian and hands it to the process it deploys.
	token := must(pipe.CreateEnrollmentToken(ctx, api.CreateTokenRequest{CustodianDN: custodian.DN}))

	// The custodian's process starts its in-process sidecar, which enrolls.
	sc, err := sidecar.New(ctx, sidecar.Config{
		KMSURL:      kmsURL,
		CAPEM:       caPEM,
		DataDir:     filepath.Join(tmp, "sidecar"),
		EnrollToken: sidecar.Secret([]byte(token.Token)),
		Logger:      quiet,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer sc.Close()
	fmt.Println("enrolled for", sc.CustodianDN())

	// The custodian creates a data key (it keeps only the EKB) and has the
	// KMS rewrap it to the sidecar's wrapping certificate; only the
	// sidecar's enclave can open the result.
	dk := must(cust.CreateDataKey(ctx, api.CreateDataKeyRequest{Type: api.KeyAES256GCM}))
	wrapped := must(cust.Rewrap(ctx, sc.WrappingCertificatePEM(), [][]byte{dk.EKB}))
	if _, err := sc.ImportKeys(ctx, wrapped); err != nil {
		log.Fatal(err)
	}
	fmt.Println("loaded", len(sc.Keys()), "key")

	// Operations are Go calls now: no network.
	aad := []byte("order-42")
	ciphertext, err := sc.Encrypt(ctx, dk.KeyID, []byte("hello"), aad)
	if err != nil {
		log.Fatal(err)
	}
	plaintext, err := sc.Decrypt(ctx, ciphertext, aad)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("decrypted: %s\n", plaintext)

	// Loaded keys keep working while the KMS is down.
	stopKMS()
	plaintext, err = sc.Decrypt(ctx, ciphertext, aad)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("KMS down, decrypted: %s\n", plaintext)

	// Output:
	// enrolled for CN=payments-api,O=acme
	// loaded 1 key
	// decrypted: hello
	// KMS down, decrypted: hello
}

// startKMS opens (initializing) a KMS data dir and serves it over TLS on a
// loopback port. It returns the KMS URL and a function that stops it.
func startKMS(ctx context.Context, dir string, logger *slog.Logger) (url string, stop func()) {
	srv, err := datadir.Open(ctx, kms.Options{DataDir: dir, ServerHosts: []string{"127.0.0.1"}, Logger: logger})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	hs := &http.Server{Handler: srv.KMS.Handler(), ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(tls.NewListener(ln, srv.TLSConfig))
	}()
	return "https://" + ln.Addr().String(), func() {
		_ = hs.Close()
		<-done
		_ = srv.Close()
	}
}

// kmsClient is an SDK client of the KMS that authenticates with a client
// certificate and trusts the KMS CA.
func kmsClient(url string, caPEM, certPEM, keyPEM []byte) *client.KMS {
	return must(client.NewKMS([]string{url}, caPEM, certPEM, keyPEM))
}

// must returns v, or ends the example on err.
func must[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}

func readFile(dir, name string) []byte {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		log.Fatal(err)
	}
	return b
}
