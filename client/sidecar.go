package client

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/dcaas/dcaas/api"
)

// Sidecar is a client of one crypto sidecar, over its Unix socket
// (NewSidecarUnix) or its mutual-TLS listener (NewSidecarTLS). The sidecar
// serves exactly one custodian: over the socket it checks the caller's
// Unix uid, over TLS the client certificate's DN. It is safe for
// concurrent use.
//
// Retries follow the rules of KMS with one base URL: operations, reads
// and Import are retried after transport errors and 502/503/504; Load,
// Derive, Seal and Evict only after dial errors (the sidecar is not
// listening yet) and 503.
type Sidecar struct {
	t *transport
}

// NewSidecarUnix returns a client of the sidecar listening on the Unix
// socket at socketPath.
func NewSidecarUnix(socketPath string, opts ...Option) (*Sidecar, error) {
	if socketPath == "" {
		return nil, errors.New("client: empty sidecar socket path")
	}
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socketPath)
		},
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Sidecar{t: newTransport([]string{"http://sidecar"}, tr, opts)}, nil
}

// NewSidecarTLS returns a client of a sidecar's mutual-TLS listener at
// baseURL (e.g. "https://127.0.0.1:9443"). caPEM is the KMS CA; certPEM
// and keyPEM are the bound custodian's certificate and key. serverName is
// the name the sidecar's certificate carries, which names the instance,
// not a host: the sidecar prints it at start ("tls-server-name=") and
// sidecar.(*Sidecar).ServerName returns it.
func NewSidecarTLS(baseURL string, caPEM, certPEM, keyPEM []byte, serverName string, opts ...Option) (*Sidecar, error) {
	urls, err := parseBaseURLs([]string{baseURL}, false)
	if err != nil {
		return nil, err
	}
	if serverName == "" || len(caPEM) == 0 || len(certPEM) == 0 {
		return nil, errors.New("client: a sidecar's TLS listener needs the KMS CA, a client certificate and the sidecar's server name")
	}
	cfg, err := tlsConfig(caPEM, certPEM, keyPEM, serverName)
	if err != nil {
		return nil, err
	}
	return newSidecarTLS(urls, cfg, opts), nil
}

// NewSidecarWithTLS returns a client of a sidecar's mutual-TLS listener at
// baseURL that connects with cfg as it is: for a custodian whose private
// key never leaves an HSM or a TPM (cfg.GetClientCertificate). cfg must
// verify the server: set RootCAs to the KMS CA and ServerName to the
// sidecar's (see NewSidecarTLS). The client keeps cfg.
func NewSidecarWithTLS(baseURL string, cfg *tls.Config, opts ...Option) (*Sidecar, error) {
	urls, err := parseBaseURLs([]string{baseURL}, false)
	if err != nil {
		return nil, err
	}
	if cfg == nil || cfg.InsecureSkipVerify || cfg.ServerName == "" {
		return nil, errors.New("client: NewSidecarWithTLS needs a TLS configuration that verifies the sidecar, with its server name")
	}
	return newSidecarTLS(urls, cfg, opts), nil
}

func newSidecarTLS(urls []string, cfg *tls.Config, opts []Option) *Sidecar {
	tr := &http.Transport{
		TLSClientConfig:     cfg,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 16,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Sidecar{t: newTransport(urls, tr, opts)}
}

// Close releases idle connections. The client stays usable.
func (s *Sidecar) Close() error {
	s.t.http.CloseIdleConnections()
	return nil
}

// Health asks GET /healthz.
func (s *Sidecar) Health(ctx context.Context) (*api.Health, error) {
	var out api.Health
	return result(&out, s.t.do(ctx, idempotent, http.MethodGet, "/healthz", nil, &out))
}

// Status reports the sidecar's instance, bound custodian, enclave, KMS
// reachability and how many keys it holds.
func (s *Sidecar) Status(ctx context.Context) (*api.Status, error) {
	var out api.Status
	return result(&out, s.t.do(ctx, idempotent, http.MethodGet, "/v1/status", nil, &out))
}

// WrappingCertificate returns the sidecar's wrapping certificate (PEM),
// which KMS.Rewrap seals keys to.
func (s *Sidecar) WrappingCertificate(ctx context.Context) (string, error) {
	var out api.WrappingCertificate
	err := s.t.do(ctx, idempotent, http.MethodGet, "/v1/wrapping-certificate", nil, &out)
	return out.CertPEM, err
}

// Import loads keys that KMS.Rewrap sealed to this sidecar (its answer,
// unchanged), all or nothing, and returns the loaded key ids in order (one
// per key, however many versions). Importing the same answer again while
// its keys are loaded changes nothing and answers the same ids, so a
// retry is safe; after its expiry, or once a key in it was evicted, the
// answer is refused.
func (s *Sidecar) Import(ctx context.Context, keys *api.WrappedKeys) ([]string, error) {
	var out api.Loaded
	err := s.t.do(ctx, idempotent, http.MethodPost, "/v1/keys/import", keys, &out)
	return out.Loaded, err
}

// Enroll hands the sidecar a one-time enrollment token, when its Status
// says it is not enrolled (a software-enclave sidecar that restarted
// without one). Only the sidecar's bound caller may do this. EnsureEnrolled
// does the whole recovery.
func (s *Sidecar) Enroll(ctx context.Context, token string) (*api.Status, error) {
	var out api.Status
	return result(&out, s.t.do(ctx, once, http.MethodPost, "/v1/enroll", api.SidecarEnrollRequest{Token: token}, &out))
}

// Load has the sidecar present grant and ekbs (or retained keyIDs) to the
// KMS and load what comes back (the grant flow). The grant is used up.
func (s *Sidecar) Load(ctx context.Context, grant string, ekbs [][]byte, keyIDs []string) ([]string, error) {
	var out api.Loaded
	err := s.t.do(ctx, once, http.MethodPost, "/v1/keys/load", api.SidecarLoadRequest{Grant: grant, EKBs: ekbs, KeyIDs: keyIDs}, &out)
	return out.Loaded, err
}

// Derive has the sidecar present grant and seeds to the KMS, which derives
// each key from its seed (the seed flow). Seeds are secret.
func (s *Sidecar) Derive(ctx context.Context, grant string, seeds []api.Seed) ([]string, error) {
	var out api.Loaded
	err := s.t.do(ctx, once, http.MethodPost, "/v1/keys/derive", api.SidecarDeriveRequest{Grant: grant, Seeds: seeds}, &out)
	return out.Loaded, err
}

// Seal moves loaded keys to the stateless mode: each comes back sealed
// under the sidecar's local master key and leaves its memory. Pass the
// blob as api.KeyRef{SealedKey: …} to operations. A software enclave's
// blobs do not survive a sidecar restart.
func (s *Sidecar) Seal(ctx context.Context, keyIDs []string) ([]api.SealedKey, error) {
	var out api.SealResponse
	err := s.t.do(ctx, once, http.MethodPost, "/v1/keys/seal", api.SealRequest{KeyIDs: keyIDs}, &out)
	return out.Sealed, err
}

// Keys lists the loaded key versions (metadata and leases, never secrets).
func (s *Sidecar) Keys(ctx context.Context) ([]api.LoadedKey, error) {
	var out api.LoadedKeys
	err := s.t.do(ctx, idempotent, http.MethodGet, "/v1/keys", nil, &out)
	return out.Keys, err
}

// Evict removes every version of a key from the sidecar; ErrNotFound if
// it was not loaded.
func (s *Sidecar) Evict(ctx context.Context, keyID string) error {
	return s.t.do(ctx, once, http.MethodDelete, "/v1/keys/"+pathEscape(keyID), nil, nil)
}

// Encrypt seals plaintext with aad under key (KeyID of a loaded key, or
// SealedKey).
func (s *Sidecar) Encrypt(ctx context.Context, key api.KeyRef, plaintext, aad []byte) (*api.EncryptResponse, error) {
	return encrypt(ctx, s.t, key, plaintext, aad)
}

// Decrypt opens a dcaas ciphertext; key may be empty (the ciphertext names
// a loaded key) or carry the SealedKey. A wrong key, AAD or a modified
// ciphertext is ErrDecryptFailed.
func (s *Sidecar) Decrypt(ctx context.Context, key api.KeyRef, ciphertext, aad []byte) ([]byte, error) {
	return decrypt(ctx, s.t, key, ciphertext, aad)
}

// Sign signs message with a signing key.
func (s *Sidecar) Sign(ctx context.Context, key api.KeyRef, message []byte) (*api.SignResponse, error) {
	return sign(ctx, s.t, key, message)
}

// Verify checks a signature; keyVersion 0 means the current version.
func (s *Sidecar) Verify(ctx context.Context, key api.KeyRef, message, signature []byte, keyVersion int) (bool, error) {
	return verify(ctx, s.t, key, message, signature, keyVersion)
}

// MAC computes an HMAC tag of message.
func (s *Sidecar) MAC(ctx context.Context, key api.KeyRef, message []byte) (*api.MACResponse, error) {
	return mac(ctx, s.t, key, message)
}

// VerifyMAC checks an HMAC tag; keyVersion 0 means the current version.
func (s *Sidecar) VerifyMAC(ctx context.Context, key api.KeyRef, message, tag []byte, keyVersion int) (bool, error) {
	return verifyMAC(ctx, s.t, key, message, tag, keyVersion)
}

// Hash digests message with algorithm ("sha-256", "sha-384", "sha-512",
// "sha3-256").
func (s *Sidecar) Hash(ctx context.Context, algorithm string, message []byte) ([]byte, error) {
	var out api.HashResponse
	err := s.t.do(ctx, idempotent, http.MethodPost, "/v1/crypto/hash", api.HashRequest{Algorithm: algorithm, Message: message}, &out)
	return out.Digest, err
}

// Random returns n (1..1024) random bytes from the sidecar.
func (s *Sidecar) Random(ctx context.Context, n int) ([]byte, error) {
	var out api.RandomResponse
	err := s.t.do(ctx, idempotent, http.MethodPost, "/v1/crypto/random", api.RandomRequest{Bytes: n}, &out)
	return out.Random, err
}

// Translate re-encrypts a ciphertext (opened with aad) under the loaded key
// toKeyID with toAAD, without the plaintext leaving the sidecar.
func (s *Sidecar) Translate(ctx context.Context, ciphertext, aad []byte, toKeyID string, toAAD []byte) (*api.EncryptResponse, error) {
	var out api.EncryptResponse
	err := s.t.do(ctx, idempotent, http.MethodPost, "/v1/crypto/translate", api.TranslateRequest{Ciphertext: ciphertext, AAD: aad, ToKeyID: toKeyID, ToAAD: toAAD}, &out)
	return result(&out, err)
}

// Batch runs several operations in one request; results come back in
// order, each with its own error (see BatchError).
func (s *Sidecar) Batch(ctx context.Context, ops []api.BatchItem) ([]api.BatchResult, error) {
	return batch(ctx, s.t, ops)
}
