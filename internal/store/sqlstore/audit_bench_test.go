package sqlstore_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

// BenchmarkAuditAppend: 8 goroutines each committing one audit record per
// InTx on SQLite (group commit), signed per record (as the KMS did before)
// or once per transaction (AppendAudit's signer). Reports records/s and
// records per group.
func BenchmarkAuditAppend(b *testing.B) {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	sign := func(seq int64, hash []byte) []byte {
		return ed25519.Sign(priv, binary.BigEndian.AppendUint64(append([]byte(nil), hash...), uint64(seq)))
	}
	for _, mode := range []string{"per-record", "per-transaction"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			db, err := sqlstore.OpenSQLite(ctx, filepath.Join(b.TempDir(), "a.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
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
			b.SetParallelism(4) // 8 goroutines on 2 cores, as the bench's 8 clients
			b.ResetTimer()
			start := sqlstore.Groups(db)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := db.InTx(ctx, func(tx store.Tx) error {
						_, err := tx.AppendAudit(ctx, build, signer)
						return err
					}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(b.N)/float64(sqlstore.Groups(db)-start), "records/group")
		})
	}
}
