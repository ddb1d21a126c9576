package main

import (
	"bufio"
	"bytes"
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

// An audit archive (docs/formats.md §4.1) is JSON Lines: a header, then
// the records after the header's start, one api.AuditRecord a line, as
// GET /v1/audit answers them, ending with a signed record. It verifies
// with the audit key alone, and archives made one after another chain:
// each starts after the last record of the one before.

// archiveFormat names the format in an archive's header.
const archiveFormat = "dcaas-audit-archive/v1"

// maxArchiveLine bounds one line of an archive (a record is a few hundred
// bytes).
const maxArchiveLine = 1 << 20

// archiveHeader is an archive's first line.
type archiveHeader struct {
	Format string      `json:"format"`
	KeyID  string      `json:"key_id"`
	Start  audit.Start `json:"start"`
}

// archiveEnd is where a verified run of archives ends: the last record.
type archiveEnd struct {
	Seq  int64
	Hash []byte
}

// archiveResult is what verifying a run of archives found.
type archiveResult struct {
	Start       int64                   // the first archive starts after this record
	End         archiveEnd              // the last archive's last record
	Records     int64                   // how many records the archives hold
	Checkpoints []store.AuditCheckpoint // the checkpoints given that fell in the archives, matched
}

func fromAPIRecord(r api.AuditRecord) store.AuditRecord {
	return store.AuditRecord{
		Seq: r.Seq, Time: r.Time, Caller: r.Caller, Role: r.Role, Action: r.Action, Tenant: r.Tenant,
		KeyID: r.KeyID, Outcome: r.Outcome, Code: r.Code, PrevHash: r.PrevHash, Hash: r.Hash, Sig: r.Signature,
	}
}

func toAPIRecord(r store.AuditRecord) api.AuditRecord {
	return api.AuditRecord{
		Seq: r.Seq, Time: r.Time, Caller: r.Caller, Role: r.Role, Action: r.Action, Tenant: r.Tenant,
		KeyID: r.KeyID, Outcome: r.Outcome, Code: r.Code, PrevHash: r.PrevHash, Hash: r.Hash, Signature: r.Sig,
	}
}

// archiveLines reads an archive's lines, each at most maxArchiveLine.
type archiveLines struct {
	r    *bufio.Reader
	line int
}

// next decodes the next line into v strictly; io.EOF at the end.
func (a *archiveLines) next(v any) error {
	var buf []byte
	for {
		chunk, err := a.r.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > maxArchiveLine {
			return fmt.Errorf("line %d is longer than %d bytes", a.line+1, maxArchiveLine)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && (!errors.Is(err, io.EOF) || len(buf) == 0) {
			return err
		}
		break
	}
	a.line++
	dec := json.NewDecoder(bytes.NewReader(buf))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("line %d: %w", a.line, err)
	}
	if dec.More() {
		return fmt.Errorf("line %d: more than one JSON value", a.line)
	}
	return nil
}

// verifyArchives reads archives in order with key, as one log: the first
// starts after its header's start (a record key signed, or the start of
// the log), each next one after the last record of the one before; every
// record is checked as audit.Verify checks a log, each archive must end
// with a signed record, and each of cps whose record an archive holds
// must match it. open opens an archive by name.
func verifyArchives(names []string, open func(string) (io.ReadCloser, error), key kcrypto.LogVerifyKey, cps []store.AuditCheckpoint) (archiveResult, error) {
	var res archiveResult
	v, err := audit.NewVerifier(key)
	if err != nil {
		return res, err
	}
	for i, name := range names {
		if err := verifyArchive(name, open, v, key, i == 0, &res, cps); err != nil {
			return res, fmt.Errorf("%s: %w", name, err)
		}
	}
	if _, err := v.Result(); err != nil {
		return res, err
	}
	return res, nil
}

func verifyArchive(name string, open func(string) (io.ReadCloser, error), v *audit.Verifier, key kcrypto.LogVerifyKey, first bool, res *archiveResult, cps []store.AuditCheckpoint) error {
	f, err := open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	lines := &archiveLines{r: bufio.NewReaderSize(f, 64<<10)}
	var h archiveHeader
	if err := lines.next(&h); err != nil {
		return fmt.Errorf("not an audit archive: %w", err)
	}
	switch {
	case h.Format != archiveFormat:
		return fmt.Errorf("not an audit archive (format %q, want %q)", h.Format, archiveFormat)
	case h.KeyID != key.ID():
		return fmt.Errorf("its records are signed by audit key %s, not by %s", h.KeyID, key.ID())
	case first:
		if err := v.StartAfter(h.Start, false); err != nil {
			return err
		}
		res.Start = h.Start.Seq
	case h.Start.Seq != res.End.Seq || !bytes.Equal(h.Start.Hash, res.End.Hash):
		return fmt.Errorf("it starts after record %d, but the archive before it ends at record %d: give the archives in order, none missing", h.Start.Seq, res.End.Seq)
	}
	var last store.AuditRecord
	for {
		var r api.AuditRecord
		err := lines.next(&r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		rec := fromAPIRecord(r)
		if err := v.Add(rec); err != nil {
			return err
		}
		for _, cp := range cps {
			if cp.Seq == rec.Seq && !bytes.Equal(cp.Hash, rec.Hash) {
				return &audit.BrokenError{Seq: rec.Seq, Reason: "its hash is not the one the checkpoint made at " + cp.Time.Format(time.RFC3339Nano) + " signed"}
			}
			if cp.Seq == rec.Seq {
				res.Checkpoints = append(res.Checkpoints, cp)
			}
		}
		last = rec
		res.Records++
	}
	switch {
	case last.Seq == 0:
		return errors.New("it holds no record")
	case last.Sig == nil:
		return fmt.Errorf("it ends with record %d, which is not signed: an archive ends with a signed record, so it was cut short", last.Seq)
	}
	res.End = archiveEnd{Seq: last.Seq, Hash: last.Hash}
	return nil
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
// read, up to the last signed one of them. It returns the archive's start
// and end and how many records it holds.
func writeArchive(cmd *cobra.Command, k *client.KMS, key kcrypto.LogVerifyKey, bound archiveBound, w io.Writer) (audit.Start, archiveEnd, int64, error) {
	ctx := cmd.Context()
	st, err := k.AuditStart(ctx)
	if err != nil {
		return audit.Start{}, archiveEnd{}, 0, err
	}
	start := audit.Start{Seq: st.Seq, Hash: st.Hash, Sig: st.Signature}
	v, err := audit.NewVerifier(key)
	if err == nil {
		err = v.StartAfter(start, false)
	}
	if err != nil {
		return start, archiveEnd{}, 0, fmt.Errorf("the KMS's audit log start: %w", err)
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(archiveHeader{Format: archiveFormat, KeyID: key.ID(), Start: start}); err != nil {
		return start, archiveEnd{}, 0, err
	}
	// Records after the last signed one wait here: an archive ends with a
	// signed record, whose signature covers them.
	var pending []api.AuditRecord
	var end archiveEnd
	var n int64
	after := start.Seq
	for done := false; !done; {
		page, err := k.Audit(ctx, after)
		if err != nil {
			return start, end, n, err
		}
		// Reads are audited too: a page of nothing but reads is the end.
		done = !slices.ContainsFunc(page.Records, func(r api.AuditRecord) bool { return r.Action != "audit.read" })
		for _, r := range page.Records {
			if !bound.holds(r) {
				done = true
				break
			}
			if err := v.Add(fromAPIRecord(r)); err != nil {
				return start, end, n, err
			}
			pending = append(pending, r)
			if r.Signature == nil {
				continue
			}
			for _, p := range pending {
				if err := enc.Encode(p); err != nil {
					return start, end, n, err
				}
			}
			n += int64(len(pending))
			pending = pending[:0]
			end = archiveEnd{Seq: r.Seq, Hash: r.Hash}
		}
		after = page.Next
	}
	if n == 0 {
		return start, end, 0, fmt.Errorf("nothing to archive: the log (which starts after record %d) has no signed record within the bounds given", start.Seq)
	}
	return start, end, n, bw.Flush()
}

// pinnedAuditKey reads the audit key a verifier pins (--audit-key).
func pinnedAuditKey(file string) (kcrypto.LogVerifyKey, error) {
	if file == "" {
		return kcrypto.LogVerifyKey{}, errors.New("give --audit-key, the audit key's public key (PEM) you kept: 'dcaas audit key --out' when you trusted the KMS")
	}
	key, _, err := verifyKey(file, "", false)
	return key, err
}

func openFile(name string) (io.ReadCloser, error) { return os.Open(name) }

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
		if !force {
			if _, err := os.Lstat(out); err == nil {
				return fmt.Errorf("%s exists (use --force to replace it)", out)
			}
		}
		k, err := c.kmsClient()
		if err != nil {
			return err
		}
		var start audit.Start
		var end archiveEnd
		var n int64
		err = atomicfile.WriteFunc(out, 0o600, func(w io.Writer) error {
			var err error
			start, end, n, err = writeArchive(cmd, k, key, bound, w)
			return err
		})
		var broken *audit.BrokenError
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
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Delete the records an archive holds from the KMS's audit log (admin)",
		Long: `Verify an archive made by 'dcaas audit archive' with the audit key you
pinned (--audit-key), check that it starts where the KMS's audit log now
starts, and ask the KMS to prune the log through the archive's last record
(POST /v1/audit/prune). The KMS verifies those records again, refuses any
younger than its --audit-retention, moves the log's start in one
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
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if archive == "" {
			return errors.New("give --archive, an archive made by 'dcaas audit archive'")
		}
		key, err := pinnedAuditKey(keyFile)
		if err != nil {
			return err
		}
		res, err := verifyArchives([]string{archive}, openFile, key, nil)
		if err != nil {
			fmt.Fprintf(cmd.OutOrStdout(), "archive NOT VERIFIED: %v\n", err)
			return errors.New("archive not verified")
		}
		k, err := c.kmsClient()
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
