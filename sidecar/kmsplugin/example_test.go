package kmsplugin_test

import (
	"context"
	"log"

	"github.com/dcaas/dcaas/sidecar"
	"github.com/dcaas/dcaas/sidecar/kmsplugin"
)

// Serve a loaded key of a sidecar to the Kubernetes API server, which runs
// as root on a kubeadm control plane. The API server's
// EncryptionConfiguration names the socket as its KMS v2 endpoint
// (deploy/kubernetes/kms-plugin/encryption-config.yaml).
func Example() {
	ctx := context.Background()
	var sc *sidecar.Sidecar // enrolled, with the key loaded (sidecar.New, ImportKeys)
	if sc == nil {
		return // this example has no KMS to enroll with
	}
	p, err := kmsplugin.New(sc, kmsplugin.Config{KeyID: "key_…", AllowUIDs: []int{0}})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := kmsplugin.Listen("/var/run/dcaas-kms/kms-plugin.sock")
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(p.Serve(ctx, ln)) // until ctx ends
}
