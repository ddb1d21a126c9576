package sqlstore_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"time"

	"github.com/dcaas/dcaas/internal/store"
	"github.com/dcaas/dcaas/internal/store/pgtest"
)

// BenchmarkPostgresLeaseFence: the central path's write (a key version's
// usage and its audit record, one transaction) from 8 goroutines on
// PostgreSQL, by a handle without a lease and by one holding a replica's
// lease, whose every write transaction first reads the lease row FOR KEY
// SHARE (the fence that keeps a replica paused past its lease from
// committing). Reports transactions/s and the process's CPU time per
// transaction; the difference between the two is the fence's cost.
// Skipped without PostgreSQL (DCAAS_TEST_POSTGRES_DSN, or make test's).
func BenchmarkPostgresLeaseFence(b *testing.B) {
	for _, mode := range []string{"unfenced", "fenced"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			db := openPostgres(b, pgtest.DSN(b))
			defer db.Close()
			centralKey(b, db)
			if mode == "fenced" {
				now := time.Now()
				if err := db.AcquireLease(ctx, store.Lease{Replica: "bench", Host: "bench", PID: 1, Heartbeat: now, Expires: now.Add(time.Hour)}); err != nil {
					b.Fatal(err)
				}
			}
			build := func(seq int64, prev []byte) (store.AuditRecord, error) {
				h := sha256.Sum256(binary.BigEndian.AppendUint64(append([]byte(nil), prev...), uint64(seq)))
				return store.AuditRecord{Seq: seq, Time: time.Now().UTC().Truncate(time.Microsecond), Caller: "CN=app", Action: "encrypt",
					Tenant: "acme", KeyID: "k1", Outcome: "ok", PrevHash: prev, Hash: h[:], Sig: []byte("sig")}, nil
			}
			cpu0 := cpuTime()
			parallelWrites(b, db, true, build, nil)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/tx")
		})
	}
}
