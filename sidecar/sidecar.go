// Package sidecar is the dcaas crypto sidecar, embeddable in a custodian's
// own process ("library mode") or run as `dcaas sidecar serve`.
//
// A Sidecar is bound to exactly one custodian. It enrolls with the KMS
// (its keys are generated inside its enclave; the KMS certifies them and
// registers the instance) — at New when given a token or TPM attestation,
// or later through Enroll (POST /v1/enroll) when it starts without one —
// after which the custodian loads data keys into it, typically by asking
// the KMS to rewrap its EKBs to the sidecar's wrapping certificate and
// importing the result, and performs every operation locally: over a Unix
// socket or mutual-TLS listener (Serve), or as Go calls (Encrypt, Decrypt,
// Sign, …). Loaded keys keep working while the KMS is unreachable.
//
// In the background the sidecar polls the KMS (any of several replicas):
// it evicts revoked keys and retired versions for good, stops serving if
// its instance is revoked, renews its certificates at about two thirds of
// their lifetime, fetches new versions of the keys it holds when they are
// rotated, renews leases and reports its encryption counts.
//
// Start with New and Config; see Example for a complete library-mode run.
package sidecar

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/enclave"
	"github.com/dcaas/dcaas/internal/enclave/software"
	"github.com/dcaas/dcaas/internal/httpapi"
	"github.com/dcaas/dcaas/internal/keyring"
	"github.com/dcaas/dcaas/internal/ops"
	"github.com/dcaas/dcaas/internal/secret"
)

// Secret returns b as the secret type of Config.EnrollToken and of the
// enrollment token and grant arguments (Enroll, LoadWithGrant, Derive),
// which never prints. It takes ownership of b: the caller must not use b
// afterwards, and wipes the result (Wipe) when done.
func Secret(b []byte) *secret.Bytes { return secret.New(b) }

// Config configures a sidecar. The zero value of each optional field means
// the default noted on it.
type Config struct {
	// KMSURL is the KMS base URL, e.g. "https://kms.internal:8443". Give
	// it or KMSURLs.
	KMSURL string
	// KMSURLs are several KMS replicas (or load balancers); every call to
	// the KMS fails over from one to the next.
	KMSURLs []string
	// CAPEM is the KMS CA certificate (PEM): the sidecar trusts the KMS, and
	// TLS callers, through it until the KMS hands it its trust bundle (at
	// enrollment and renewal, and read again at every sixth revocation
	// poll); from then on it verifies the KMS and callers against that
	// bundle alone, so a CA that a rotation retired, or any CA the bundle
	// does not hold, stops being trusted without a restart.
	CAPEM []byte
	// DataDir keeps the enrollment (certificates, never private keys in
	// clear) and the local audit log. Required.
	DataDir string
	// EnrollToken is the one-time enrollment secret (secret zero from a
	// pipeline, or a token minted by the custodian); Secret makes one from
	// bytes. The caller keeps it (and wipes it after New); the sidecar
	// keeps no reference and never stores it. Without it (and without
	// Attest), New returns a sidecar that waits for Enroll — unless a
	// persistent enclave (tpm) is already enrolled.
	EnrollToken *secret.Bytes
	// Enclave is where keys live (default: a new software enclave, which
	// the sidecar then owns and closes).
	Enclave enclave.Enclave
	// Attest enrolls with TPM attestation evidence instead of a token; the
	// Enclave must implement enclave.Attester.
	Attest bool
	// EKCert (DER or PEM) is the TPM's EK certificate: with it, attested
	// enrollment asks the KMS to trust the attestation key through the
	// EK's manufacturer chain and credential activation, not its
	// allow-list. EKCertFromTPM reads it from the TPM's NV index
	// 0x01C0000A instead.
	EKCert        []byte
	EKCertFromTPM bool
	// ReattestInterval is how often a TPM sidecar sends the KMS a fresh
	// quote (and after each certificate renewal), so keys whose policy
	// bounds the attestation's age stay releasable to it. Default
	// DefaultReattestInterval with Attest; negative turns it off.
	ReattestInterval time.Duration
	// KEM is the key-transport KEM of the wrapping certificate (default:
	// x25519, or p256 in FIPS mode or with a TPM enclave).
	KEM api.KEM
	// AllowUIDs are the Unix users that may call over the socket (default:
	// this process's uid).
	AllowUIDs []int
	// LeaseTTL is the lease of imported keys (default 24 h, never past a
	// key's expiry).
	LeaseTTL time.Duration
	// HealthInterval is how often the sidecar polls the KMS's revocation
	// feed, renewing leases and certificates and fetching rotated keys
	// when it succeeds, and reporting its encryption counts every sixth
	// time (default 10 s). A revoked instance stops serving within one
	// interval.
	HealthInterval time.Duration
	// AuditMaxBytes is the size past which the local audit log
	// (DATA-DIR/audit.jsonl) is rotated (default 64 MiB), AuditKeep how many
	// rotated files are kept (audit.jsonl.1 the newest; default 4): a
	// caller refused in a loop fills at most (AuditKeep+1) × AuditMaxBytes.
	AuditMaxBytes int64
	AuditKeep     int
	// MaxEncryptions is the safe number of encryptions per AES-GCM key
	// version (default ops.DefaultMaxEncryptions, 2^32, NIST SP 800-38D
	// §8.3). The sidecar counts on from the KMS's count when a key is
	// loaded and refuses with usage_limit_exceeded past it; set the KMS's
	// kms.Config.MaxEncryptions to the same value.
	MaxEncryptions int64
	// AcceptLegacyWrap lets ImportKeys take rewrap answers of the old
	// wrapped-key format (version 1), which carry no issue time and so can
	// be replayed until the wrapping certificate expires. Off by default;
	// for a KMS that has not been upgraded yet.
	AcceptLegacyWrap bool
	// RetireOnClose makes Close revoke this instance at the KMS (after its
	// last usage report): for a sidecar whose identity cannot outlive the
	// process (the software enclave), so a deleted pod or a stopped unit
	// leaves no live instance registered. Leave it off for a TPM enclave
	// that reuses its enrollment across restarts.
	RetireOnClose bool
	// ShutdownTimeout is how long Serve, once its ctx ends, waits for the
	// requests in flight before cutting them (default 10 s). Serve stops
	// accepting at once and removes a socket ListenUnix made.
	ShutdownTimeout time.Duration
	// NoRequestLog turns off the one log line per request (info level:
	// method, route, status, caller, duration, request id) that the
	// sidecar writes by default; `sidecar serve --request-log=false`.
	NoRequestLog bool
	// Logger (default slog.Default()), Registerer for metrics (default a
	// private registry), Now (default time.Now).
	Logger *slog.Logger
	Reg    prometheus.Registerer
	Now    func() time.Time
}

// urls returns the configured KMS base URLs.
func (c *Config) urls() []string {
	var out []string
	for _, u := range append([]string{c.KMSURL}, c.KMSURLs...) {
		if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// Sidecar is a running sidecar, enrolled or waiting to be. Its methods are
// safe for concurrent use.
type Sidecar struct {
	cfg     Config
	log     *slog.Logger
	enc     enclave.Enclave
	ownsEnc bool
	ring    *keyring.Ring
	engine  *ops.Engine
	caPool  *x509.CertPool // the configured CA; see identity.pool
	// configCA is the SHA-256 (hex) of the configured CA PEM (trustFor).
	configCA string
	audit    *localAudit
	metrics  *metrics
	router   *httpapi.Router
	names    keyNames // transit names of loaded keys (keynames.go)

	id atomic.Pointer[identity] // nil until enrolled
	// revokedCerts are the custodian's client certificates the KMS lists as
	// revoked (revokedcerts.go); nil until a poll or a stored list says.
	revokedCerts atomic.Pointer[revokedSet]
	previous     string     // instance id of this data dir before a restart
	enrollMu     sync.Mutex // one enrollment at a time
	revoked      atomic.Bool
	replays      replayCache
	cursor       string // revocation feed cursor (background goroutine only)
	polls        int    // successful revocation polls (background goroutine only); see followTrust
	refresh      pendingRefresh
	reachable    atomic.Bool
	lastCtc      atomic.Int64
	stop         chan struct{}
	wg           sync.WaitGroup
	closeOnce    sync.Once

	attested   atomic.Pointer[identity] // the identity of the last re-attestation (attest.go)
	attestedAt atomic.Int64             // its time, Unix nanoseconds
}

// New opens a sidecar: it enrolls with cfg.EnrollToken or TPM attestation,
// or re-opens a persistent enclave's enrollment; with neither it returns a
// sidecar that serves only its status until Enroll. The background poll
// starts at once.
func New(ctx context.Context, cfg Config) (_ *Sidecar, err error) {
	if len(cfg.urls()) == 0 || len(cfg.CAPEM) == 0 || cfg.DataDir == "" {
		return nil, errors.New("sidecar: Config needs KMSURL (or KMSURLs), CAPEM and DataDir")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReattestInterval == 0 && cfg.Attest {
		cfg.ReattestInterval = DefaultReattestInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Reg == nil {
		cfg.Reg = prometheus.NewRegistry()
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 24 * time.Hour
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = 10 * time.Second
	}
	if cfg.AuditMaxBytes <= 0 {
		cfg.AuditMaxBytes = DefaultAuditMaxBytes
	}
	if cfg.AuditKeep <= 0 {
		cfg.AuditKeep = DefaultAuditKeep
	}
	if len(cfg.AllowUIDs) == 0 {
		cfg.AllowUIDs = []int{os.Getuid()}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cfg.CAPEM) {
		return nil, errors.New("sidecar: CAPEM holds no certificate")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("sidecar: data dir: %w", err)
	}
	token := cfg.EnrollToken
	cfg.EnrollToken = nil // the sidecar keeps no reference
	sum := sha256.Sum256(cfg.CAPEM)
	s := &Sidecar{cfg: cfg, log: cfg.Logger, enc: cfg.Enclave, caPool: pool, configCA: hex.EncodeToString(sum[:]), stop: make(chan struct{})}
	if s.enc == nil {
		if s.enc, err = software.New(); err != nil {
			return nil, err
		}
		s.ownsEnc = true
	}
	defer func() {
		if err != nil && s.ownsEnc {
			s.enc.Close()
		}
	}()
	if s.cfg.KEM == "" {
		s.cfg.KEM = kcrypto.DefaultKEM()
		if s.enc.Kind() == api.EnclaveTPM {
			s.cfg.KEM = api.KEMP256
		}
	}
	if s.audit, err = openLocalAudit(cfg.DataDir, cfg.AuditMaxBytes, cfg.AuditKeep, cfg.Now, cfg.Logger); err != nil {
		return nil, err
	}
	if err := s.loadRevokedCerts(); err != nil {
		s.audit.Close()
		return nil, fmt.Errorf("sidecar: reading the revoked custodian certificates (%s): %w; if it is damaged, remove it: the next revocation poll writes it again", revokedCertsFile, err)
	}
	s.ring = keyring.New(s.enc, keyring.Config{Now: cfg.Now, MaxEncryptions: cfg.MaxEncryptions})
	s.engine = &ops.Engine{R: resolver{s}}
	s.metrics = newMetrics(cfg.Reg, s)
	s.router = httpapi.NewRouter(s.log, httpapi.NewMetrics(cfg.Reg, "dcaas_sidecar"))
	if !cfg.NoRequestLog {
		s.router.LogRequests(callerName)
	}
	s.routes()
	if err := s.start(ctx, token); err != nil {
		s.audit.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.background()
	return s, nil
}

// start enrolls at New when it can: a persistent enclave's stored
// enrollment, a token, or attestation.
func (s *Sidecar) start(ctx context.Context, token *secret.Bytes) error {
	if s.reuse(ctx) && token.Len() == 0 {
		return nil
	}
	if id := s.id.Load(); id != nil { // reusable, but a token was given: enroll afresh
		s.id.Store(nil)
		id.kms.Close()
	}
	if token.Len() == 0 && !s.cfg.Attest {
		s.log.Info("waiting for enrollment: POST /v1/enroll with a token from the bound custodian (dcaas sidecar enroll)")
		return nil
	}
	return s.enroll(ctx, token)
}

// background polls the KMS (revocations, renewal, rotations, leases,
// usage) and drops idle key handles.
func (s *Sidecar) background() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if id := s.id.Load(); id != nil && !s.revoked.Load() {
				s.renewIfDue(id)
				s.reattestIfDue(s.id.Load())
				s.poll()
			}
			s.ring.Sweep()
			s.replays.sweep(s.cfg.Now())
		}
	}
}

// Enrolled reports whether the sidecar holds a valid enrollment.
func (s *Sidecar) Enrolled() bool {
	id := s.id.Load()
	return id != nil && !s.revoked.Load() && s.cfg.Now().Before(id.cert.NotAfter)
}

// Status reports the sidecar's identity and state. It does not call the
// KMS: reachability is what the background poll last saw.
func (s *Sidecar) Status(context.Context) api.Status {
	st := api.Status{
		Enrolled: s.Enrolled(), Enclave: s.enc.Kind(), KMSReachable: s.reachable.Load(),
		Revoked: s.revoked.Load(),
	}
	if !st.Revoked { // a revoked sidecar holds nothing, even while it is still evicting
		st.KeysLoaded = s.ring.Len()
	}
	if id := s.id.Load(); id == nil || id.e.InstanceID != s.previous {
		st.PreviousInstanceID = s.previous
	}
	if id := s.id.Load(); id != nil {
		st.InstanceID, st.CustodianDN = id.e.InstanceID, id.e.CustodianDN
		na := id.cert.NotAfter.UTC()
		st.IdentityNotAfter = &na
	}
	if n := s.lastCtc.Load(); n != 0 {
		t := time.Unix(0, n).UTC()
		st.KMSLastContact = &t
	}
	return st
}

// retire revokes this instance at the KMS as the sidecar stops for good.
// A failure is logged, not returned: the instance then lapses with its
// certificate, or its custodian's agent revokes it as the previous
// instance of the next start.
func (s *Sidecar) retire(ctx context.Context, id *identity) {
	if err := id.kms.RetireInstance(ctx); err != nil {
		s.log.Warn("could not retire this instance at the KMS; it stays registered until its certificate expires or its custodian revokes it",
			"instance", id.e.InstanceID, "err", s.kmsErr(err))
		return
	}
	s.revoked.Store(true)
	s.log.Info("retired this instance at the KMS: it is revoked, its keys are gone with this process", "instance", id.e.InstanceID)
}

// InstanceID is the KMS-assigned id of this sidecar ("" until enrolled).
func (s *Sidecar) InstanceID() string {
	if id := s.id.Load(); id != nil {
		return id.e.InstanceID
	}
	return ""
}

// CustodianDN is the DN of the one custodian this sidecar serves (""
// until enrolled).
func (s *Sidecar) CustodianDN() string {
	if id := s.id.Load(); id != nil {
		return id.e.CustodianDN
	}
	return ""
}

// WrappingCertificatePEM is the certificate the custodian gives the KMS's
// rewrap so keys are sealed to this sidecar ("" until enrolled). It
// changes when the sidecar renews it.
func (s *Sidecar) WrappingCertificatePEM() string {
	if id := s.id.Load(); id != nil {
		return id.e.WrappingCertPEM
	}
	return ""
}

// Close stops background work, reports the encryption counts the KMS has
// not heard of yet (best effort, briefly), wipes every loaded key and, if
// the sidecar created its enclave, closes it.
func (s *Sidecar) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		if id := s.id.Load(); id != nil && !s.revoked.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s.reportUsage(ctx, true)
			if s.cfg.RetireOnClose {
				s.retire(ctx, id)
			}
			cancel()
			id.kms.Close()
		}
		s.ring.Close()
		err = s.audit.Close()
		if s.ownsEnc {
			err = errors.Join(err, s.enc.Close())
		}
	})
	return err
}
