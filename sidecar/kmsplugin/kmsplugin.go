// Package kmsplugin serves one key of a dcaas sidecar to the Kubernetes
// API server as a KMS v2 plugin: the gRPC API of k8s.io/kms/apis/v2
// (Status, Encrypt, Decrypt) on a Unix socket. The API server keeps
// encrypting Secrets (its DEK seeds, really) while the central KMS is
// down, because the sidecar serves the key locally.
//
// The protocol side is Kubernetes' own: k8s.io/kms/pkg/service's
// GRPCService answers the RPCs and calls this package's Plugin, which
// implements its Service interface. What this package adds is the key
// mapping and the caller binding: the socket is created 0600 and every
// connection's peer uid (SO_PEERCRED) must be allowed, as on the
// sidecar's own socket.
//
// Key rotation follows KMS v2's key_id semantics: Status and Encrypt
// report the key's newest loaded version as the key id (KeyID), so the
// API server notices when a new version is loaded and rotates its DEK
// seed; ciphertexts of older versions still decrypt while those versions
// are loaded.
//
// Start with New, Listen and Serve; `dcaas sidecar serve
// --kms-plugin-socket PATH --kms-plugin-key KEY_ID` does the same.
package kmsplugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	kmsapi "k8s.io/kms/apis/v2"
	"k8s.io/kms/pkg/service"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/peer"
)

// Sidecar is what the plugin uses of a sidecar; *sidecar.Sidecar
// implements it.
type Sidecar interface {
	Encrypt(ctx context.Context, keyID string, plaintext, aad []byte) ([]byte, error)
	Decrypt(ctx context.Context, ciphertext, aad []byte) ([]byte, error)
	Keys() []api.LoadedKey
}

// Config configures a Plugin. KeyID is required; the zero value of every
// other field means its default.
type Config struct {
	// KeyID is the dcaas key (aes-256-gcm) the plugin encrypts with. It
	// must be loaded in the sidecar for Status to report healthy.
	KeyID string
	// AllowUIDs are the Unix users that may call (default: this process's
	// uid). The API server of a kubeadm control plane runs as root (0).
	AllowUIDs []int
	// Timeout is the gRPC connection (handshake) timeout (default 10 s).
	Timeout time.Duration
	// ShutdownTimeout is how long Serve, once its ctx ends, waits for the
	// calls in flight before cutting them (default 10 s).
	ShutdownTimeout time.Duration
	// Logger (default slog.Default()); Now (default time.Now) decides
	// whether the key's lease has run out.
	Logger *slog.Logger
	Now    func() time.Time
}

// Limits of the protocol.
const (
	// MaxPlaintext is the largest plaintext Encrypt takes. The API server
	// sends 32-byte DEK seeds and refuses ciphertexts over 1 KiB, which
	// a 512-byte plaintext with dcaas's header stays well under.
	MaxPlaintext = 512
	// maxMessage bounds a request message (gRPC answers ResourceExhausted
	// past it): ciphertexts, key ids and annotations of the API server's
	// limits fit several times over.
	maxMessage = 64 << 10
)

// aad binds plugin ciphertexts to this use: a dcaas ciphertext made for
// another purpose under the same key does not decrypt here, nor the
// reverse.
var aad = []byte("dcaas kms-plugin v2")

// Plugin implements k8s.io/kms/pkg/service.Service with a sidecar key.
type Plugin struct {
	sc    Sidecar
	cfg   Config
	allow []uint32
}

var _ service.Service = (*Plugin)(nil)

// New returns a plugin serving cfg.KeyID from sc.
func New(sc Sidecar, cfg Config) (*Plugin, error) {
	if sc == nil || cfg.KeyID == "" {
		return nil, errors.New("kmsplugin: New needs a sidecar and Config.KeyID")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.AllowUIDs) == 0 {
		cfg.AllowUIDs = []int{os.Getuid()}
	}
	p := &Plugin{sc: sc, cfg: cfg}
	for _, u := range cfg.AllowUIDs {
		if u < 0 || u > 1<<32-1 {
			return nil, fmt.Errorf("kmsplugin: uid %d out of range", u)
		}
		p.allow = append(p.allow, uint32(u))
	}
	return p, nil
}

// KeyID is the KMS v2 key id of a dcaas key version, e.g. "key_abc:v2":
// what Status and Encrypt report and the API server stores next to each
// encrypted DEK seed.
func KeyID(keyID string, version int) string { return keyID + ":v" + strconv.Itoa(version) }

// Listen creates the plugin's Unix socket with mode 0600 (the
// per-connection uid check still decides who is served).
func Listen(path string) (net.Listener, error) { return peer.ListenUnix(path, 0o600) }

// Serve answers the KMS v2 API on ln until ctx ends, then stops
// gracefully: it stops accepting (closing ln, which removes a socket
// Listen made) and waits at most Config.ShutdownTimeout for calls in
// flight.
func (p *Plugin) Serve(ctx context.Context, ln net.Listener) error {
	gs := grpc.NewServer(
		grpc.ConnectionTimeout(p.cfg.Timeout),
		grpc.Creds(peerCreds{}),
		grpc.MaxRecvMsgSize(maxMessage),
		grpc.UnaryInterceptor(p.authorize),
	)
	// Kubernetes' own server side of the protocol; its address is unused
	// because the listener is ours (0600, peer-bound).
	kmsapi.RegisterKeyManagementServiceServer(gs, service.NewGRPCService(ln.Addr().String(), p.cfg.Timeout, p))
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		done := make(chan struct{})
		go func() { gs.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(p.cfg.ShutdownTimeout):
			gs.Stop()
		}
		return nil
	}
}

// current returns the newest loaded version of the plugin's key.
func (p *Plugin) current() (api.LoadedKey, bool) {
	var cur api.LoadedKey
	found := false
	for _, k := range p.sc.Keys() {
		if k.KeyID == p.cfg.KeyID && (!found || k.Version > cur.Version) {
			cur, found = k, true
		}
	}
	return cur, found
}

// Status reports "ok" and the current key id while the key's newest
// loaded version is usable (loaded, an AES-GCM key, lease not run out);
// otherwise a sentence saying why not, which the API server logs.
func (p *Plugin) Status(context.Context) (*service.StatusResponse, error) {
	cur, ok := p.current()
	switch {
	case !ok:
		return &service.StatusResponse{Version: "v2", Healthz: fmt.Sprintf("dcaas key %s is not loaded in the sidecar", p.cfg.KeyID)}, nil
	case cur.Type != api.KeyAES256GCM:
		return &service.StatusResponse{Version: "v2", Healthz: fmt.Sprintf("dcaas key %s is a %s key; the KMS plugin needs aes-256-gcm", p.cfg.KeyID, cur.Type)}, nil
	case cur.LeaseExpiresAt != nil && !p.cfg.Now().Before(*cur.LeaseExpiresAt):
		return &service.StatusResponse{Version: "v2", Healthz: fmt.Sprintf("the lease of dcaas key %s has run out; reload it", p.cfg.KeyID),
			KeyID: KeyID(cur.KeyID, cur.Version)}, nil
	}
	return &service.StatusResponse{Version: "v2", Healthz: "ok", KeyID: KeyID(cur.KeyID, cur.Version)}, nil
}

// Encrypt encrypts a DEK seed with the key's newest loaded version and
// reports that version as the key id.
func (p *Plugin) Encrypt(ctx context.Context, _ string, data []byte) (*service.EncryptResponse, error) {
	if len(data) > MaxPlaintext {
		return nil, status.Errorf(codes.ResourceExhausted, "kmsplugin: the plaintext is %d bytes; at most %d are taken (the API server sends 32-byte DEK seeds)", len(data), MaxPlaintext)
	}
	ct, err := p.sc.Encrypt(ctx, p.cfg.KeyID, data, aad)
	if err != nil {
		return nil, p.grpcError("encrypt", err)
	}
	id, ver, err := format.PeekCiphertextKey(ct)
	if err != nil {
		return nil, p.grpcError("encrypt", err)
	}
	return &service.EncryptResponse{Ciphertext: ct, KeyID: KeyID(id, int(ver))}, nil
}

// Decrypt decrypts a ciphertext of any loaded version of the key. The key
// id the API server stored with it must be the one Encrypt reported.
func (p *Plugin) Decrypt(ctx context.Context, _ string, req *service.DecryptRequest) ([]byte, error) {
	id, ver, err := format.PeekCiphertextKey(req.Ciphertext)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "kmsplugin: the ciphertext is not a dcaas ciphertext")
	}
	if id != p.cfg.KeyID {
		return nil, status.Errorf(codes.InvalidArgument, "kmsplugin: the ciphertext is under dcaas key %s; this plugin serves %s", id, p.cfg.KeyID)
	}
	if want := KeyID(id, int(ver)); req.KeyID != "" && req.KeyID != want {
		return nil, status.Errorf(codes.InvalidArgument, "kmsplugin: key_id %q does not match the ciphertext's %q", req.KeyID, want)
	}
	pt, err := p.sc.Decrypt(ctx, req.Ciphertext, aad)
	if err != nil {
		return nil, p.grpcError("decrypt", err)
	}
	return pt, nil
}

// codeOf is the gRPC status code of each dcaas error code.
var codeOf = map[api.Code]codes.Code{
	api.CodeBadRequest:         codes.InvalidArgument,
	api.CodeInvalidArgument:    codes.InvalidArgument,
	api.CodeInvalidCiphertext:  codes.InvalidArgument,
	api.CodeDecryptFailed:      codes.InvalidArgument,
	api.CodeWrongKeyType:       codes.FailedPrecondition,
	api.CodeNotFound:           codes.NotFound,
	api.CodeTooLarge:           codes.ResourceExhausted,
	api.CodeUnauthenticated:    codes.Unauthenticated,
	api.CodeForbidden:          codes.PermissionDenied,
	api.CodePolicyDenied:       codes.PermissionDenied,
	api.CodeRevoked:            codes.PermissionDenied,
	api.CodeUsageLimitExceeded: codes.PermissionDenied,
	api.CodeExpired:            codes.FailedPrecondition,
	api.CodeUnavailable:        codes.Unavailable,
}

// grpcError turns a sidecar error into a gRPC status: an *api.Error keeps
// its sentence under the matching code; anything else is logged and
// answered as Internal.
func (p *Plugin) grpcError(op string, err error) error {
	var ae *api.Error
	if errors.As(err, &ae) {
		c, ok := codeOf[ae.Code]
		if !ok {
			c = codes.Internal
		}
		return status.Errorf(c, "kmsplugin: %s: %s (dcaas code %s)", op, ae.Message, ae.Code)
	}
	p.cfg.Logger.Error("kmsplugin: internal error", "op", op, "err", err)
	return status.Errorf(codes.Internal, "kmsplugin: %s: internal error", op)
}
