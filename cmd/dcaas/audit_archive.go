package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/atomicfile"
	"github.com/dcaas/dcaas/internal/audit"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/store"
)

// verifyArchives reads the archives named, in order, as one log with key
// (audit.ArchiveChain), holding cps.
func verifyArchives(names []string, key kcrypto.LogVerifyKey, cps []store.AuditCheckpoint) (*audit.ArchiveChain, error) {
	chain, err := audit.NewArchiveChain(key, cps...)
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		if err := readArchive(chain, name); err != nil {
			return chain, fmt.Errorf("%s: %w", name, err)
		}
	}
	return chain, nil
}

func readArchive(chain *audit.ArchiveChain, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return chain.Read(f)
}

// archiveBound is where an archive stops: the records it may hold are
// numbered through at most, and written before before.
type archiveBound struct {
	through int64
	before  time.Time
}

func (b archiveBound) holds(r api.AuditRecord) bool {
	return (b.through == 0 || r.Seq <= b.through) && r.Time.Before(b.before)
}

// writeArchive reads the log through k from its start and writes to w an
// archive of its records within bound, verified with key as they are
// read, up to the last signed one of them. It returns the archive's start,
// its last record and how many records it holds.
func writeArchive(cmd *cobra.Command, k *client.KMS, key kcrypto.LogVerifyKey, bound archiveBound, w io.Writer) (audit.Start, store.AuditRecord, int64, error) {
	ctx := cmd.Context()
	st, err := k.AuditStart(ctx)
	if err != nil {
		return audit.Start{}, store.AuditRecord{}, 0, err
	}
	start := audit.Start{Seq: st.Seq, Hash: st.Hash, Sig: st.Signature, Keys: st.Keys}
	v, err := audit.NewVerifier(key)
	if err == nil {
		err = v.StartAfter(start, false)
	}
	if err != nil {
		return start, store.AuditRecord{}, 0, fmt.Errorf("the KMS's audit log start: %w", err)
	}
	aw, err := audit.NewArchiveWriter(w, key, start)
	if err != nil {
		return start, store.AuditRecord{}, 0, err
	}
	after := start.Seq
	for done := false; !done; {
		page, err := k.Audit(ctx, after)
		if err != nil {
			return start, store.AuditRecord{}, 0, err
		}
		// Reads are audited too: a page of nothing but reads is the end.
		done = !slices.ContainsFunc(page.Records, func(r api.AuditRecord) bool { return r.Action != "audit.read" })
		for _, r := range page.Records {
			if !bound.holds(r) {
				done = true
				break
			}
			rec := audit.FromAPI(r)
			if err := v.Add(rec); err != nil {
				return start, store.AuditRecord{}, 0, err
			}
			if err := aw.Add(rec); err != nil {
				return start, store.AuditRecord{}, 0, err
			}
		}
		after = page.Next
	}
	end, n, err := aw.Close()
	if n == 0 {
		return start, end, 0, errNothingToArchive
	}
	return start, end, n, err
}

// errNothingToArchive: no record of the log is within the bounds given.
var errNothingToArchive = errors.New("nothing to archive")

// pinnedAuditKey reads the audit key a verifier pins (--audit-key).
func pinnedAuditKey(file string) (kcrypto.LogVerifyKey, error) {
	if file == "" {
		return kcrypto.LogVerifyKey{}, errors.New("give --audit-key, the audit key's public key (PEM) you kept: 'dcaas audit key --out' when you trusted the KMS")
	}
	key, _, err := verifyKey(file, "", false)
	return key, err
}

func newAuditArchiveCmd() *cobra.Command {
	var out, keyFile, beforeFlag string
	var through int64
	var olderThan time.Duration
	var force bool
	cmd := &cobra.Command{
		Use:   "archive",
		Short: "Write the oldest records of the audit log to an archive file, verified (admin)",
		Long: `Read the audit log through the API from its start (the first record, or
the record the last prune left it starting after) and write its records to
an archive file (JSON Lines: a header, then one record a line), up to the
last signed record that is older than --older-than (default 2160h, the
KMS's default --audit-retention), or before --before, or at most record
--through. Every record is verified as it is read, with the audit key you
pinned (--audit-key): hashes, chain and signatures. An archive ends with a
signed record and verifies on its own ('dcaas audit verify --archive').

Keep it on write-once storage, then prune what it holds from the KMS's
database with 'dcaas audit prune --archive FILE'. Archives made one after
another chain: each starts after the last record of the one before.

Talks to the KMS API with --kms, --ca, --cert and --key (the admin's).`,
		Args: cobra.NoArgs,
	}
	c := connFlags(cmd)
	fl := cmd.Flags()
	fl.StringVar(&out, "out", "", "the archive file to write (mode 0600); required")
	fl.StringVar(&keyFile, "audit-key", "", "the audit key's public key you pinned (PEM, from 'dcaas audit key'); required")
	fl.DurationVar(&olderThan, "older-than", 90*24*time.Hour, "archive only records older than this")
	fl.StringVar(&beforeFlag, "before", "", "archive only records written before this time (RFC 3339), instead of --older-than")
	fl.Int64Var(&through, "through", 0, "archive at most up to this record number")
	fl.BoolVar(&force, "force", false, "replace an existing --out file")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if out == "" {
			return errors.New("give --out, the archive file to write")
		}
		key, err := pinnedAuditKey(keyFile)
		if err != nil {
			return err
		}
		bound := archiveBound{through: through, before: time.Now().Add(-olderThan)}
		if beforeFlag != "" {
			if bound.before, err = time.Parse(time.RFC3339, beforeFlag); err != nil {
				return fmt.Errorf("--before %q: want an RFC 3339 time such as 2026-09-01T00:00:00Z", beforeFlag)
			}
		}
		if err := refuseExisting(out, force); err != nil {
			return err
		}
		k, err := c.kmsClient()
		if err != nil {
			return err
		}
		var start audit.Start
		var end store.AuditRecord
		var n int64
		err = atomicfile.WriteFunc(out, 0o600, func(w io.Writer) error {
			var err error
			start, end, n, err = writeArchive(cmd, k, key, bound, w)
			return err
		})
		var broken *audit.BrokenError
		if errors.Is(err, errNothingToArchive) {
			// Not a failure: a scheduled job runs before any record is old
			// enough (dcaas-audit-archive.service).
			fmt.Fprintf(cmd.OutOrStdout(), "nothing to archive: the log (which starts after record %d) has no signed record within the bounds given; %s not written\n", start.Seq, out)
			return nil
		}
		if errors.As(err, &broken) || errors.Is(err, audit.ErrBadStart) {
			fmt.Fprintf(cmd.OutOrStdout(), "audit log NOT ARCHIVED: %v\n", err)
			return errors.New("audit log does not verify")
		}
		if err != nil {
			return err
		}
		head := fmt.Sprintf("%d:%x", end.Seq, end.Hash)
		return c.print(cmd, map[string]any{"file": out, "start": start.Seq, "through": end.Seq, "hash": end.Hash, "records": n}, func(w io.Writer) {
			fmt.Fprintf(w, "archived records %d to %d (%d records, verified with audit key %s) to %s\n", start.Seq+1, end.Seq, n, key.ID(), out)
			fmt.Fprintf(w, "  its last record: %s\n", head)
			fmt.Fprintf(w, "  keep it on write-once storage, then: dcaas audit prune --archive %s --audit-key %s\n", out, keyFile)
		})
	}
	return cmd
}

func newAuditPruneCmd() *cobra.Command {
	var archive, keyFile, approval string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Delete the records an archive holds from the KMS's audit log (admin)",
		Long: `Verify an archive made by 'dcaas audit archive' with the audit key you
pinned (--audit-key), check that it starts where the KMS's audit log now
starts, and ask the KMS to prune the log through the archive's last record
(POST /v1/audit/prune). The KMS checks those records again (hashes, links,
the last one's signature) before it answers, which takes about a second
per 250,000 records (--timeout), refuses any younger than its
--audit-retention, moves the log's start in one
transaction with a record of the prune (which a verifier needs to trust
the new start), and deletes the records in the background.

While a tenant has a quorum, the prune needs each quorum's approval of
exactly this prune: the refusal prints the request to make; once it is
approved, run this again with --approval ID.

Talks to the KMS API with --kms, --ca, --cert and --key (the admin's).`,
		Args: cobra.NoArgs,
	}
	c := connFlags(cmd)
	fl := cmd.Flags()
	fl.StringVar(&archive, "archive", "", "the archive whose records to prune; required")
	fl.StringVar(&keyFile, "audit-key", "", "the audit key's public key you pinned (PEM); required")
	fl.StringVar(&approval, "approval", "", "the id of the approved request (while a tenant has a quorum)")
	fl.DurationVar(&timeout, "timeout", 30*time.Minute, "how long to wait for the KMS's answer: it checks every record pruned first (about 250,000 a second on SQLite)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if archive == "" {
			return errors.New("give --archive, an archive made by 'dcaas audit archive'")
		}
		key, err := pinnedAuditKey(keyFile)
		if err != nil {
			return err
		}
		res, err := verifyArchives([]string{archive}, key, nil)
		if err != nil {
			fmt.Fprintf(cmd.OutOrStdout(), "archive NOT VERIFIED: %v\n", err)
			return errors.New("archive not verified")
		}
		k, err := c.kmsClient(client.WithTimeout(timeout))
		if err != nil {
			return err
		}
		st, err := k.AuditStart(cmd.Context())
		if err != nil {
			return err
		}
		if st.Seq != res.Start {
			return fmt.Errorf("the archive starts after record %d, but the KMS's audit log starts after record %d: archive again from the log's start ('dcaas audit archive')", res.Start, st.Seq)
		}
		req := api.AuditPruneRequest{Through: res.End.Seq, Hash: res.End.Hash}
		ctx := cmd.Context()
		if approval != "" {
			ctx = client.WithApproval(ctx, approval)
		}
		got, err := k.PruneAudit(ctx, req)
		if errors.Is(err, client.ErrApprovalRequired) {
			body, _ := json.Marshal(req)
			return fmt.Errorf("%w\nrequest it: dcaas approval request %s --body '%s'; once approved: dcaas audit prune --archive %s --audit-key %s --approval ID",
				err, api.ApprovalPruneAudit, body, archive, keyFile)
		}
		if err != nil {
			return err
		}
		return c.print(cmd, got, func(w io.Writer) {
			fmt.Fprintf(w, "audit log pruned: it now starts after record %d:%x; records %d to %d are in %s (the KMS deletes them in the background)\n",
				got.Seq, got.Hash, res.Start+1, res.End.Seq, archive)
		})
	}
	return cmd
}
