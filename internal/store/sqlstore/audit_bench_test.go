package sqlstore_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/audit"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// BenchmarkAuditAppend: 8 goroutines each committing one audit record per
// InTx on SQLite (group commit), signed per record (as the KMS did before)
// or once per transaction (AppendAudit's signer); "central" adds to a key
// version's usage in the same InTx before the record, as the KMS's central
// path does for every encryption. Reports records/s, records per group and
// the process's CPU time per record (less noisy than records/s, which
// follows the disk's fsync time).
func BenchmarkAuditAppend(b *testing.B) {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	sign := func(seq int64, hash []byte) []byte {
		return ed25519.Sign(priv, binary.BigEndian.AppendUint64(append([]byte(nil), hash...), uint64(seq)))
	}
	for _, mode := range []string{"per-record", "per-transaction", "central"} {
		b.Run(mode, func(b *testing.B) {
			db := openSQLite(b, filepath.Join(b.TempDir(), "a.db"))
			defer db.Close()
			if mode == "central" {
				centralKey(b, db)
			}
			build := func(seq int64, prev []byte) (store.AuditRecord, error) {
				r := store.AuditRecord{Seq: seq, Time: time.Now().UTC().Truncate(time.Microsecond), Caller: "CN=app", Action: "encrypt", Tenant: "acme", KeyID: "k1", Outcome: "ok", PrevHash: prev}
				h := sha256.Sum256(binary.BigEndian.AppendUint64(append([]byte(nil), prev...), uint64(seq)))
				r.Hash = h[:]
				if mode == "per-record" {
					r.Sig = sign(seq, r.Hash)
				}
				return r, nil
			}
			signer := store.AuditSigner(sign)
			if mode == "per-record" {
				signer = nil
			}
			start, cpu0 := sqlstore.Groups(db), cpuTime()
			parallelWrites(b, db, mode == "central", build, signer)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(b.N)/float64(sqlstore.Groups(db)-start), "records/group")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/record")
		})
	}
}

// centralKey creates tenant acme and its key k1 at version 1, whose usage
// parallelWrites adds to.
func centralKey(b *testing.B, db *sqlstore.DB) {
	ctx, now := context.Background(), time.Now()
	if err := db.CreateTenant(ctx, store.Tenant{Name: "acme", MasterKeyVersion: 1, CreatedAt: now}, store.MasterKey{Tenant: "acme", Version: 1, Sealed: []byte("sealed"), CreatedAt: now}); err != nil {
		b.Fatal(err)
	}
	if err := db.CreateKey(ctx, store.Key{KeyID: "k1", Tenant: "acme", Owner: "CN=app", Type: "aes-256-gcm", CurrentVersion: 1, CreatedAt: now}, store.KeyVersion{KeyID: "k1", Version: 1, CreatedAt: now}); err != nil {
		b.Fatal(err)
	}
}

// parallelWrites is the timed part of the write benchmarks: b.N
// transactions from 8 goroutines (on 2 cores, as the bench's 8 clients),
// each appending one audit record (build, signed by signer at the commit
// when not nil), after adding to k1's usage when central, as the KMS's
// central path does for every encryption (centralKey made k1).
func parallelWrites(b *testing.B, db *sqlstore.DB, central bool, build func(seq int64, prev []byte) (store.AuditRecord, error), signer store.AuditSigner) {
	ctx := context.Background()
	usage := []store.KeyUsage{{KeyID: "k1", Version: 1, Encryptions: 1, Bytes: 1024}}
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := db.InTx(ctx, func(tx store.Tx) error {
				if central {
					if n, err := tx.AddKeyUsage(ctx, "acme", usage); err != nil || n != 1 {
						return fmt.Errorf("AddKeyUsage = %d, %v", n, err)
					}
				}
				_, err := tx.AppendAudit(ctx, build, signer)
				return err
			}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAuditVerify: audit.Verify of a log of 100,000 records on
// SQLite, a signature every 8 records (transactions of 8 calls), read
// through the store in pages as `dcaas audit verify` reads it, and
// audit.CheckSegment of the same records, the check before a prune
// (internal/kms/auditprune.go). Reports records/s: how long a prune of N
// records takes the KMS before it answers.
func BenchmarkAuditVerify(b *testing.B) {
	const n, perTx = 100_000, 8
	ctx := context.Background()
	db := openSQLite(b, filepath.Join(b.TempDir(), "a.db"))
	defer db.Close()
	key, err := kcrypto.GenerateLogKey()
	if err != nil {
		b.Fatal(err)
	}
	defer key.Wipe()
	l := audit.New(key, nil)
	if _, err := l.Append(ctx, db, audit.Event{Caller: "kms", Action: audit.ActionKeyCreated, KeyID: key.Public().ID(), Outcome: "ok"}); err != nil {
		b.Fatal(err)
	}
	for i := 1; i < n; i += perTx {
		if err := db.InTx(ctx, func(tx store.Tx) error {
			for j := 0; j < perTx && i+j < n; j++ {
				if _, err := l.Append(ctx, tx, audit.Event{Caller: "CN=app,O=acme", Role: "custodian", Action: "crypto.encrypt", Tenant: "acme", KeyID: "key_0001", Outcome: "ok"}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			res, err := audit.Verify(ctx, db, key.Public())
			if err != nil || res.Records != n {
				b.Fatalf("Verify = %+v, %v", res, err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
	// What a prune checks: the span to a signed record, its signature alone.
	b.Run("segment", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := audit.CheckSegment(ctx, db, key.Public(), audit.Start{}, n); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
}
