package failover_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/client"
	"github.com/dcaas/dcaas/internal/audit"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/e2e"
	"github.com/dcaas/dcaas/internal/kms"
	"github.com/dcaas/dcaas/internal/kms/kmstest"
	"github.com/dcaas/dcaas/internal/store/pgtest"
	"github.com/dcaas/dcaas/internal/store/sqlstore"
)

func TestMain(m *testing.M) { e2e.Main(m) }

// Bounds on everything that waits. Generous for a race-enabled binary on
// a loaded two-core machine; a bound that trips fails the test. (The
// fixture, internal/e2e, bounds starting and stopping processes.)
const (
	streamTimeout = 40 * time.Second // the whole request stream
	callTimeout   = 20 * time.Second // one attempt of one SDK call
)

// The stream: workers issue requests; replica A is killed once markBefore
// calls have succeeded, and the stream ends when every worker has had
// afterKill successes that it started after A was gone.
const (
	workers    = 8
	markBefore = 200
	afterKill  = 15
	grantEvery = 3 // every third call of a worker is a grant
)

var keyTypes = []api.KeyType{api.KeyAES256GCM, api.KeyHMACSHA256, api.KeyEd25519, api.KeyECDSAP256}

// TestFailoverSIGKILLDuringDataKeyStream: two replicas on one PostgreSQL
// database behind one SDK client that knows both URLs. The replica the
// client prefers is SIGKILLed while eight workers create data keys and
// grants through the client. Afterwards:
//
//   - no call failed before the kill, and none after the client had failed
//     over (a call that succeeded on B having started after A was gone);
//   - every failure is what the client's documented rules surface for a
//     non-idempotent request cut off in flight: a transport error that is
//     not a dial error (dial errors are retried on the other replica),
//     never an API error answer, never a timeout;
//   - every acknowledged key is registered once and opens: its EKB rewraps
//     through B to an enrolled (fake) sidecar, which unwraps it, and
//     signing keys match the public key published at creation; key ids are
//     unique; the database holds at most one unacknowledged key per failed
//     creation;
//   - every acknowledged grant loads exactly once through B with the
//     sidecar's certificate, and a second use is 409 already_used;
//   - every acknowledged creation has exactly one audit record and the
//     audit hash chain in PostgreSQL verifies.
func TestFailoverSIGKILLDuringDataKeyStream(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs two dcaas KMS processes; skipped in -short mode")
	}
	begin := time.Now()
	dsn := pgtest.DSN(t)
	ctx := t.Context()

	// Replica A initializes the database; B gets A's root key before its
	// first start and must find the CA in the database, not make one.
	reps := e2e.StartReplicas(t, 2, dsn)
	a, b := reps[0], reps[1]
	caPEM := a.ReadFile(t, kms.CAFile)
	if caB := b.ReadFile(t, kms.CAFile); string(caB) != string(caPEM) {
		t.Fatalf("replica B wrote a ca.pem other than A's:\n%s\nwant\n%s", caB, caPEM)
	}
	t.Logf("replicas up: A %s, B %s (%v since start)", a.URL(), b.URL(), time.Since(begin).Round(time.Millisecond))

	// A's admin credentials on both replicas: the tenant through A, the
	// custodian through B, the pipeline through A.
	epA := a.Endpoint(t)
	adminA := epA.Admin(t)
	adminB := epA.At(b.URL()).Admin(t)
	if _, err := adminA.CreateTenant(ctx, "acme"); err != nil {
		t.Fatalf("CreateTenant through A: %v", err)
	}
	custCreds, err := adminB.CreateApp(ctx, "acme", api.CreateAppRequest{Name: "payments-api", Role: api.RoleCustodian})
	if err != nil {
		t.Fatalf("CreateApp (custodian) through B with A's admin credentials: %v", err)
	}
	if custCreds.CAPEM != string(caPEM) {
		t.Errorf("B issued the custodian under CA\n%s\nwant A's", custCreds.CAPEM)
	}
	pipeCreds, err := adminA.CreateApp(ctx, "acme", api.CreateAppRequest{Name: "deployer", Role: api.RolePipeline})
	if err != nil {
		t.Fatalf("CreateApp (pipeline) through A: %v", err)
	}

	// A fake sidecar bound to the custodian: token minted by the pipeline
	// through B, enrollment through A.
	pipe := epA.At(b.URL()).Client(t, []byte(pipeCreds.CertPEM), []byte(pipeCreds.KeyPEM))
	tok, err := pipe.CreateEnrollmentToken(ctx, api.CreateTokenRequest{CustodianDN: custCreds.DN})
	if err != nil {
		t.Fatalf("CreateEnrollmentToken through B: %v", err)
	}
	side := kmstest.NewFakeSidecar(t, kcrypto.DefaultKEM())
	side.Enroll(t, kmstest.NewClient(t, a.URL(), caPEM, nil, nil), tok.Token)

	// The client under test: both replicas, A first, default retry rules.
	cust := epA.At(a.URL(), b.URL()).Client(t, []byte(custCreds.CertPEM), []byte(custCreds.KeyPEM), client.WithTimeout(callTimeout))

	st := runStream(t, ctx, cust, side.Enrollment.InstanceID, a)
	t.Logf("stream: %d calls in %v (%d keys and %d grants acknowledged, %d failed); SIGKILL of A after %v, %d calls in flight",
		len(st.calls), st.end.Sub(st.start).Round(time.Millisecond), len(st.keys()), len(st.grants()), len(st.failures()),
		st.killStart.Sub(st.start).Round(time.Millisecond), st.inFlightAtKill())

	checkFailures(t, st)
	keys := st.keys()
	checkUniqueKeys(t, keys)

	// Everything below goes through B alone.
	custB := epA.At(b.URL()).Client(t, []byte(custCreds.CertPEM), []byte(custCreds.KeyPEM))
	checkKeysOpen(t, custB, side, keys)
	sideKey, err := kcrypto.MarshalPrivateKeyPEM(side.Key)
	if err != nil {
		t.Fatal(err)
	}
	sideB := kmstest.NewClient(t, b.URL(), caPEM, []byte(side.Enrollment.CertPEM), sideKey)
	checkGrantsLoadOnce(t, sideB, side, st.grants())
	checkDatabase(t, dsn, "acme", keys, st.failed("datakey"))
	checkAudit(t, adminB, dsn, st)

	// B comes through all of it clean: a graceful stop exits 0 (and a
	// race-enabled binary would exit 66 had it seen a data race).
	b.Stop(t)
	t.Logf("whole test: %v", time.Since(begin).Round(time.Millisecond))
}

// call is the outcome of one SDK call of the stream.
type call struct {
	worker, n  int
	op         string // "datakey" or "grant"
	start, end time.Time
	err        error

	key *api.DataKey // op datakey, acknowledged
	typ api.KeyType  // op datakey

	grant    string // op grant, acknowledged
	grantFor *api.DataKey
}

type stream struct {
	calls               []call
	start, end          time.Time
	killStart, killDone time.Time
}

func (s *stream) keys() []call {
	var out []call
	for _, c := range s.calls {
		if c.op == "datakey" && c.err == nil {
			out = append(out, c)
		}
	}
	return out
}

func (s *stream) grants() []call {
	var out []call
	for _, c := range s.calls {
		if c.op == "grant" && c.err == nil {
			out = append(out, c)
		}
	}
	return out
}

func (s *stream) failures() []call {
	var out []call
	for _, c := range s.calls {
		if c.err != nil {
			out = append(out, c)
		}
	}
	return out
}

func (s *stream) failed(op string) int {
	n := 0
	for _, c := range s.failures() {
		if c.op == op {
			n++
		}
	}
	return n
}

// inFlightAtKill counts the calls that had started and not ended when
// SIGKILL was sent.
func (s *stream) inFlightAtKill() int {
	n := 0
	for _, c := range s.calls {
		if c.start.Before(s.killStart) && c.end.After(s.killStart) {
			n++
		}
	}
	return n
}

// runStream runs the workers, kills replica a once markBefore calls have
// succeeded, and returns when every worker has had afterKill successes
// started after a was gone.
func runStream(t *testing.T, parent context.Context, cust *client.KMS, instanceID string, a *e2e.KMS) *stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(parent, streamTimeout)
	defer cancel()

	var (
		mu       sync.Mutex
		calls    []call
		okCount  atomic.Int64
		mark     = make(chan struct{})
		markOnce sync.Once
		killDone atomic.Pointer[time.Time] // set once A has exited
		wg       sync.WaitGroup
	)
	st := &stream{start: time.Now()}
	for w := range workers {
		wg.Go(func() {
			var last *api.DataKey // this worker's latest acknowledged key
			okAfter := 0
			for i := 0; okAfter < afterKill && ctx.Err() == nil; i++ {
				c := call{worker: w, n: i, start: time.Now()}
				if last != nil && i%grantEvery == grantEvery-1 {
					c.op, c.grantFor = "grant", last
					var g *api.Grant
					g, c.err = cust.CreateGrant(ctx, api.GrantRequest{InstanceID: instanceID, EKBs: [][]byte{last.EKB}})
					if c.err == nil {
						c.grant = g.Grant
					}
				} else {
					c.op, c.typ = "datakey", keyTypes[(w+i)%len(keyTypes)]
					c.key, c.err = cust.CreateDataKey(ctx, api.CreateDataKeyRequest{Type: c.typ, Purpose: "failover", Labels: map[string]string{"worker": fmt.Sprint(w)}})
					if c.err == nil {
						last = c.key
					}
				}
				c.end = time.Now()
				if c.err == nil {
					if kd := killDone.Load(); kd != nil && c.start.After(*kd) {
						okAfter++
					}
					if okCount.Add(1) == markBefore {
						markOnce.Do(func() { close(mark) })
					}
				}
				mu.Lock()
				calls = append(calls, c)
				mu.Unlock()
			}
		})
	}

	select {
	case <-mark:
	case <-ctx.Done():
		cancel()
		wg.Wait()
		t.Fatalf("only %d calls succeeded within %v, want %d before the kill", okCount.Load(), streamTimeout, markBefore)
	}
	st.killStart = time.Now()
	a.Kill9(t)
	st.killDone = time.Now()
	killDone.Store(&st.killDone)

	wg.Wait()
	st.end = time.Now()
	st.calls = calls
	if ctx.Err() != nil {
		t.Fatalf("the stream did not finish within %v: %d calls, %d succeeded, %d failed (last failures: %v)",
			streamTimeout, len(calls), okCount.Load(), len(st.failures()), lastErrors(st.failures(), 3))
	}
	return st
}

func lastErrors(cs []call, n int) []error {
	var out []error
	for _, c := range cs[max(0, len(cs)-n):] {
		out = append(out, c.err)
	}
	return out
}

// checkFailures checks each failed call against the client's rules for a
// non-idempotent request (CreateDataKey and CreateGrant are both "once"
// calls): it is retried on the other replica when it certainly did not
// reach a server (a dial error) or the server answered 503, and is
// returned at once when it may have reached one (reset, EOF, a lost
// connection). With B alive throughout, the only errors the client may
// surface are transport errors of calls that were on their way to A when
// it died.
func checkFailures(t *testing.T, st *stream) {
	t.Helper()
	// The client prefers the URL that answered last, so once a call
	// started after A was gone has succeeded (on B), every later call
	// goes to B first and must succeed.
	var failover time.Time
	for _, c := range st.calls {
		if c.err == nil && c.start.After(st.killDone) && (failover.IsZero() || c.end.Before(failover)) {
			failover = c.end
		}
	}
	if failover.IsZero() {
		t.Fatal("no call started after the kill succeeded")
	}
	for _, c := range st.failures() {
		what := fmt.Sprintf("worker %d call %d (%s, started %v after the stream began, ended %v after SIGKILL)",
			c.worker, c.n, c.op, c.start.Sub(st.start).Round(time.Microsecond), c.end.Sub(st.killStart).Round(time.Microsecond))
		var apiErr *client.Error
		var opErr *net.OpError
		switch {
		case c.end.Before(st.killStart):
			t.Errorf("%s failed before replica A was killed: %v", what, c.err)
		case c.start.After(failover):
			t.Errorf("%s failed although the client had already failed over to B (a call started after the kill succeeded at +%v): %v",
				what, failover.Sub(st.killStart).Round(time.Microsecond), c.err)
		case errors.As(c.err, &apiErr):
			// Only B answers after the kill, and B is healthy: an API
			// error (a 503 the client gave up on, a 4xx, a 500) is a bug.
			t.Errorf("%s: an API error answer during failover: %v (status %d, code %s)", what, c.err, apiErr.Status, apiErr.Code)
		case errors.Is(c.err, context.DeadlineExceeded) || errors.Is(c.err, context.Canceled):
			t.Errorf("%s: timed out: %v", what, c.err)
		case errors.As(c.err, &opErr) && opErr.Op == "dial", errors.Is(c.err, syscall.ECONNREFUSED):
			// A dial error never reached a server: the client retries it
			// on the next URL, and B accepts connections.
			t.Errorf("%s: the client surfaced a dial error instead of retrying it on B: %v", what, c.err)
		default:
			t.Logf("allowed: %s: %v", what, c.err)
		}
	}
}

// checkUniqueKeys checks that no key id was acknowledged twice.
func checkUniqueKeys(t *testing.T, keys []call) {
	t.Helper()
	seen := map[string]int{}
	for _, c := range keys {
		seen[c.key.KeyID]++
		if c.key.Version != 1 || c.key.Metadata.KeyID != c.key.KeyID || c.key.Metadata.Type != c.typ {
			t.Errorf("CreateDataKey(%s) acknowledged %s v%d with metadata %s %s", c.typ, c.key.KeyID, c.key.Version, c.key.Metadata.KeyID, c.key.Metadata.Type)
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("key id %s acknowledged %d times", id, n)
		}
	}
}

// checkKeysOpen rewraps every acknowledged key through cust (B) to the
// fake sidecar and unwraps it there (e2e.CheckReleases).
func checkKeysOpen(t *testing.T, cust *client.KMS, side *kmstest.FakeSidecar, keys []call) {
	t.Helper()
	acked := make([]e2e.AckedKey, len(keys))
	for i, c := range keys {
		acked[i] = e2e.AckedKey{DataKey: *c.key, Type: c.typ}
	}
	e2e.CheckReleases(t, side, func(ekbs [][]byte) (*api.WrappedKeys, error) {
		return cust.Rewrap(t.Context(), side.Enrollment.WrappingCertPEM, ekbs)
	}, acked)
}

// checkGrantsLoadOnce presents every acknowledged grant to the KMS's
// POST /v1/keys/load through B as the sidecar: the first use releases the
// granted key, the same request again is answered again, a new request
// with the grant is 409 already_used.
func checkGrantsLoadOnce(t *testing.T, sideB *kmstest.Client, side *kmstest.FakeSidecar, grants []call) {
	t.Helper()
	seen := map[string]bool{}
	rcpt := api.PublicKey{KEM: side.KEM, PublicKey: side.KEMKey.PublicKey().Bytes()}
	for _, c := range grants {
		if seen[c.grant] {
			t.Errorf("grant acknowledged twice (worker %d call %d)", c.worker, c.n)
			continue
		}
		seen[c.grant] = true
		req := api.LoadRequest{Grant: c.grant, EKBs: [][]byte{c.grantFor.EKB}, Recipient: rcpt}
		var got api.WrappedKeys
		if err := sideB.Do("POST", "/v1/keys/load", req, &got); err != nil {
			t.Errorf("first use of the grant of worker %d call %d through B: %v", c.worker, c.n, err)
			continue
		}
		if len(got.Keys) != 1 || got.Keys[0].KeyID != c.grantFor.KeyID {
			t.Errorf("the grant of worker %d call %d loaded %+v, want key %s", c.worker, c.n, got.Keys, c.grantFor.KeyID)
			continue
		}
		for _, d := range side.Unwrap(t, &got) {
			d.Wipe()
		}
		// The same request again is answered again (a retry after a lost
		// answer); a new request (another recipient key) is refused.
		if err := sideB.Do("POST", "/v1/keys/load", req, nil); err != nil {
			t.Errorf("the same request with the grant of worker %d call %d again: %v", c.worker, c.n, err)
		}
		_, req.Recipient = kmstest.NewRecipient(t)
		err := sideB.Do("POST", "/v1/keys/load", req, nil)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Code != api.CodeAlreadyUsed {
			t.Errorf("second use of the grant of worker %d call %d = %v, want 409 %s", c.worker, c.n, err, api.CodeAlreadyUsed)
		}
	}
}

// checkDatabase checks the keys table: every acknowledged key is there,
// and the only others are keys whose creation failed in flight (A may have
// committed a key and died before answering), at most one per failure.
func checkDatabase(t *testing.T, dsn, tenant string, keys []call, failedCreates int) {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT key_id FROM keys WHERE tenant = $1`, tenant)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	inDB := map[string]bool{}
	for _, id := range stored {
		inDB[id] = true
	}
	acked := map[string]bool{}
	for _, c := range keys {
		acked[c.key.KeyID] = true
		if !inDB[c.key.KeyID] {
			t.Errorf("acknowledged key %s is not in the database", c.key.KeyID)
		}
	}
	orphans := 0
	for _, id := range stored {
		if !acked[id] {
			orphans++
		}
	}
	t.Logf("database: %d keys, %d acknowledged, %d unacknowledged, %d creations failed", len(stored), len(acked), orphans, failedCreates)
	if orphans > failedCreates {
		t.Errorf("the database holds %d keys nobody was told about, but only %d creations failed: a call made more than one key", orphans, failedCreates)
	}
}

// checkAudit reads the whole audit log through B and verifies its hash
// chain in PostgreSQL. Every acknowledged key has exactly one
// datakey.create record; grant creations and grant loads are counted.
func checkAudit(t *testing.T, admin *client.KMS, dsn string, st *stream) {
	t.Helper()
	ctx := t.Context()
	creates := map[string]int{}
	var grantsOK, loadsOK, loadsUsed int
	var lastSeq int64
	for _, r := range e2e.AuditLog(t, admin) {
		switch {
		case r.Action == "datakey.create" && r.Outcome == "ok":
			creates[r.KeyID]++
		case r.Action == "grant.create" && r.Outcome == "ok":
			grantsOK++
		case r.Action == "keys.load" && r.Outcome == "ok":
			loadsOK++
		case r.Action == "keys.load" && r.Code == string(api.CodeAlreadyUsed):
			loadsUsed++
		}
		lastSeq = r.Seq
	}
	keys, grants := st.keys(), st.grants()
	for _, c := range keys {
		if n := creates[c.key.KeyID]; n != 1 {
			t.Errorf("acknowledged key %s has %d datakey.create records, want 1", c.key.KeyID, n)
		}
	}
	for id, n := range creates {
		if n > 1 {
			t.Errorf("key %s has %d datakey.create records", id, n)
		}
	}
	if len(creates) > len(keys)+st.failed("datakey") {
		t.Errorf("%d keys created per the audit log, want at most %d acknowledged + %d failed", len(creates), len(keys), st.failed("datakey"))
	}
	if grantsOK < len(grants) || grantsOK > len(grants)+st.failed("grant") {
		t.Errorf("%d grant.create records, want %d acknowledged grants plus at most %d failed", grantsOK, len(grants), st.failed("grant"))
	}
	// Each grant: its load, the same request again, a new request refused.
	if loadsOK != 2*len(grants) || loadsUsed != len(grants) {
		t.Errorf("keys.load records: %d ok and %d already_used, want %d and %d", loadsOK, loadsUsed, 2*len(grants), len(grants))
	}

	db, err := sqlstore.OpenPostgres(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ak, err := admin.AuditKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key, err := kcrypto.ParseLogVerifyKeyPEM([]byte(ak.PublicKeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	res, err := audit.Verify(ctx, db, key)
	n := res.Records
	if err != nil {
		t.Fatalf("audit.Verify on PostgreSQL after %d records: %v", n, err)
	}
	if n < lastSeq {
		t.Errorf("audit.Verify checked %d records, but GET /v1/audit showed record %d", n, lastSeq)
	}
	t.Logf("audit: %d records verified; %d key creations, %d grants, %d loads", n, len(creates), grantsOK, loadsOK)
}
