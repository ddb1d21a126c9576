package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/api"
)

// newCryptoCmd builds `dcaas encrypt` or `dcaas decrypt`.
func newCryptoCmd(op string) *cobra.Command {
	var keyID, aad, in, ekbFile, sealedFile string
	var central bool
	cmd := &cobra.Command{
		Use:  op,
		Args: cobra.NoArgs,
	}
	c := connFlags(cmd)
	if op == "encrypt" {
		cmd.Short = "Encrypt a file or stdin to stdout with a data key"
		cmd.Long = `Encrypt --in (default stdin) to stdout under --key-id, with --aad as
associated data. By default the sidecar on --socket does it with a loaded
key; --sealed-key FILE uses a sealed key (stateless); --ekb FILE or
--central (a retained key) has the KMS do it (the central path). The
output is a self-describing dcaas ciphertext; the API's body limit bounds
the input to several hundred KiB.`
	} else {
		cmd.Short = "Decrypt a dcaas ciphertext from a file or stdin to stdout"
		cmd.Long = `Decrypt --in (default stdin) to stdout, with the same --aad as at
encryption. The ciphertext names its key; by default the sidecar on
--socket opens it with a loaded key; --sealed-key FILE uses a sealed key;
--ekb FILE or --central (a retained key) has the KMS do it.`
	}
	fl := cmd.Flags()
	fl.StringVar(&keyID, "key-id", "", "data key id (required to encrypt, except with --sealed-key or --ekb)")
	fl.StringVar(&aad, "aad", "", "associated data (authenticated, not encrypted)")
	fl.StringVar(&in, "in", "-", "input file, - for stdin")
	fl.StringVar(&ekbFile, "ekb", "", "EKB file of the key: the KMS performs the operation")
	fl.StringVar(&sealedFile, "sealed-key", "", "sealed key file from 'dcaas load seal': the sidecar uses it")
	fl.BoolVar(&central, "central", false, "the KMS performs the operation with a retained key")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ref := api.KeyRef{KeyID: keyID}
		var err error
		if ekbFile != "" {
			if ref.EKB, err = os.ReadFile(ekbFile); err != nil {
				return fmt.Errorf("--ekb: %w", err)
			}
		}
		if sealedFile != "" {
			if ref.SealedKey, err = os.ReadFile(sealedFile); err != nil {
				return fmt.Errorf("--sealed-key: %w", err)
			}
		}
		toKMS := central || ekbFile != ""
		switch {
		case toKMS && sealedFile != "":
			return errors.New("--sealed-key is for the sidecar; --ekb and --central are for the KMS")
		case op == "encrypt" && keyID == "" && ekbFile == "" && sealedFile == "":
			return errors.New("--key-id is required")
		case central && keyID == "" && op == "encrypt":
			return errors.New("--central needs --key-id of a retained key")
		}
		input, err := readInput(cmd, in)
		if err != nil {
			return err
		}
		var aadBytes []byte
		if aad != "" {
			aadBytes = []byte(aad)
		}
		type cryptoAPI interface {
			Encrypt(ctx context.Context, key api.KeyRef, plaintext, aad []byte) (*api.EncryptResponse, error)
			Decrypt(ctx context.Context, key api.KeyRef, ciphertext, aad []byte) ([]byte, error)
		}
		var svc cryptoAPI
		if toKMS {
			if svc, err = c.kmsClient(); err != nil {
				return err
			}
		} else if svc, err = c.sidecarClient(); err != nil {
			return err
		}
		ctx := cmd.Context()
		w := cmd.OutOrStdout()
		if op == "encrypt" {
			ct, err := svc.Encrypt(ctx, ref, input, aadBytes)
			if err != nil {
				return err
			}
			if c.json {
				return c.print(cmd, ct, nil)
			}
			_, err = w.Write(ct.Ciphertext)
			return err
		}
		pt, err := svc.Decrypt(ctx, ref, input, aadBytes)
		if err != nil {
			return err
		}
		if c.json {
			return c.print(cmd, api.DecryptResponse{Plaintext: pt}, nil)
		}
		_, err = w.Write(pt)
		return err
	}
	return cmd
}
