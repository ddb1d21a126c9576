package kms_test

// Benchmarks of the KMS over its real HTTPS API (kmstest: TLS on a loopback
// port, client certificates, SQLite with synchronous=FULL in a temporary
// dir), so the figures include TLS, JSON, the store's fsyncs and the audit
// append of every request. Run with
//
//	go test -run '^$' -bench . -benchtime 3x ./internal/kms/   (smoke)
//	go test -run '^$' -bench . -benchtime 5s ./internal/kms/   (figures)
//
// Put TMPDIR on the disk the KMS would use: fsync on tmpfs is free.

import (
	"strconv"
	"sync"
	"testing"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
)

// benchWorld is a KMS with a tenant and a custodian, for benchmarks.
func benchWorld(b *testing.B) (*kmstest.Env, *kmstest.Client, api.AppCredentials) {
	b.Helper()
	env := kmstest.Start(b, nil)
	env.Tenant(b, "acme")
	cust, creds := env.App(b, "acme", "payments-api", api.RoleCustodian)
	return env, cust, creds
}

// reportKeys adds a keys/s figure: keys processed per second of wall time.
func reportKeys(b *testing.B, keysPerOp int) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N*keysPerOp)/s, "keys/s")
	}
}

// BenchmarkCreateDataKey is one POST /v1/datakeys at a time: one TLS
// keep-alive connection, key generation, EKB sealing, a store write and an
// audit append.
func BenchmarkCreateDataKey(b *testing.B) {
	_, cust, _ := benchWorld(b)
	for _, typ := range []api.KeyType{api.KeyAES256GCM, api.KeyEd25519, api.KeyECDSAP256} {
		b.Run(string(typ), func(b *testing.B) {
			req := api.CreateDataKeyRequest{Type: typ}
			for b.Loop() {
				var dk api.DataKey
				cust.MustDo(b, "POST", "/v1/datakeys", req, &dk)
			}
			reportKeys(b, 1)
		})
	}
}

// BenchmarkCreateDataKeyParallel is POST /v1/datakeys (aes-256-gcm) from
// many goroutines at once: it shows how far the serialized store writes
// (one write connection, BEGIN IMMEDIATE, fsync per commit) let throughput
// grow with concurrency. p is goroutines per GOMAXPROCS.
func BenchmarkCreateDataKeyParallel(b *testing.B) {
	_, cust, _ := benchWorld(b)
	for _, p := range []int{1, 8} {
		b.Run("p="+strconv.Itoa(p), func(b *testing.B) {
			b.SetParallelism(p)
			req := api.CreateDataKeyRequest{Type: api.KeyAES256GCM}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					var dk api.DataKey
					if err := cust.Do("POST", "/v1/datakeys", req, &dk); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportKeys(b, 1)
		})
	}
}

// batchSize is the number of EKBs in one rewrap request.
const batchSize = 1000

// rewrapFixture is 1,000 distinct aes-256-gcm EKBs of one custodian and a
// sidecar enrolled for it.
type rewrapFixture struct {
	env  *kmstest.Env
	cust *kmstest.Client
	side *kmstest.FakeSidecar
	ekbs [][]byte
}

func newRewrapFixture(b *testing.B, kem api.KEM) *rewrapFixture {
	b.Helper()
	env, cust, creds := benchWorld(b)
	pipe, _ := env.App(b, "acme", "deployer", api.RolePipeline)
	var tok api.EnrollmentToken
	pipe.MustDo(b, "POST", "/v1/enrollment/tokens", api.CreateTokenRequest{CustodianDN: creds.DN}, &tok)
	side := kmstest.NewFakeSidecar(b, kem)
	side.Enroll(b, env.Anonymous(), tok.Token)

	f := &rewrapFixture{env: env, cust: cust, side: side, ekbs: make([][]byte, batchSize)}
	const workers = 8
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < batchSize; i += workers {
				var dk api.DataKey
				if err := cust.Do("POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &dk); err != nil {
					b.Error(err)
					return
				}
				f.ekbs[i] = dk.EKB
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return f
}

func (f *rewrapFixture) rewrap(b *testing.B) api.WrappedKeys {
	var out api.WrappedKeys
	// A pointer, as the SDK's Rewrap sends it: the request then takes the
	// SDK's hand-written encoder (internal/wire), not encoding/json.
	f.cust.MustDo(b, "POST", "/v1/keys/rewrap", &api.RewrapRequest{EKBs: f.ekbs, WrappingCertPEM: f.side.Enrollment.WrappingCertPEM}, &out)
	if len(out.Keys) != batchSize {
		b.Fatalf("rewrap returned %d keys, want %d", len(out.Keys), batchSize)
	}
	return out
}

// benchKEMs are the KEMs a sidecar may wrap with in this mode.
func benchKEMs() []api.KEM {
	if kcrypto.FIPS() {
		return []api.KEM{api.KEMP256, api.KEMMLKEM768P256}
	}
	return []api.KEM{api.KEMX25519, api.KEMP256, api.KEMMLKEM768X25519}
}

// BenchmarkRewrapBatch1000 is one POST /v1/keys/rewrap of 1,000 EKBs to one
// wrapping certificate: certificate checks, 1,000 EKB opens and registry
// lookups, and one HPKE encapsulation for the batch.
func BenchmarkRewrapBatch1000(b *testing.B) {
	for _, kem := range benchKEMs() {
		b.Run(string(kem), func(b *testing.B) {
			f := newRewrapFixture(b, kem)
			for b.Loop() {
				f.rewrap(b)
			}
			reportKeys(b, batchSize)
		})
	}
}

// BenchmarkRewrapBatch1000Cold is BenchmarkRewrapBatch1000 as a first
// load: before each rewrap (not timed) the custodian creates a key, a
// change that makes the KMS forget the registry entries it had read
// (readcache.go), so every rewrap reads its 1,000 entries from the store.
func BenchmarkRewrapBatch1000Cold(b *testing.B) {
	f := newRewrapFixture(b, kcrypto.DefaultKEM())
	for b.Loop() {
		b.StopTimer()
		var dk api.DataKey
		f.cust.MustDo(b, "POST", "/v1/datakeys", api.CreateDataKeyRequest{Type: api.KeyAES256GCM}, &dk)
		b.StartTimer()
		f.rewrap(b)
	}
	reportKeys(b, batchSize)
}

// BenchmarkUnwrapBatch1000 is the sidecar's half of a rewrap: opening the
// 1,000 wrapped keys of one rewrap answer with the sidecar's HPKE key (one
// decapsulation, 1,000 AEAD opens), in the test process.
func BenchmarkUnwrapBatch1000(b *testing.B) {
	for _, kem := range benchKEMs() {
		b.Run(string(kem), func(b *testing.B) {
			f := newRewrapFixture(b, kem)
			keys := f.rewrap(b)
			for b.Loop() {
				for _, dek := range f.side.Unwrap(b, &keys) {
					dek.Wipe()
				}
			}
			reportKeys(b, batchSize)
		})
	}
}

// BenchmarkGrantLoad1000 is the grant flow for 1,000 EKBs: the custodian's
// POST /v1/grants, then the sidecar's POST /v1/keys/load with the grant
// (grant check and use, 1,000 EKB opens, one HPKE encapsulation).
func BenchmarkGrantLoad1000(b *testing.B) {
	f := newRewrapFixture(b, kcrypto.DefaultKEM())
	side := f.side.Client(b, f.env)
	pub, err := kcrypto.MarshalKEMPublicKey(f.side.KEMKey.PublicKey())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		var g api.Grant
		f.cust.MustDo(b, "POST", "/v1/grants", &api.GrantRequest{InstanceID: f.side.Enrollment.InstanceID, EKBs: f.ekbs}, &g)
		var out api.WrappedKeys
		side.MustDo(b, "POST", "/v1/keys/load", &api.LoadRequest{Grant: g.Grant, EKBs: f.ekbs, Recipient: pub}, &out)
		if len(out.Keys) != batchSize {
			b.Fatalf("load returned %d keys, want %d", len(out.Keys), batchSize)
		}
	}
	reportKeys(b, batchSize)
}
