// Package kms is the central trust anchor of dcaas: tenants and their master
// keys, data keys and EKBs, the certificate authority's issuance, sidecar
// enrollment, key release (rewrap), and the audit log, served as the REST API
// of docs/api.md.
//
// Start with New (a Config of already-opened dependencies) and Handler.
// Open (bootstrap.go) starts a KMS over a store.Store and a seal.Sealer
// with its CA, audit key and TLS certificate; which store and seal, and the
// data dir's own files, are chosen where the process is wired
// (internal/datadir, cmd/dcaas): this package imports no implementation.
package kms

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/audit"
	"github.com/dcaas/dcaas/internal/ca"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/httpapi"
	"github.com/dcaas/dcaas/internal/ops"
	"github.com/dcaas/dcaas/internal/seal"
	"github.com/dcaas/dcaas/internal/store"
)

// Config holds a KMS's dependencies and limits. Zero durations and limits
// mean the defaults noted on each field.
type Config struct {
	Store  store.Store
	Sealer seal.Sealer
	CA     *ca.CA
	Logger *slog.Logger     // default: slog.Default()
	Now    func() time.Time // default: time.Now
	// Reg receives the KMS's metrics (default: a private registry). When
	// it is also a prometheus.Gatherer, as a *prometheus.Registry is, GET
	// /metrics serves what it gathers to admin callers.
	Reg prometheus.Registerer
	// AuditKey signs the audit log (see internal/audit); Open loads it
	// from the store, sealed. The KMS uses it but does not own it.
	// AuditAnchor is the log's first key, which verifiers pin (zero: the
	// AuditKey's public half, a log never rotated).
	AuditKey    *kcrypto.LogKey
	AuditAnchor kcrypto.LogVerifyKey

	// Certificate lifetimes (AppCertTTL, InstanceCertTTL, ServerCertTTL):
	// zero means the default; otherwise each must lie between MinCertTTL
	// and MaxCertTTL (New refuses others).
	AppCertTTL      time.Duration // custodian/pipeline/admin certificates; default 365 days
	InstanceCertTTL time.Duration // sidecar identity and wrapping certificates; default 30 days
	ServerCertTTL   time.Duration // the KMS's own TLS server certificate; default 90 days, renewed at two thirds of it
	TokenTTL        time.Duration // enrollment tokens without ttl_seconds; default 10 minutes
	MaxTokenTTL     time.Duration // longest enrollment token; default 24 hours
	ChallengeTTL    time.Duration // enrollment challenge nonces; default 5 minutes
	BodyLimit       int64         // ordinary requests; default 1 MiB
	BatchBodyLimit  int64         // batch requests (rewrap); default 32 MiB
	MaxBatch        int           // keys per batch request; default 10,000
	// RotationCheckInterval is how often the KMS looks for keys whose
	// rotation is due (period or usage) and rotates those whose current
	// EKB it holds. Default 1 minute.
	RotationCheckInterval time.Duration
	// LapsedInstanceRetention is how long an instance whose identity
	// certificate expired stays listed before it is deleted with its
	// release records (janitor.go). Default 7 days.
	LapsedInstanceRetention time.Duration
	// JanitorInterval is how often expired single-use secrets, old
	// approvals and ceremonies, and lapsed instances are deleted. Default
	// 10 minutes.
	JanitorInterval time.Duration
	// PollFlushInterval is how often the times and key counts of the
	// sidecars' quiet revocation polls (polls.go) are stored. Default 30 s.
	PollFlushInterval time.Duration
	// RefuseSeedKDFv1 refuses derivations with SeedKDF v1 (the tenant-wide
	// derivation of data made before v2, derivable by any custodian of the
	// tenant that knows the seed): set it once that data is re-encrypted
	// under v2 keys.
	RefuseSeedKDFv1 bool
	// MinRotationPeriod is the shortest rotation_period_seconds a key may
	// ask for (default an hour). Lower it only to compress time in tests.
	MinRotationPeriod time.Duration
	// WrapTTL is how long a sidecar accepts keys the KMS sealed to it
	// (rewrap, load, derive answers): a saved answer cannot be imported
	// after it. Default 10 minutes.
	WrapTTL time.Duration
	// CertCheckInterval is how often a KMS opened with Open re-reads the
	// CA state from the store (so replicas converge on a CA rotation) and
	// checks whether its TLS server certificate is due for renewal;
	// default 30 s, and at most a twentieth of ServerCertTTL.
	CertCheckInterval time.Duration
	// CertTicks, when set, drives those checks instead of a ticker of
	// CertCheckInterval (tests).
	CertTicks <-chan time.Time
	// MaxEncryptions is the safe number of encryptions per AES-GCM key
	// version, summed over the central path and sidecar reports (default
	// ops.DefaultMaxEncryptions, 2^32: NIST SP 800-38D §8.3). Sidecars
	// should use the same value (sidecar.Config.MaxEncryptions).
	MaxEncryptions int64
	// Attestation enables TPM attestation enrollment (nil: tokens only).
	Attestation *AttestationPolicy
	// AuditCheckpointInterval is how often a KMS opened with Open signs a
	// checkpoint of the audit log's head, when the head moved (default 5
	// minutes); it also signs one when it closes. AuditCheckpointTicks,
	// when set, drives the checkpoints instead (tests).
	AuditCheckpointInterval time.Duration
	AuditCheckpointTicks    <-chan time.Time
	// AuditRetention is how long the KMS keeps every audit record: a prune
	// (POST /v1/audit/prune) may delete only records older than this.
	// Default 90 days (PCI DSS 10.5.1: three months immediately available,
	// the rest of a year in an archive).
	AuditRetention time.Duration
	// HealthCheckInterval is how often a KMS opened with Open pings its
	// store in the background, logging when it goes away and comes back
	// (default 10 s); SealCheckInterval how long /readyz reuses the
	// result of its seal check (default 30 s). See health.go.
	HealthCheckInterval time.Duration
	SealCheckInterval   time.Duration
	// NoRequestLog turns off the one log line per request (info level).
	NoRequestLog bool
	// ApprovalTTL is how long a quorum approval request stays open: it
	// must be approved and executed before (default 24 hours).
	ApprovalTTL time.Duration
	// ComponentsTTL is how long a key being entered in components
	// (POST /v1/key-components) waits for its components, and then for
	// its owner to read the key, before it is gone. Default 24 hours.
	ComponentsTTL time.Duration

	// soleWriter: Open claimed Store for this process (store.SoleWriter),
	// so the KMS may remember what it read (readcache.go).
	soleWriter bool
}

// Bounds of the certificate lifetimes in Config.
const (
	MinCertTTL = time.Second // tests compress a lifetime into seconds
	MaxCertTTL = caValidity  // the CA's own lifetime, which clips every certificate anyway
)

// validate refuses what setDefaults would not make sensible.
func (c *Config) validate() error {
	for _, f := range []struct {
		name string
		ttl  time.Duration
	}{{"AppCertTTL", c.AppCertTTL}, {"InstanceCertTTL", c.InstanceCertTTL}, {"ServerCertTTL", c.ServerCertTTL}} {
		if f.ttl != 0 && (f.ttl < MinCertTTL || f.ttl > MaxCertTTL) {
			return fmt.Errorf("kms: %s %v: a certificate lifetime must be between %v and %v", f.name, f.ttl, MinCertTTL, MaxCertTTL)
		}
	}
	if c.CertCheckInterval < 0 {
		return fmt.Errorf("kms: CertCheckInterval %v is negative", c.CertCheckInterval)
	}
	if c.AuditCheckpointInterval < 0 {
		return fmt.Errorf("kms: AuditCheckpointInterval %v is negative", c.AuditCheckpointInterval)
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Reg == nil {
		c.Reg = prometheus.NewRegistry()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.AppCertTTL, 365*24*time.Hour)
	def(&c.InstanceCertTTL, 30*24*time.Hour)
	def(&c.ServerCertTTL, 90*24*time.Hour)
	def(&c.CertCheckInterval, 30*time.Second)
	c.CertCheckInterval = min(c.CertCheckInterval, c.ServerCertTTL/20)
	def(&c.TokenTTL, 10*time.Minute)
	def(&c.MaxTokenTTL, 24*time.Hour)
	def(&c.ComponentsTTL, 24*time.Hour)
	def(&c.ChallengeTTL, 5*time.Minute)
	def(&c.WrapTTL, 10*time.Minute)
	def(&c.RotationCheckInterval, time.Minute)
	def(&c.PollFlushInterval, 30*time.Second)
	def(&c.LapsedInstanceRetention, 7*24*time.Hour)
	def(&c.JanitorInterval, 10*time.Minute)
	def(&c.MinRotationPeriod, time.Hour)
	def(&c.AuditCheckpointInterval, 5*time.Minute)
	def(&c.AuditRetention, 90*24*time.Hour)
	def(&c.HealthCheckInterval, 10*time.Second)
	def(&c.SealCheckInterval, 30*time.Second)
	def(&c.ApprovalTTL, 24*time.Hour)
	if c.BodyLimit <= 0 {
		c.BodyLimit = httpapi.DefaultBodyLimit
	}
	if c.BatchBodyLimit <= 0 {
		c.BatchBodyLimit = 32 << 20
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 10000
	}
	if c.MaxEncryptions <= 0 {
		c.MaxEncryptions = ops.DefaultMaxEncryptions
	}
}

// KMS serves the central API. It is safe for concurrent use.
type KMS struct {
	cfg Config
	// st is what handlers read; they write only through call.commit (or
	// call.fail), which stores their changes with their audit record in
	// one transaction. db is the whole store, for the background jobs
	// and the audit records of calls that change nothing.
	st     reader
	db     store.Store
	sealer seal.Sealer
	log    *slog.Logger
	audit  *audit.Log
	router *httpapi.Router
	attest atomic.Pointer[attestor] // the attestation policy in force (nil: off); see attestation.go
	polls  pollNotes                // quiet revocation polls not stored yet (polls.go)
	mx     *kmsMetrics
	health *health
	akeys  auditKeys // the audit keys: the log's first, rotations (auditrotate.go)
	// pruneKick wakes the janitor to delete the records an audit prune
	// left below the log's start (auditprune.go).
	pruneKick chan struct{}

	tmks tmkCache // unsealed master keys for a bounded time (tmkcache.go), wiped on Close
	ekbs ekbCache // EKBs the central path opened (ekbcache.go), wiped on Close
	// reads remembers identities and registry entries for a short time,
	// forgotten at every change this KMS commits (readcache.go).
	reads readCache

	caMu   sync.Mutex             // serializes CA refreshes and rotation steps
	caView atomic.Pointer[caView] // the CA in force; see castate.go
	caFile string                 // where the trust bundle is written on a change ("" = nowhere)
	server serverCerts            // the TLS server certificate (Open); see servercert.go

	checkpointFile string // where the latest audit checkpoint is written ("" = nowhere); see auditkey.go

	shareSeal atomic.Pointer[api.SealStatus] // set when the root key is split into shares (sealed.go)
}

// New builds a KMS over opened dependencies. The KMS does not own them:
// the caller closes the store and sealer after Close.
func New(cfg Config) (*KMS, error) {
	if cfg.Store == nil || cfg.Sealer == nil || cfg.CA == nil || cfg.AuditKey == nil {
		return nil, errors.New("kms: Config needs Store, Sealer, CA and AuditKey")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	k := &KMS{
		cfg:    cfg,
		st:     cfg.Store,
		db:     cfg.Store,
		sealer: cfg.Sealer,
		log:    cfg.Logger,
		audit:  audit.New(cfg.AuditKey, cfg.Now),
		health: newHealth(),

		pruneKick: make(chan struct{}, 1),
	}
	k.reads.on = cfg.soleWriter
	k.akeys.anchor = cfg.AuditAnchor
	if k.akeys.anchor.IsZero() {
		k.akeys.anchor = cfg.AuditKey.Public()
	}
	att, err := newAttestor(cfg.Attestation)
	if err != nil {
		return nil, err
	}
	k.attest.Store(att)
	k.mx = newKMSMetrics(cfg.Reg)
	k.caView.Store(&caView{state: initialCAState, ca: cfg.CA})
	k.mx.publishCA(cfg.CA)
	k.router = httpapi.NewRouter(k.log, httpapi.NewMetrics(cfg.Reg, "dcaas_kms"))
	if !cfg.NoRequestLog {
		k.router.LogRequests(nil) // the TLS client certificate's subject
	}
	k.routes()
	return k, nil
}

// Handler is the KMS's HTTP handler. It expects to sit behind a TLS server
// whose config requests (but does not require) client certificates; see
// TLSConfig.
func (k *KMS) Handler() http.Handler { return k.router }

// Close wipes the cached master keys and opened EKBs.
func (k *KMS) Close() error {
	k.ekbs.wipe()
	k.tmks.wipe()
	k.akeys.wipe()
	return nil
}

func (k *KMS) now() time.Time { return k.cfg.Now().UTC() }

func (k *KMS) routes() {
	k.healthRoutes()
	k.sysRoutes()
	admin := []api.Role{api.RoleAdmin}
	cust := []api.Role{api.RoleCustodian}
	k.handle("POST /v1/tenants", "tenant.create", admin, 0, k.createTenant)
	k.handle("POST /v1/tenants/{tenant}/master-key/rotate", "tenant.rotate_master_key", admin, 0, k.rotateMasterKey)
	k.handle("POST /v1/tenants/{tenant}/apps", "app.create", admin, 0, k.createApp)
	k.handle("POST /v1/datakeys", "datakey.create", cust, 0, k.createDataKey)
	k.handle("POST /v1/datakeys/{key_id}/versions", "datakey.new_version", cust, 0, k.newKeyVersion)
	k.handle("POST /v1/datakeys/{key_id}/rotate", "datakey.rotate", []api.Role{api.RoleCustodian, api.RoleAdmin}, 0, k.rotateDataKey)
	k.handle("POST /v1/enrollment/tokens", "enrollment.token", []api.Role{api.RolePipeline, api.RoleCustodian, api.RoleAdmin}, 0, k.createToken)
	k.handle("POST /v1/enrollment/challenge", "enrollment.challenge", nil, 0, k.createChallenge)
	k.handle("POST /v1/enrollment", "enrollment.enroll", nil, 0, k.enroll)
	k.handle("GET /v1/instances", "instance.list", []api.Role{api.RoleAdmin, api.RoleCustodian}, 0, k.listInstances)
	k.handle("DELETE /v1/instances/{id}", "instance.revoke", []api.Role{api.RoleAdmin, api.RoleCustodian}, 0, k.revokeInstance)
	k.handle("POST /v1/instances/revoke-platform", "instance.revoke_platform", []api.Role{api.RoleAdmin}, 0, k.revokePlatform)
	k.handle("POST /v1/keys/rewrap", "keys.rewrap", cust, k.cfg.BatchBodyLimit, k.rewrap)
	k.handle("GET /v1/audit", "audit.read", admin, 0, k.readAudit)
	k.auditRoutes()
	k.handle("DELETE /v1/datakeys/{key_id}", "datakey.disable", []api.Role{api.RoleCustodian, api.RoleAdmin}, 0, k.disableKey)
	k.handle("GET /v1/datakeys/{key_id}", "datakey.read", []api.Role{api.RoleCustodian, api.RoleAdmin}, 0, k.getDataKey)
	k.handle("POST /v1/datakeys/{key_id}/min-decryption-version", "datakey.min_decryption_version", []api.Role{api.RoleCustodian, api.RoleAdmin}, 0, k.setMinDecryptionVersion)
	k.handle("POST /v1/grants", "grant.create", cust, 0, k.createGrant)
	k.handle("GET /v1/tenants/{tenant}/import-parameters", "datakey.import_parameters", cust, 0, k.importParameters)
	k.handle("POST /v1/datakeys/import", "datakey.import", cust, 0, k.importKey)
	k.handle("POST /v1/datakeys/export", "datakey.export", cust, 0, k.exportKey)
	side := []api.Role{api.RoleSidecar}
	k.handle("POST /v1/keys/load", "keys.load", side, k.cfg.BatchBodyLimit, k.loadKeys)
	k.handle("POST /v1/keys/derive", "keys.derive", side, k.cfg.BatchBodyLimit, k.deriveKeys)
	k.handle("GET /v1/revocations", "revocations.read", side, 0, k.revocations)
	k.handle("POST /v1/keys/refresh", "keys.refresh", side, k.cfg.BatchBodyLimit, k.refreshKeys)
	k.handle("POST /v1/instances/self/renew", "instance.renew", side, 0, k.renewInstance)
	k.handle("DELETE /v1/instances/self", "instance.retire", side, 0, k.retireInstance)
	k.handle("POST /v1/usage", "usage.report", side, k.cfg.BatchBodyLimit, k.usageReport)
	k.appCertRoutes()
	k.caRoutes()
	k.centralRoutes()
	k.metricsRoute()
	k.adminRoutes()
	k.handle("POST /v1/instances/self/attest", "instance.attest", side, 0, k.reattest)
	k.approvalRoutes()
	k.listingRoutes()
	k.componentRoutes()
}

// ClientCAs returns the pool the TLS server verifies client certificates
// against: every CA certificate the KMS trusts now.
func (k *KMS) ClientCAs() *x509.CertPool { return k.authority().Pool() }

// ctxKey is unexported so no other package can collide.
type ctxKey struct{}

// caller is the authenticated identity of a request.
type caller struct {
	DN       string
	Role     api.Role
	Tenant   string
	Name     string          // app name, or instance id for sidecars
	Instance *store.Instance // sidecars only
}

// call is one request in flight: who, and what the audit record should say.
type call struct {
	k      *KMS
	w      http.ResponseWriter
	r      *http.Request
	limit  int64
	action string        // for the audit record
	caller *caller       // nil for anonymous routes
	tenant string        // for the audit record
	keyID  string        // for the audit record
	usage  *centralUsage // central operations: what the request encrypted

	recorded bool // the call's audit record is stored (by commit or fail)
	// quiet: a call that succeeds needs no audit record of its own (a
	// revocation poll that delivered nothing: polls.go). A failure is
	// recorded all the same.
	quiet bool
	// readsKept: what the call stores touches nothing the read cache
	// holds (a release's records and grant use; a central operation's
	// usage, which noteUsage adds), so its commit does not empty it
	// (readcache.go).
	readsKept bool
}

// decode reads the request body strictly into v.
func (c *call) decode(v any) error { return httpapi.Decode(c.w, c.r, c.limit, v) }

// cursor reads the query parameter name, a non-negative record number
// from which a page goes on; 0 when it is absent. bad is the refusal of
// any other value.
func (c *call) cursor(name, bad string) (int64, error) {
	s := c.r.URL.Query().Get(name)
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, api.Errorf(api.CodeInvalidArgument, "%s", bad)
	}
	return v, nil
}

type handlerFunc func(ctx context.Context, c *call) (any, error)

// errUnaudited answers a call whose audit record cannot be stored: every
// change commits with its record (call.commit), so nothing changed.
var errUnaudited = api.Errorf(api.CodeUnavailable, "The audit log cannot be written, so the request was refused and nothing was changed; retry later.")

// handle registers h behind authentication (roles nil = anyone), a body
// limit (0 = default), error rendering and auditing. A handler that
// changes anything does so through c.commit (or c.fail), which stores the
// change and the call's audit record in one transaction; for the other
// calls handle appends the record after h returns. Either way a call is
// answered only once its record is stored.
func (k *KMS) handle(pattern, action string, roles []api.Role, limit int64, h handlerFunc) {
	if limit == 0 {
		limit = k.cfg.BodyLimit
	}
	k.router.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		c := &call{k: k, w: w, r: r, limit: limit, action: action}
		resp, err := func() (any, error) {
			if roles != nil {
				who, err := k.authenticate(ctx, r)
				if err != nil {
					return nil, err
				}
				c.caller = who
				c.tenant = who.Tenant
				if !hasRole(roles, who.Role) {
					return nil, api.Errorf(api.CodeForbidden, "The %s role may not call %s %s.", who.Role, r.Method, r.URL.Path)
				}
			} else if who, err := k.authenticate(ctx, r); err == nil {
				c.caller = who // optional identity, for the audit record
			}
			return h(ctx, c)
		}()
		if !c.recorded && !(c.quiet && err == nil) {
			if seq, aerr := k.record(ctx, k.db, c, err); aerr == nil {
				k.audit.Stored(seq)
			} else {
				k.log.Error("audit append failed", "action", action, "err", aerr)
				if err == nil {
					// Fail closed: a call that cannot be audited is not
					// answered. It changed nothing: changes commit with
					// their record.
					err, resp = errUnaudited, nil
				}
			}
		}
		if err != nil {
			k.observeCall(c, err)
			httpapi.WriteError(w, k.log, r, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, resp)
	})
}

// commit runs fn and appends the call's audit record (outcome ok) in one
// store transaction: what fn stores through tx commits with its record,
// or, if fn or the append fails, neither is stored. fn's error is
// returned as it is (so fn maps store errors to API errors itself); a
// failure of the append is errUnaudited, other failures of the
// transaction are mapped with storeErr. A call commits at most once
// (programming error otherwise), after its last check: fn must use only
// tx, not k.st, and call nothing slow (the transaction holds the database
// write lock on SQLite and the audit lock at its end).
func (c *call) commit(ctx context.Context, fn func(tx store.Tx) error) error {
	return c.store(ctx, fn, nil, nil)
}

// commitChecked is commit with a last check: check runs in the same
// transaction after the call's audit record is appended, and if it fails
// nothing is stored and its error is returned. The append waits for the
// store's audit lock, which every transaction holding an audit record
// keeps until it ends; and every change the KMS makes commits with its
// record. So check sees every change committed before this call's
// record, and any change it does not see commits after this call's
// changes — on PostgreSQL too, where fn's reads see only what was
// committed when each of them ran (READ COMMITTED).
func (c *call) commitChecked(ctx context.Context, fn, check func(tx store.Tx) error) error {
	return c.store(ctx, fn, check, nil)
}

// fail is commit for a call that fails but must keep a change, such as
// the single-use secret it consumed: it stores what fn does with the
// call's audit record of failure cause, in one transaction, and returns
// cause. If that transaction fails, nothing is stored (handle then
// records the failure on its own).
func (c *call) fail(ctx context.Context, fn func(tx store.Tx) error, cause error) error {
	if err := c.store(ctx, fn, nil, cause); err != nil {
		c.k.log.Warn("a failed call's change was not stored", "action", c.action, "err", err)
	}
	return cause
}

func (c *call) store(ctx context.Context, fn, check func(tx store.Tx) error, outcome error) error {
	if c.recorded {
		panic("kms: " + c.action + " stored its changes twice")
	}
	var auditErr error
	var seq int64
	err := c.k.db.InTx(ctx, func(tx store.Tx) error {
		if fn != nil {
			if err := fn(tx); err != nil {
				return err
			}
		}
		if seq, auditErr = c.k.record(ctx, tx, c, outcome); auditErr != nil {
			return auditErr
		}
		if check != nil {
			return check(tx)
		}
		return nil
	})
	if fn != nil && !c.readsKept {
		// Whatever fn changed (even if the outcome is unknown) is read
		// afresh from now on.
		c.k.reads.changed()
	}
	switch {
	case err == nil:
		c.recorded = true
		c.k.audit.Stored(seq)
		return nil
	case auditErr != nil:
		c.k.log.Error("audit append failed", "action", c.action, "err", auditErr)
		return &wrapped{errUnaudited, err}
	case errors.As(err, new(*api.Error)):
		return err
	}
	return storeErr(err, "transaction")
}

func hasRole(roles []api.Role, r api.Role) bool {
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}

// record appends the audit record of call c with outcome err to to: the
// store, or the transaction of the call's change.
// It returns the record's seq; once it is stored, the caller tells
// k.audit (Log.Stored).
func (k *KMS) record(ctx context.Context, to audit.Appender, c *call, err error) (int64, error) {
	ev := audit.Event{Action: c.action, Tenant: c.tenant, KeyID: c.keyID, Outcome: "ok"}
	if c.caller != nil {
		ev.Caller, ev.Role = c.caller.DN, string(c.caller.Role)
	}
	if err != nil {
		ev.Outcome, ev.Code = "error", string(api.CodeOf(err))
		if code := api.CodeOf(err); code.Status() == http.StatusUnauthorized || code.Status() == http.StatusForbidden {
			ev.Outcome = "denied"
		}
	}
	// The audit write must survive a client hanging up on the request.
	r, aerr := k.audit.Append(context.WithoutCancel(ctx), to, ev)
	return r.Seq, aerr
}

// Routes lists the KMS's method+path patterns (for the OpenAPI spec test).
func (k *KMS) Routes() []string { return k.router.Patterns() }
