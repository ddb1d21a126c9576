// Package sidecar is the dcaas crypto sidecar, embeddable in a custodian's
// own process ("library mode") or run as `dcaas sidecar serve`.
//
// A Sidecar is bound to exactly one custodian. New enrolls it with the KMS
// (its keys are generated inside its enclave; the KMS certifies them and
// registers the instance), after which the custodian loads data keys into
// it — typically by asking the KMS to rewrap its EKBs to the sidecar's
// wrapping certificate and importing the result — and performs every
// operation locally: over a Unix socket or mutual-TLS listener (Serve), or
// as Go calls (Encrypt, Decrypt, Sign, …). Loaded keys keep working while
// the KMS is unreachable.
//
// Start with New and Config; see Example for a complete library-mode run.
package sidecar

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
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
)

// Config configures a sidecar. The zero value of each optional field means
// the default noted on it.
type Config struct {
	// KMSURL is the KMS base URL, e.g. "https://kms.internal:8443".
	KMSURL string
	// CAPEM is the KMS CA certificate (PEM): the sidecar trusts the KMS, and
	// TLS callers, through it.
	CAPEM []byte
	// DataDir keeps the enrollment (certificates, never private keys in
	// clear) and the local audit log. Required.
	DataDir string
	// EnrollToken is the one-time enrollment secret (secret zero from a
	// pipeline, or a grant minted by the custodian). The sidecar never
	// stores it. Needed unless the enclave attests or a persistent enclave
	// (tpm) is already enrolled.
	EnrollToken string
	// Enclave is where keys live (default: a new software enclave, which
	// the sidecar then owns and closes).
	Enclave enclave.Enclave
	// Attest enrolls with TPM attestation evidence instead of a token; the
	// Enclave must implement enclave.Attester.
	Attest bool
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
	// feed, renewing leases and reporting its encryption counts when it
	// succeeds (default 10 s). A revoked instance stops serving within one
	// interval.
	HealthInterval time.Duration
	// MaxEncryptions is the safe number of encryptions per AES-GCM key
	// version (default ops.DefaultMaxEncryptions, 2^32, NIST SP 800-38D
	// §8.3). The sidecar counts on from the KMS's count when a key is
	// loaded and refuses with usage_limit_exceeded past it; set the KMS's
	// kms.Config.MaxEncryptions to the same value.
	MaxEncryptions int64
	// Logger (default slog.Default()), Registerer for metrics (default a
	// private registry), Now (default time.Now).
	Logger *slog.Logger
	Reg    prometheus.Registerer
	Now    func() time.Time
}

// Sidecar is an enrolled, running sidecar. Its methods are safe for
// concurrent use.
type Sidecar struct {
	cfg      Config
	log      *slog.Logger
	enc      enclave.Enclave
	ownsEnc  bool
	ring     *keyring.Ring
	engine   *ops.Engine
	enrolled enrollment
	caPool   *x509.CertPool
	kms      *httpapi.Client
	audit    *localAudit
	metrics  *metrics
	router   *httpapi.Router
	names    keyNames // transit names of loaded keys (keynames.go)

	revoked     atomic.Bool
	revokedKeys sync.Map // key id → true: keys the KMS revoked (for sealed blobs)
	cursor      string   // revocation feed cursor (background goroutine only)
	reachable   atomic.Bool
	lastContact atomic.Int64
	stop        chan struct{}
	wg          sync.WaitGroup
	closeOnce   sync.Once
}

// New enrolls (or re-opens an enrolled persistent enclave) and returns a
// sidecar ready to import keys and serve.
func New(ctx context.Context, cfg Config) (_ *Sidecar, err error) {
	if cfg.KMSURL == "" || len(cfg.CAPEM) == 0 || cfg.DataDir == "" {
		return nil, errors.New("sidecar: Config needs KMSURL, CAPEM and DataDir")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
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
	s := &Sidecar{cfg: cfg, log: cfg.Logger, enc: cfg.Enclave, caPool: pool, stop: make(chan struct{})}
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
	if cfg.KEM == "" {
		cfg.KEM = kcrypto.DefaultKEM()
		if s.enc.Kind() == api.EnclaveTPM {
			cfg.KEM = api.KEMP256
		}
		s.cfg.KEM = cfg.KEM
	}
	if s.audit, err = openLocalAudit(cfg.DataDir, cfg.Now); err != nil {
		return nil, err
	}
	err = s.enroll(ctx)
	s.cfg.EnrollToken = "" // used or refused: the sidecar keeps no copy
	if err != nil {
		s.audit.Close()
		return nil, err
	}
	if err := s.kmsClient(ctx); err != nil {
		s.audit.Close()
		return nil, err
	}
	s.ring = keyring.New(s.enc, keyring.Config{BoundDN: s.enrolled.CustodianDN, Now: cfg.Now, MaxEncryptions: cfg.MaxEncryptions})
	s.engine = &ops.Engine{R: resolver{s}}
	s.metrics = newMetrics(cfg.Reg, s)
	s.router = httpapi.NewRouter(s.log, httpapi.NewMetrics(cfg.Reg, "dcaas_sidecar"))
	s.routes()
	s.reachable.Store(true)
	s.lastContact.Store(cfg.Now().UnixNano())
	s.wg.Add(1)
	go s.background()
	return s, nil
}

// kmsClient builds the mutual-TLS client the sidecar uses to reach the
// KMS, authenticating with its enclave-held identity key.
func (s *Sidecar) kmsClient(ctx context.Context) error {
	signer, err := s.enc.IdentityKey(ctx)
	if err != nil {
		return err
	}
	cert, err := parseCertPEM(s.enrolled.CertPEM)
	if err != nil {
		return err
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      s.caPool,
		Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: signer, Leaf: cert}},
	}
	s.kms = &httpapi.Client{Base: s.cfg.KMSURL, HTTP: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: tc, MaxIdleConnsPerHost: 4, ForceAttemptHTTP2: true},
	}}
	return nil
}

// background polls revocations (renewing leases) and drops idle key
// handles.
func (s *Sidecar) background() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.poll()
			s.ring.Sweep()
		}
	}
}

// checkKMS probes the KMS with the sidecar's own identity.
func (s *Sidecar) checkKMS() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var h api.Health
	err := s.kms.Do(ctx, http.MethodGet, "/healthz", nil, &h)
	ok := err == nil && h.Status == "ok"
	if ok {
		s.lastContact.Store(s.cfg.Now().UnixNano())
	}
	if was := s.reachable.Swap(ok); was != ok {
		s.log.Info("kms reachability changed", "reachable", ok)
	}
	return ok
}

// Status reports the sidecar's identity and state. It probes the KMS.
func (s *Sidecar) Status(ctx context.Context) api.Status {
	reach := s.checkKMS()
	st := api.Status{
		InstanceID: s.enrolled.InstanceID, CustodianDN: s.enrolled.CustodianDN,
		Enclave: s.enc.Kind(), KMSReachable: reach, KeysLoaded: s.ring.Len(),
	}
	if n := s.lastContact.Load(); n != 0 {
		t := time.Unix(0, n).UTC()
		st.KMSLastContact = &t
	}
	return st
}

// InstanceID is the KMS-assigned id of this sidecar.
func (s *Sidecar) InstanceID() string { return s.enrolled.InstanceID }

// CustodianDN is the DN of the one custodian this sidecar serves.
func (s *Sidecar) CustodianDN() string { return s.enrolled.CustodianDN }

// WrappingCertificatePEM is the certificate the custodian gives the KMS's
// rewrap so keys are sealed to this sidecar.
func (s *Sidecar) WrappingCertificatePEM() string { return s.enrolled.WrappingCertPEM }

// Close stops background work, reports the encryption counts the KMS has
// not heard of yet (best effort, briefly), wipes every loaded key and, if
// the sidecar created its enclave, closes it.
func (s *Sidecar) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		if !s.revoked.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s.reportUsage(ctx)
			cancel()
		}
		s.ring.Close()
		s.kms.HTTP.CloseIdleConnections()
		err = s.audit.Close()
		if s.ownsEnc {
			err = errors.Join(err, s.enc.Close())
		}
	})
	return err
}
