package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
)

func newKMSUnsealCmd() *cobra.Command {
	var shareFile string
	cmd := &cobra.Command{
		Use:   "unseal --share-file FILE",
		Short: "Post one unseal key share to a sealed KMS (admin)",
		Long: `Post one unseal key share (a file dcaas seal init wrote) to a KMS that
started sealed, and print the progress: how many of the threshold of
distinct shares are in. The share that completes the threshold opens the
root key and the KMS comes up. A share already posted, a share of another
share set or a damaged share file is refused and not counted; a complete
set that does not open the root key is refused as a whole and the
progress starts again. Give one --kms URL: each replica unseals on its own.
--share-file - reads the share from standard input.`,
		Args: cobra.NoArgs,
	}
	c := connFlags(cmd)
	cmd.Flags().StringVar(&shareFile, "share-file", "", "the share file (required; - for standard input)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if shareFile == "" {
			return fmt.Errorf("--share-file is required")
		}
		data, err := readInput(cmd, shareFile)
		if err != nil {
			return fmt.Errorf("--share-file: %w", err)
		}
		defer clear(data)
		return kmsCall(cmd, c, func(k *client.KMS) (*api.SealStatus, error) {
			return k.Unseal(cmd.Context(), string(data))
		}, printSealStatus)
	}
	return cmd
}

func newKMSSealStatusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "seal-status",
		Short: "Show whether a KMS is sealed and its unseal progress",
		Args:  cobra.NoArgs,
	}
	c := connFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		k, err := c.kmsClientOrAnonymous()
		if err != nil {
			return err
		}
		defer k.Close()
		st, err := k.SealStatus(cmd.Context())
		if err != nil {
			return err
		}
		return c.print(cmd, st, func(w io.Writer) { printSealStatus(w, st) })
	}
	return cmd
}

func printSealStatus(w io.Writer, st *api.SealStatus) {
	if !st.Sealed {
		if st.ShareSet != "" {
			fmt.Fprintf(w, "unsealed (share set %s, %d of %d shares open it)\n", st.ShareSet, st.Threshold, st.Shares)
		} else {
			fmt.Fprintln(w, "unsealed (the root key is not split into shares)")
		}
		return
	}
	posted := make([]string, len(st.Posted))
	for i, p := range st.Posted {
		posted[i] = fmt.Sprint(p)
	}
	fmt.Fprintf(w, "sealed: %d of %d shares (share set %s, %d made)", st.Progress, st.Threshold, st.ShareSet, st.Shares)
	if len(posted) > 0 {
		fmt.Fprintf(w, "; posted: %s", strings.Join(posted, ", "))
	}
	fmt.Fprintln(w)
}
