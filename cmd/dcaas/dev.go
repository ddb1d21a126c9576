package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/devenv"
)

func newDevCmd() *cobra.Command {
	var dataDir, listen string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a KMS and one sidecar on loopback, ready to call, until Ctrl-C",
		Long: `Run a complete dcaas on embedded defaults: a KMS, tenant "demo" with the
custodian "demo-app", and a sidecar (software enclave) enrolled for it and
serving on a Unix socket, with one AES-256-GCM key loaded. It prints how to
call it. Data lives in a temporary directory unless --data-dir is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), cmd.OutOrStdout(), dataDir, listen)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "keep the data here (default: a temporary directory, removed on exit)")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8443", "KMS listen address")
	return cmd
}

func runDev(ctx context.Context, out io.Writer, dataDir, listen string) error {
	env, err := devenv.Start(ctx, devenv.Options{DataDir: dataDir, Listen: listen})
	if err != nil {
		return err
	}
	defer env.Close()
	keys, err := env.NewKeys(ctx, api.KeyAES256GCM, 1, false)
	if err != nil {
		return err
	}
	if err := env.LoadByRewrap(ctx, [][]byte{keys[0].EKB}); err != nil {
		return err
	}
	key := keys[0].KeyID
	pt := base64.StdEncoding.EncodeToString([]byte("hello, dcaas"))
	curl := fmt.Sprintf("curl -sS --unix-socket %s http://sidecar", env.Socket)
	fmt.Fprintf(out, `dcaas dev ready.

  KMS            %s   (CA %s)
  custodian      %s
                 cert %s
                 key  %s
  sidecar        socket %s   instance %s
  loaded key     %s (aes-256-gcm)

Try it:

  # encrypt
  %s/v1/crypto/encrypt -d '{"key_id":"%s","plaintext":"%s"}'
  # encrypt, then decrypt what came back
  %s/v1/crypto/encrypt -d '{"key_id":"%s","plaintext":"%s"}' | jq -c '{ciphertext}' | %s/v1/crypto/decrypt -d @- | jq -r .plaintext | base64 -d
  # status
  %s/v1/status

  # the KMS, as the custodian:
  curl -sS --cacert %s --cert %s --key %s %s/v1/datakeys -d '{"type":"aes-256-gcm"}'

Ctrl-C stops everything.
`, env.KMSURL, env.CAFile, env.CustodianDN, env.CustodianCert, env.CustodianKey, env.Socket, env.Sidecar.InstanceID(), key,
		curl, key, pt, curl, key, pt, curl, curl, env.CAFile, env.CustodianCert, env.CustodianKey, env.KMSURL)
	if f, ok := out.(*os.File); ok {
		_ = f.Sync()
	}
	<-ctx.Done()
	return nil
}
