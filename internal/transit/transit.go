// Package transit serves the data-plane subset of the Vault/OpenBao transit
// secrets engine API (encrypt, decrypt, rewrap, datakey, hmac, sign,
// verify, and reading a key) on top of dcaas's operation engine, so that an
// application written against transit can use a dcaas sidecar unchanged.
//
// Requests and responses keep transit's field names, weak typing, base64
// conventions, batch_input/batch_results, response envelope and error shape
// ({"errors": [...]}). Ciphertexts, HMACs and signatures carry transit's
// "vault:v<N>:" prefix around dcaas bytes: a transit ciphertext is
// "vault:v<N>:" + base64(dcaas ciphertext), where N repeats the key version
// of the ciphertext's authenticated header (see FormatValue).
//
// The package does not authenticate: the server that mounts Routes decides
// who may call (the sidecar applies its peer binding and ignores the token
// header). Start with Server and Routes; docs/transit.md lists what is and
// is not supported.
package transit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
)

// MaxBatch is the most batch_input items one request may carry (the
// operation engine's batch limit).
const MaxBatch = 10000

// Engine performs the operations; *ops.Engine implements it.
type Engine interface {
	Encrypt(context.Context, *api.EncryptRequest) (*api.EncryptResponse, error)
	Decrypt(context.Context, *api.DecryptRequest) (*api.DecryptResponse, error)
	Translate(context.Context, *api.TranslateRequest) (*api.EncryptResponse, error)
	Sign(context.Context, *api.SignRequest) (*api.SignResponse, error)
	Verify(context.Context, *api.VerifyRequest) (*api.ValidResponse, error)
	MAC(context.Context, *api.MACRequest) (*api.MACResponse, error)
	MACVerify(context.Context, *api.MACVerifyRequest) (*api.ValidResponse, error)
}

// Keys finds the dcaas key a transit name stands for.
type Keys interface {
	// Resolve returns the key id that name stands for: the key a
	// custodian gave that name, or else name itself taken as a key id.
	// Whether that key is loaded is for the engine to find out.
	Resolve(name string) string
	// Versions lists the loaded versions of keyID, oldest first (none:
	// not loaded).
	Versions(keyID string) []api.LoadedKey
	// Absent is the error for keyID when it has no loaded version: the
	// API error saying it was revoked, when the KMS revoked it, or that it
	// is not loaded.
	Absent(keyID string) error
}

// Server answers transit requests. Engine and Keys are required; the zero
// value of every other field means its default.
type Server struct {
	Engine Engine
	Keys   Keys
	// BodyLimit bounds a request body without batch_input (default 1 MiB);
	// BatchBodyLimit one with it (default 64 MiB). Larger bodies are
	// refused with 413.
	BodyLimit, BatchBodyLimit int64
	// Log receives internal errors (default slog.Default()).
	Log *slog.Logger
}

// Route is one transit endpoint: a Go 1.22 ServeMux pattern and its
// handler, for a server to mount behind its own authorization.
type Route struct {
	Pattern string // e.g. "POST /v1/transit/encrypt/{name}"
	Name    string // for audit and metrics, e.g. "transit.encrypt"
	Handler http.HandlerFunc
}

// op is a transit write operation: it reads its parameters and returns the
// response data and its HTTP status (0: 200).
type op func(ctx context.Context, r *http.Request, p *params) (data any, status int, warnings []string, err error)

// Routes lists the endpoints. Writes are mounted for both POST and PUT:
// the Vault and OpenBao clients and CLIs write with PUT, curl users
// usually with POST.
func (s *Server) Routes() []Route {
	// The parameters each endpoint knows (transit's, supported or not);
	// others draw transit's "ignored these unrecognized parameters" warning.
	var (
		cipher  = []string{"plaintext", "ciphertext", "associated_data", "context", "nonce", "key_version", "batch_input", "reference", "partial_failure_response_code", "type", "convergent_encryption"}
		datakey = []string{"bits", "context", "nonce", "key_version", "associated_data"}
		sigs    = []string{"input", "key_version", "batch_input", "algorithm", "hash_algorithm", "prehashed", "signature_algorithm", "marshaling_algorithm", "salt_length", "context", "signature", "hmac", "cmac", "reference"}
	)
	writes := []struct {
		path, name string
		known      []string
		f          op
	}{
		{"/v1/transit/encrypt/{name}", "transit.encrypt", cipher, s.encrypt},
		{"/v1/transit/decrypt/{name}", "transit.decrypt", cipher, s.decrypt},
		{"/v1/transit/rewrap/{name}", "transit.rewrap", cipher, s.rewrap},
		{"/v1/transit/datakey/plaintext/{name}", "transit.datakey", datakey, s.datakey(true)},
		{"/v1/transit/datakey/wrapped/{name}", "transit.datakey", datakey, s.datakey(false)},
		{"/v1/transit/hmac/{name}", "transit.hmac", sigs, s.hmac},
		{"/v1/transit/hmac/{name}/{algorithm}", "transit.hmac", sigs, s.hmac},
		{"/v1/transit/sign/{name}", "transit.sign", sigs, s.sign},
		{"/v1/transit/sign/{name}/{algorithm}", "transit.sign", sigs, s.sign},
		{"/v1/transit/verify/{name}", "transit.verify", sigs, s.verify},
		{"/v1/transit/verify/{name}/{algorithm}", "transit.verify", sigs, s.verify},
	}
	var out []Route
	for _, wr := range writes {
		h := s.serve(wr.f, wr.known)
		out = append(out,
			Route{Pattern: "POST " + wr.path, Name: wr.name, Handler: h},
			Route{Pattern: "PUT " + wr.path, Name: wr.name, Handler: h})
	}
	return append(out, Route{Pattern: "GET /v1/transit/keys/{name}", Name: "transit.keys.read", Handler: s.readKey})
}

// NotFound answers a path under /v1/transit/ that no route serves (404) or
// a method a route does not take (405), in transit's shape.
func NotFound(w http.ResponseWriter, r *http.Request, methodNotAllowed bool) {
	if methodNotAllowed {
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Errors: []string{
			fmt.Sprintf("unsupported operation: %s %s", r.Method, r.URL.Path)}})
		return
	}
	writeJSON(w, http.StatusNotFound, errorBody{Errors: []string{
		fmt.Sprintf("unsupported path: %s is not part of the transit subset this dcaas sidecar serves (encrypt, decrypt, rewrap, datakey, hmac, sign, verify, keys read)", r.URL.Path)}})
}

// serve reads the body under the right limit, runs f and writes transit's
// response envelope.
func (s *Server) serve(f op, known []string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := s.readParams(w, r)
		if err != nil {
			WriteError(w, err)
			return
		}
		data, status, warnings, err := f(r.Context(), r, p)
		if err != nil {
			s.logInternal(r, err)
			WriteError(w, err)
			return
		}
		if wn := ignoredWarning(p, known); wn != "" {
			warnings = append(warnings, wn)
		}
		if status == 0 {
			status = http.StatusOK
		}
		writeJSON(w, status, envelope{RequestID: requestID(), Data: data, Warnings: warnings, MountType: "transit"})
	}
}

func (s *Server) logInternal(r *http.Request, err error) {
	if FromError(err).Status < 500 {
		return
	}
	log := s.Log
	if log == nil {
		log = slog.Default()
	}
	log.Error("transit: internal error", "method", r.Method, "path", r.URL.Path, "err", err)
}

// readParams reads and decodes the body: up to BatchBodyLimit bytes, of
// which a request without batch_input may use BodyLimit.
func (s *Server) readParams(w http.ResponseWriter, r *http.Request) (*params, error) {
	limit, batchLimit := s.BodyLimit, s.BatchBodyLimit
	if limit <= 0 {
		limit = 1 << 20
	}
	if batchLimit <= 0 {
		batchLimit = 64 << 20
	}
	batchLimit = max(batchLimit, limit)
	if r.ContentLength > batchLimit {
		return nil, tooLarge("http: request body too large: the limit is %d bytes", batchLimit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, batchLimit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge("http: request body too large: the limit is %d bytes", batchLimit)
		}
		return nil, badRequest("the request body could not be read")
	}
	p, err := decodeParams(body)
	clear(body) // it held plaintexts
	if err != nil {
		return nil, err
	}
	if _, batch := p.raw["batch_input"]; !batch && int64(len(body)) > limit {
		return nil, tooLarge("http: request body too large: the limit is %d bytes without batch_input", limit)
	}
	return p, nil
}

// envelope is transit's response: the operation's data inside the fields
// every Vault API response carries.
type envelope struct {
	RequestID     string   `json:"request_id"`
	LeaseID       string   `json:"lease_id"`
	Renewable     bool     `json:"renewable"`
	LeaseDuration int      `json:"lease_duration"`
	Data          any      `json:"data"`
	WrapInfo      any      `json:"wrap_info"`
	Warnings      []string `json:"warnings"`
	Auth          any      `json:"auth"`
	MountType     string   `json:"mount_type"`
}

// requestID is a random UUID-shaped id, as transit's responses carry.
func requestID() string {
	b := kcrypto.Random(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"errors":["internal error"]}`)
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
	clear(b) // it may hold plaintexts
}
