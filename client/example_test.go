package client_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
)

// A custodian keeps its EKBs in an EKBStore: one file per key version.
func ExampleEKBStore() {
	dir, err := os.MkdirTemp("", "ekbs")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store := client.EKBStore{Dir: dir}

	// In real use the EKBs come from KMS.CreateDataKey and NewKeyVersion.
	_ = store.Put("key_payments", 1, []byte("ekb of version 1"))
	_ = store.Put("key_payments", 2, []byte("ekb of version 2"))
	_ = store.Put("key_reports", 1, []byte("another key"))

	v, ekb, err := store.Latest("key_payments")
	fmt.Println(v, string(ekb), err)
	all, _ := store.List()
	fmt.Println(all)
	err = store.Put("../../etc/passwd", 1, []byte("x"))
	fmt.Println(errors.Is(err, client.ErrBadKeyID))
	// Output:
	// 2 ekb of version 2 <nil>
	// [{key_payments 1} {key_payments 2} {key_reports 1}]
	// true
}

// Error answers carry a stable code; branch on it with errors.Is.
func ExampleError() {
	// A stand-in KMS that refuses every call as a used grant would be.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusConflict)
		json.NewEncoder(w).Encode(api.ErrorBody{Error: &api.Error{Code: api.CodeAlreadyUsed, Message: "The grant was used before."}})
	}))
	defer srv.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	kms, err := client.NewKMS([]string{srv.URL}, caPEM, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	_, err = kms.CreateGrant(context.Background(), api.GrantRequest{InstanceID: "inst_1", KeyIDs: []string{"key_1"}})
	fmt.Println(errors.Is(err, client.ErrAlreadyUsed), errors.Is(err, client.ErrExpired))
	var e *client.Error
	if errors.As(err, &e) {
		fmt.Println(e.Status, e.Code)
	}
	// Output:
	// true false
	// 409 already_used
}

// The primary flow: create a key, keep its EKB, load it into the sidecar
// by rewrap, and use it locally.
func ExampleLoadByRewrap() {
	ctx := context.Background()
	read := func(name string) []byte {
		b, err := os.ReadFile(name)
		if err != nil {
			log.Fatal(err)
		}
		return b
	}
	// Two KMS replicas; the custodian's certificate from `dcaas app create`.
	kms, err := client.NewKMS([]string{"https://kms-a:8443", "https://kms-b:8443"},
		read("ca.pem"), read("payments-api-cert.pem"), read("payments-api-key.pem"))
	if err != nil {
		log.Fatal(err)
	}
	sc, err := client.NewSidecarUnix("/run/dcaas/sidecar.sock")
	if err != nil {
		log.Fatal(err)
	}
	store := client.EKBStore{Dir: "/var/lib/payments/ekbs"}

	dk, err := kms.CreateDataKey(ctx, api.CreateDataKeyRequest{Type: api.KeyAES256GCM, Purpose: "card data"})
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Put(dk.KeyID, dk.Version, dk.EKB); err != nil {
		log.Fatal(err)
	}

	ids, err := client.LoadByRewrap(ctx, kms, sc, [][]byte{dk.EKB},
		client.WithProgress(func(done, total int) { log.Printf("%d/%d keys loaded", done, total) }))
	if err != nil {
		log.Fatal(err)
	}
	ct, err := sc.Encrypt(ctx, api.KeyRef{KeyID: ids[0]}, []byte("4111 1111 1111 1111"), []byte("order-42"))
	if err != nil {
		log.Fatal(err)
	}
	pt, err := sc.Decrypt(ctx, api.KeyRef{}, ct.Ciphertext, []byte("order-42"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", pt)
}

// The stateless mode: the sidecar seals a loaded key and forgets it; every
// operation then carries the sealed blob.
func ExampleStateless() {
	ctx := context.Background()
	sc, err := client.NewSidecarUnix("/run/dcaas/sidecar.sock")
	if err != nil {
		log.Fatal(err)
	}
	sealed, err := client.Stateless(ctx, sc, []string{"key_payments"})
	if err != nil {
		log.Fatal(err) // keep whatever came back with the error: those keys left the sidecar
	}
	ct, err := sc.Encrypt(ctx, api.KeyRef{SealedKey: sealed[0].SealedKey}, []byte("secret"), nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(ct.Ciphertext) > 0)
}

// A sidecar's mutual-TLS listener is reached with the custodian's
// certificate and the instance's TLS server name.
func ExampleNewSidecarTLS() {
	caPEM, certPEM, keyPEM := []byte("…"), []byte("…"), []byte("…")
	sc, err := client.NewSidecarTLS("https://127.0.0.1:9443", caPEM, certPEM, keyPEM, "inst-abc.sidecar.dcaas.internal")
	if err != nil {
		log.Fatal(err)
	}
	st, err := sc.Status(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.InstanceID, st.KeysLoaded)
}

// An application renews its client certificate well before it expires,
// keeps the new key with mode 0600, takes the trust bundle (two CAs during
// a CA rotation) and revokes the old certificate with the new one.
func ExampleKMS_RenewCertificate() {
	ctx := context.Background()
	read := func(name string) []byte {
		b, err := os.ReadFile(name)
		if err != nil {
			log.Fatal(err)
		}
		return b
	}
	kms, err := client.NewKMS([]string{"https://kms-a:8443"}, read("ca.pem"), read("payments-api-cert.pem"), read("payments-api-key.pem"))
	if err != nil {
		log.Fatal(err)
	}
	creds, err := kms.RenewCertificate(ctx, "") // "": the KMS makes the key pair
	if err != nil {
		log.Fatal(err)
	}
	// Replace each file atomically in real code (write a temporary file,
	// sync, rename); `dcaas app cert renew` does.
	for _, f := range []struct {
		name string
		data string
		mode os.FileMode
	}{{"payments-api-key.pem", creds.KeyPEM, 0o600}, {"payments-api-cert.pem", creds.CertPEM, 0o644}, {"ca.pem", creds.CAPEM, 0o644}} {
		if err := os.WriteFile(f.name, []byte(f.data), f.mode); err != nil {
			log.Fatal(err)
		}
	}
	old, err := kms.Certificates(ctx, "", "")
	if err != nil {
		log.Fatal(err)
	}
	renewed, err := client.NewKMS([]string{"https://kms-a:8443"}, []byte(creds.CAPEM), []byte(creds.CertPEM), []byte(creds.KeyPEM))
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range old {
		if c.Serial != creds.Serial && !c.Revoked {
			if _, err := renewed.RevokeCertificates(ctx, "", "", api.RevokeCertificatesRequest{Serial: c.Serial}); err != nil {
				log.Fatal(err)
			}
		}
	}
	fmt.Println("renewed until", creds.NotAfter)
}
