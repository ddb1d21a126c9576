package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/atomicfile"
	"github.com/dcaas/dcaas/internal/audit"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Inspect and verify the KMS audit log"}
	cmd.AddCommand(newAuditVerifyCmd(), newAuditKeyCmd(), newAuditCheckpointCmd(), newAuditArchiveCmd(), newAuditPruneCmd())
	return cmd
}

// auditDB is what audit verify reads: the records, the latest checkpoint
// the KMS stored, and the log's start (a setting).
type auditDB interface {
	audit.Reader
	LatestAuditCheckpoint(ctx context.Context) (store.AuditCheckpoint, error)
	GetSetting(ctx context.Context, name string) ([]byte, error)
}

func newAuditVerifyCmd() *cobra.Command {
	var dataDir, storeKind, dsn, keyFile, checkpointOut string
	var expect, expectHeads, archives []string
	cmd := &cobra.Command{
		Use:   "verify [ARCHIVE...]",
		Short: "Verify the audit log's signatures, chain and checkpoints; name the first broken record",
		Long: `Verify the KMS audit log in its database, with the audit key's public key only
(no seal, no KMS running needed):

  - every record's hash, its link to the record before, and its signature by
    the audit key: the KMS signs the last record of each transaction (one
    signature per group commit), which covers the records before it through
    the chain, so the log must end with a signed record (records written
    before the KMS had an audit key are an unkeyed prefix, reported,
    protected only from the first signed record on);
  - the checkpoints it is given (--expect-checkpoint), the one the data dir
    holds (DIR/audit-checkpoint.json) and the latest one in the database: each
    must be signed by the audit key and the log must reach its record with the
    same hash. A log shorter than a checkpoint was truncated.

Someone who can write the database but lacks the audit key can change,
delete, insert or reorder records only detectably. They can remove records
from the end after the latest checkpoint you hold: keep checkpoints outside
the database (--checkpoint-out, or 'dcaas audit checkpoint') and pass them
back with --expect-checkpoint, or keep the head a verification printed
(N:HASH) and pass it back with --expect-head.

A log pruned with 'dcaas audit prune' is verified from the signed record it
starts after, which must be the one the record of that prune names (so
records cannot be removed from its start unnoticed either). With --archive
(repeatable, in order; or as arguments, oldest first: archives named by
their date, as 'dcaas audit archive' is shown to name them, sort so in a
shell glob) the archives that hold the pruned records are verified too, as
one log, and must reach the database's log; with archives alone (no
--data-dir, no --store) only the archives are verified, where no database
is at hand.

The key comes from --key (PEM, from 'dcaas audit key' or GET /v1/audit/key,
kept from when you trusted the KMS), else DIR/audit-key.pem, which the KMS
writes from the key it unsealed: the log's first key, which stays the one
to verify with after 'dcaas audit key rotate' (each rotation record, signed
by a key trusted there, brings the next key in; a retired key's later
signatures break the log).`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			archives := append(archives, args...) // --archive, then the arguments: oldest first
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			archivesOnly := len(archives) > 0 && !cmd.Flags().Changed("data-dir") && !cmd.Flags().Changed("store")
			useDir := (cmd.Flags().Changed("data-dir") || storeKind == "sqlite") && !archivesOnly
			key, keyFrom, err := verifyKey(keyFile, dataDir, useDir)
			if err != nil {
				return err
			}
			var db auditDB
			if !archivesOnly {
				var closeDB func()
				if db, closeDB, err = openAuditDB(ctx, storeKind, dataDir, dsn); err != nil {
					return err
				}
				defer closeDB()
			}
			cps, err := expectedCheckpoints(ctx, key, db, expect, dataDir, useDir)
			if err != nil {
				fmt.Fprintf(out, "audit log NOT VERIFIED: %v\n", err)
				return errors.New("audit log not verified")
			}
			ares := &audit.ArchiveChain{}
			if len(archives) > 0 {
				if ares, err = verifyArchives(archives, key, checkpointValues(cps)); err != nil {
					if bad := (*audit.BadCheckpointError)(nil); errors.As(err, &bad) {
						err = fmt.Errorf("the checkpoint from %s: %w", checkpointFrom(cps, bad.Checkpoint), err)
					}
					fmt.Fprintf(out, "audit archive NOT VERIFIED: %v\n", err)
					return errors.New("audit archive not verified")
				}
				fmt.Fprintf(out, "audit archives OK: records %d to %d (%d records) verified with audit key %s (from %s)\n", ares.Start+1, ares.End.Seq, ares.Records, key.ID(), keyFrom)
				if ares.Start > 0 {
					fmt.Fprintf(out, "  the first archive starts after record %d: records 1 to %d are in earlier archives\n", ares.Start, ares.Start)
				}
				for _, cp := range ares.Matched {
					fmt.Fprintf(out, "  checkpoint of record %d signed at %s: matches the archives\n", cp.Seq, cp.Time.Format(time.RFC3339))
				}
				fmt.Fprintf(out, "  last archived record: %d:%x\n", ares.End.Seq, ares.End.Hash)
				if archivesOnly {
					return nil
				}
			}
			start, err := kms.ReadAuditStart(ctx, db)
			if err != nil {
				fmt.Fprintf(out, "audit log NOT VERIFIED: %v\n", err)
				return errors.New("audit log not verified")
			}
			res, err := audit.VerifyAfter(ctx, db, key, start, checkpointValues(cps)...)
			if bad := (*audit.BadCheckpointError)(nil); errors.As(err, &bad) {
				fmt.Fprintf(out, "audit log NOT VERIFIED: the checkpoint from %s: %v\n", checkpointFrom(cps, bad.Checkpoint), err)
				return errors.New("audit log not verified")
			}
			if err := reportVerify(out, res, err); err != nil {
				return err
			}
			if len(archives) > 0 {
				if err := checkArchivesReach(ctx, out, db, res, ares, start); err != nil {
					return err
				}
			}
			var heads []int64
			for _, h := range expectHeads {
				seq, err := checkHead(ctx, out, db, res, start, h)
				if err != nil {
					return err
				}
				heads = append(heads, seq)
			}
			if start.IsZero() {
				fmt.Fprintf(out, "audit log OK: %d records verified with audit key %s (from %s)\n", res.Records, key.ID(), keyFrom)
			} else {
				fmt.Fprintf(out, "audit log OK: records %d to %d verified with audit key %s (from %s)\n", start.Seq+1, res.Records, key.ID(), keyFrom)
				fmt.Fprintf(out, "  records 1 to %d were pruned (archived; 'dcaas audit verify --archive' checks archives); the log starts after record %s, which the record of its prune names\n", start.Seq, start)
			}
			for _, ch := range res.KeyChanges {
				if ch.Retired {
					fmt.Fprintf(out, "  audit key %s retired at record %d: no signature by it after\n", ch.KeyID, ch.Seq)
				} else {
					fmt.Fprintf(out, "  audit key rotated to %s at record %d (signed by a key trusted there)\n", ch.KeyID, ch.Seq)
				}
			}
			if res.Legacy > 0 {
				fmt.Fprintf(out, "  records 1 to %d were written before the audit key existed (unkeyed): they are protected from record %d on, signed at %s; a change made to them before then cannot be detected\n",
					res.Legacy, res.Legacy+1, res.Anchored.Format(time.RFC3339))
			}
			fmt.Fprintf(out, "  head: record %d, hash %s (keep %d:%s and pass it back with --expect-head)\n",
				res.Records, hex.EncodeToString(res.Head), res.Records, hex.EncodeToString(res.Head))
			for _, seq := range heads {
				if seq < start.Seq {
					fmt.Fprintf(out, "  record %d, the head an earlier verification saw, was pruned: check it in the archives\n", seq)
					continue
				}
				fmt.Fprintf(out, "  record %d, the head an earlier verification saw: matches\n", seq)
			}
			latest := latestCheckpoint(cps)
			if latest == nil {
				fmt.Fprintf(out, "  no checkpoint to compare with: records removed from the end cannot be detected\n")
			} else {
				for _, cp := range cps {
					if cp.Seq < start.Seq && slices.ContainsFunc(ares.Matched, func(m store.AuditCheckpoint) bool { return m.Seq == cp.Seq }) {
						continue // matched in the archives, above
					}
					if cp.Seq < start.Seq {
						fmt.Fprintf(out, "  checkpoint of record %d signed at %s (%s): its record was pruned; its signature verifies (pass the archives with --archive to match it)\n", cp.Seq, cp.Time.Format(time.RFC3339), cp.from)
						continue
					}
					fmt.Fprintf(out, "  checkpoint of record %d signed at %s (%s): matches\n", cp.Seq, cp.Time.Format(time.RFC3339), cp.from)
				}
				if latest.Seq < res.Records {
					fmt.Fprintf(out, "  records %d to %d are after the latest checkpoint: removing them could not be detected\n", max(latest.Seq, start.Seq)+1, res.Records)
				}
			}
			if checkpointOut != "" {
				if latest == nil {
					return errors.New("--checkpoint-out: no signed checkpoint to write")
				}
				if err := writeCheckpoint(checkpointOut, latest.AuditCheckpoint, key); err != nil {
					return err
				}
				fmt.Fprintf(out, "  checkpoint of record %d written to %s: keep it outside the KMS and its database, and pass it back with --expect-checkpoint\n", latest.Seq, checkpointOut)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dataDir, "data-dir", "dcaas-kms", "KMS data directory (DIR/kms.db with --store sqlite; DIR/audit-key.pem, DIR/audit-checkpoint.json)")
	fl.StringVar(&storeKind, "store", "sqlite", "database: sqlite (DIR/kms.db) or postgres")
	fl.StringVar(&dsn, "postgres-dsn", "", "PostgreSQL DSN for --store postgres (else DCAAS_POSTGRES_DSN)")
	fl.StringVar(&keyFile, "key", "", "the audit key's public key, PEM (default DIR/audit-key.pem)")
	fl.StringArrayVar(&expect, "expect-checkpoint", nil, "a checkpoint kept outside the database (JSON, from --checkpoint-out or 'dcaas audit checkpoint'); repeatable")
	fl.StringVar(&checkpointOut, "checkpoint-out", "", "write the latest verified checkpoint (JSON) to this file, to keep elsewhere")
	fl.StringArrayVar(&expectHeads, "expect-head", nil, "a head an earlier verification printed, N:HASH (hex): the log must still hold record N with that hash; repeatable")
	fl.StringArrayVar(&archives, "archive", nil, "an archive of pruned records ('dcaas audit archive'), in order, repeatable: verified, and the database's log must start where the last ends (alone, without --data-dir or --store: verify only the archives)")
	return cmd
}

// checkHead checks a head an earlier verification printed ("N:HASH")
// against the log res verified from start: record N must still be there,
// with that hash (the start's, for N the start; a pruned record is in an
// archive, not checked here). It returns N, or prints the failure and
// returns it.
func checkHead(ctx context.Context, out io.Writer, db audit.Reader, res audit.Result, start audit.Start, head string) (int64, error) {
	n, h, ok := strings.Cut(head, ":")
	seq, err := strconv.ParseInt(n, 10, 64)
	hash, herr := hex.DecodeString(h)
	if !ok || err != nil || herr != nil || seq < 0 {
		return 0, fmt.Errorf("--expect-head %q: want N:HASH, the record number and its hash in hex", head)
	}
	if seq > res.Records {
		fmt.Fprintf(out, "audit log TRUNCATED: it ends at record %d, but an earlier verification saw record %d: records %d to %d were removed\n",
			res.Records, seq, res.Records+1, seq)
		return 0, errors.New("audit log truncated")
	}
	got := make([]byte, len(res.Head))
	switch {
	case seq < start.Seq:
		return seq, nil
	case seq == start.Seq && seq > 0:
		got = start.Hash
	case seq > 0:
		recs, err := db.AuditAfter(ctx, seq-1, 1)
		if err != nil {
			return 0, err
		}
		if len(recs) != 1 || recs[0].Seq != seq {
			return 0, fmt.Errorf("record %d: not found", seq)
		}
		got = recs[0].Hash
	}
	if !bytes.Equal(got, hash) {
		fmt.Fprintf(out, "audit log BROKEN at record %d: its hash is not the one an earlier verification saw (%s)\n", seq, h)
		return 0, errors.New("audit log broken")
	}
	return seq, nil
}

// checkArchivesReach checks that the archives verified before, which end
// with record end, reach the database's log, which starts after start
// and was verified to res: they end at its start with the same hash, or
// within it (archived, not pruned yet) at a record of the same hash.
func checkArchivesReach(ctx context.Context, out io.Writer, db audit.Reader, res audit.Result, ares *audit.ArchiveChain, start audit.Start) error {
	end := ares.End
	switch {
	case end.Seq < start.Seq:
		fmt.Fprintf(out, "audit log NOT COVERED: the archives end at record %d, but the database's log starts after record %d: records %d to %d were pruned and are in no archive given\n",
			end.Seq, start.Seq, end.Seq+1, start.Seq)
		return errors.New("audit log not covered by the archives")
	case end.Seq == start.Seq && !bytes.Equal(end.Hash, start.Hash):
		fmt.Fprintf(out, "audit log BROKEN at record %d: the database's log starts after it with another hash than the archives' last record: the archives are not of this log\n", end.Seq)
		return errors.New("audit log broken")
	case end.Seq > start.Seq:
		if _, err := checkHead(ctx, out, db, res, start, fmt.Sprintf("%d:%x", end.Seq, end.Hash)); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "  the archives reach the database's log: together they hold every record from %d on\n", ares.Start+1)
	return nil
}

// verifyKey reads the verification key: --key, else DIR/audit-key.pem.
func verifyKey(keyFile, dataDir string, useDir bool) (kcrypto.LogVerifyKey, string, error) {
	from := keyFile
	if from == "" {
		if !useDir {
			return kcrypto.LogVerifyKey{}, "", errors.New("no audit key: give --key (the PEM of 'dcaas audit key' or GET /v1/audit/key) or --data-dir of a KMS")
		}
		from = filepath.Join(dataDir, kms.AuditKeyFile)
	}
	b, err := os.ReadFile(from)
	if err != nil {
		return kcrypto.LogVerifyKey{}, "", fmt.Errorf("the audit key: %w (give --key, the PEM of 'dcaas audit key' or GET /v1/audit/key)", err)
	}
	key, err := kcrypto.ParseLogVerifyKeyPEM(b)
	if err != nil {
		return kcrypto.LogVerifyKey{}, "", fmt.Errorf("%s: %w", from, err)
	}
	return key, from, nil
}

// openAuditDB opens the KMS database read-only (SQLite) or as a client
// (PostgreSQL).
func openAuditDB(ctx context.Context, storeKind, dataDir, dsn string) (auditDB, func(), error) {
	switch storeKind {
	case "sqlite":
		path := filepath.Join(dataDir, kms.DBFile)
		if _, err := os.Stat(path); err != nil {
			return nil, nil, fmt.Errorf("no KMS database at %s: %w", path, err)
		}
		db, err := sqlstore.OpenSQLiteReadOnly(ctx, path)
		if err != nil {
			return nil, nil, err
		}
		return db, func() { db.Close() }, nil
	case "postgres":
		if dsn == "" {
			dsn = os.Getenv("DCAAS_POSTGRES_DSN")
		}
		if dsn == "" {
			return nil, nil, errors.New("--store postgres needs --postgres-dsn or DCAAS_POSTGRES_DSN")
		}
		db, err := sqlstore.OpenPostgres(ctx, dsn)
		if err != nil {
			return nil, nil, err
		}
		return db, func() { db.Close() }, nil
	}
	return nil, nil, fmt.Errorf("--store %q: want sqlite or postgres", storeKind)
}

// sourcedCheckpoint is a checkpoint and where it came from.
type sourcedCheckpoint struct {
	store.AuditCheckpoint
	from string
}

// expectedCheckpoints gathers the checkpoints to compare the log with and
// checks each one's signature, naming the one that fails.
func expectedCheckpoints(ctx context.Context, key kcrypto.LogVerifyKey, db auditDB, files []string, dataDir string, useDir bool) ([]sourcedCheckpoint, error) {
	var out []sourcedCheckpoint
	for _, f := range files {
		cp, err := readCheckpoint(f)
		if err != nil {
			return nil, err
		}
		out = append(out, sourcedCheckpoint{cp, f})
	}
	if useDir {
		f := filepath.Join(dataDir, kms.AuditCheckpointFile)
		if _, err := os.Stat(f); err == nil {
			cp, err := readCheckpoint(f)
			if err != nil {
				return nil, err
			}
			out = append(out, sourcedCheckpoint{cp, f})
		}
	}
	if db != nil {
		cp, err := db.LatestAuditCheckpoint(ctx)
		switch {
		case err == nil:
			out = append(out, sourcedCheckpoint{cp, "the database"})
		case !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
	}
	// Their signatures are the verifier's to check: by the first key, or
	// by one the log was rotated to (known once the rotation is read).
	return out, nil
}

// checkpointFrom names where cp came from.
func checkpointFrom(cps []sourcedCheckpoint, cp store.AuditCheckpoint) string {
	for _, c := range cps {
		if c.Seq == cp.Seq && c.Time.Equal(cp.Time) && bytes.Equal(c.Sig, cp.Sig) {
			return c.from
		}
	}
	return "an unknown source"
}

func checkpointValues(cps []sourcedCheckpoint) []store.AuditCheckpoint {
	out := make([]store.AuditCheckpoint, len(cps))
	for i, cp := range cps {
		out[i] = cp.AuditCheckpoint
	}
	return out
}

func latestCheckpoint(cps []sourcedCheckpoint) *sourcedCheckpoint {
	var latest *sourcedCheckpoint
	for i := range cps {
		if latest == nil || cps[i].Seq > latest.Seq {
			latest = &cps[i]
		}
	}
	return latest
}

// reportVerify prints a failed verification and returns the command's
// error, or nil when err is nil.
func reportVerify(out io.Writer, res audit.Result, err error) error {
	var broken *audit.BrokenError
	var trunc *audit.TruncatedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &broken):
		fmt.Fprintf(out, "audit log BROKEN at record %d: %s (%d records before it verified)\n", broken.Seq, broken.Reason, res.Records)
		return errors.New("audit log broken")
	case errors.As(err, &trunc):
		fmt.Fprintf(out, "audit log TRUNCATED: it ends at record %d, but the checkpoint signed at %s covers %d records: records %d to %d were removed\n",
			trunc.Head, trunc.Checkpoint.Time.Format(time.RFC3339), trunc.Checkpoint.Seq, trunc.Head+1, trunc.Checkpoint.Seq)
		return errors.New("audit log truncated")
	case errors.Is(err, audit.ErrNotSigned), errors.Is(err, audit.ErrBadCheckpoint):
		fmt.Fprintf(out, "audit log NOT VERIFIED: %v\n", err)
		return errors.New("audit log not verified")
	}
	return err
}

// readCheckpoint reads a checkpoint file (api.AuditCheckpoint JSON).
func readCheckpoint(path string) (store.AuditCheckpoint, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return store.AuditCheckpoint{}, err
	}
	var cp api.AuditCheckpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return store.AuditCheckpoint{}, fmt.Errorf("%s: not a checkpoint: %w", path, err)
	}
	return store.AuditCheckpoint{Seq: cp.Seq, Hash: cp.Hash, Time: cp.Time, Sig: cp.Signature}, nil
}

// writeCheckpoint writes cp as api.AuditCheckpoint JSON.
func writeCheckpoint(path string, cp store.AuditCheckpoint, key kcrypto.LogVerifyKey) error {
	return writeJSONFile(path, api.AuditCheckpoint{Seq: cp.Seq, Hash: cp.Hash, Time: cp.Time, Signature: cp.Sig, KeyID: key.ID()})
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o644)
}

func newAuditKeyCmd() *cobra.Command {
	var dataDir, out string
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Print the audit key's public key (PEM), which 'dcaas audit verify --key' takes",
		Long: `Print the public key that verifies the audit log's signatures: from the KMS
(--kms, --ca; anyone may read it) or from a data dir (--data-dir: the
audit-key.pem the KMS writes from the key it unsealed). Keep it with your
checkpoints, and compare its id with the one you kept: a verifier must not
take the key from the database it verifies.`,
		Args: cobra.NoArgs,
	}
	c := connFlags(cmd)
	cmd.AddCommand(
		newAuditKeyChangeCmd("rotate", "Make the KMS sign the audit log with a new key (admin)",
			`Make the KMS sign the audit log with a new key from now on: a crypto-period
ended, or the key may have leaked. The KMS appends a record carrying the new
public key, signed by the current key as it is written, so 'dcaas audit verify'
with the first key you pinned (audit-key.pem) still verifies the whole log.
Replicas switch at their next key read (every --cert-check-interval); until
'dcaas audit key retire' the earlier key still verifies.

Talks to the KMS API with --kms, --ca, --cert and --key (the admin's).`,
			func(k *client.KMS, cmd *cobra.Command) (*api.AuditKey, error) { return k.RotateAuditKey(cmd.Context()) }),
		newAuditKeyChangeCmd("retire", "Retire the audit keys rotated away from (admin)",
			`Retire every audit key the KMS rotated away from: the log records each
retirement, signed by the current key, and a signature by a retired key after
it does not verify. Allowed two --cert-check-interval after the rotation,
when every replica signs with the new key.

Talks to the KMS API with --kms, --ca, --cert and --key (the admin's).`,
			func(k *client.KMS, cmd *cobra.Command) (*api.AuditKey, error) {
				return k.RetireAuditKeys(cmd.Context())
			}),
	)
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "read DIR/audit-key.pem instead of asking the KMS")
	cmd.Flags().StringVar(&out, "out", "", "also write the PEM to this file")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var ak api.AuditKey
		if dataDir != "" {
			key, _, err := verifyKey("", dataDir, true)
			if err != nil {
				return err
			}
			ak = api.AuditKey{KeyID: key.ID(), PublicKeyPEM: string(key.PEM())}
		} else {
			k, err := c.anonymousKMSClient()
			if err != nil {
				return err
			}
			got, err := k.AuditKey(cmd.Context())
			if err != nil {
				return err
			}
			key, err := kcrypto.ParseLogVerifyKeyPEM([]byte(got.PublicKeyPEM))
			if err != nil {
				return fmt.Errorf("the KMS answered: %w", err)
			}
			if key.ID() != got.KeyID {
				return fmt.Errorf("the KMS answered key id %s for a key whose id is %s", got.KeyID, key.ID())
			}
			ak = *got
		}
		if out != "" {
			if err := atomicfile.Write(out, []byte(ak.PublicKeyPEM), 0o644); err != nil {
				return err
			}
		}
		return c.print(cmd, ak, func(w io.Writer) {
			fmt.Fprintf(w, "# audit key %s\n", ak.KeyID)
			if ak.CurrentKeyID != "" && ak.CurrentKeyID != ak.KeyID {
				fmt.Fprintf(w, "# (the log's first key, which verifies it all; the KMS signs with %s now)\n", ak.CurrentKeyID)
			}
			fmt.Fprint(w, ak.PublicKeyPEM)
		})
	}
	return cmd
}

// newAuditKeyChangeCmd is dcaas audit key rotate or retire.
func newAuditKeyChangeCmd(use, short, long string, do func(k *client.KMS, cmd *cobra.Command) (*api.AuditKey, error)) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Long: long, Args: cobra.NoArgs}
	c := connFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return kmsCall(cmd, c, func(k *client.KMS) (*api.AuditKey, error) {
			return do(k, cmd)
		}, func(w io.Writer, ak *api.AuditKey) {
			fmt.Fprintf(w, "audit log signed with key %s; verifiers keep the first key, %s (the log records the keys it was rotated to)\n", ak.CurrentKeyID, ak.KeyID)
		})
	}
	return cmd
}

func newAuditCheckpointCmd() *cobra.Command {
	var out string
	var latest bool
	cmd := &cobra.Command{
		Use:   "checkpoint",
		Short: "Make the KMS sign a checkpoint of the audit log now (admin), to keep elsewhere",
		Long: `Ask the KMS to sign a checkpoint of the audit log's head now (or, with
--latest, read the latest one it signed) and print it as JSON. Keep it
outside the KMS and its database, and pass it to 'dcaas audit verify
--expect-checkpoint': the log must then still reach its record with the same
hash, so records removed from the end up to it are detected.

Talks to the KMS API with --kms, --ca, --cert and --key (the admin's).`,
		Args: cobra.NoArgs,
	}
	c := connFlags(cmd)
	cmd.Flags().StringVar(&out, "out", "", "also write the checkpoint (JSON) to this file")
	cmd.Flags().BoolVar(&latest, "latest", false, "read the latest checkpoint instead of making one")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		k, err := c.kmsClient()
		if err != nil {
			return err
		}
		defer k.Close()
		var cp *api.AuditCheckpoint
		if latest {
			cp, err = k.AuditCheckpoint(cmd.Context())
		} else {
			cp, err = k.NewAuditCheckpoint(cmd.Context())
		}
		if err != nil {
			return err
		}
		if out != "" {
			if err := writeJSONFile(out, cp); err != nil {
				return err
			}
		}
		b, err := json.MarshalIndent(cp, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), string(b))
		return nil
	}
	return cmd
}
