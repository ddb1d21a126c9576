package transit

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/format"
)

// Response data of encrypt, decrypt, rewrap and datakey, with transit's
// field names.
type (
	cipherData struct {
		Ciphertext string `json:"ciphertext"`
		KeyVersion int    `json:"key_version"`
	}
	plainData struct {
		Plaintext string `json:"plaintext"`
	}
	datakeyData struct {
		Ciphertext string `json:"ciphertext"`
		KeyVersion int    `json:"key_version"`
		Plaintext  string `json:"plaintext,omitempty"`
	}
	cipherItem struct {
		Ciphertext string `json:"ciphertext,omitempty"`
		KeyVersion int    `json:"key_version,omitempty"`
		Error      string `json:"error,omitempty"`
		Reference  string `json:"reference"`
	}
	plainItem struct {
		Plaintext string `json:"plaintext"`
		Error     string `json:"error,omitempty"`
		Reference string `json:"reference"`
	}
	batchData[T any] struct {
		BatchResults []T `json:"batch_results"`
	}
)

// tally counts a batch's outcomes to choose its status as transit does.
type tally struct{ ok, user, internal int }

func (t *tally) add(err error) string {
	if err == nil {
		t.ok++
		return ""
	}
	te := FromError(err)
	if te.Status >= 500 {
		t.internal++
	} else {
		t.user++
	}
	return te.Message
}

// status is transit's for encrypt and decrypt batches: 200 if every item
// succeeded; else 400 (500 if an item hit an internal error), or
// partial_failure_response_code when some items succeeded.
func (t *tally) status(p *params) (int, []string, error) {
	code, err := p.integer("partial_failure_response_code")
	if err != nil {
		return 0, nil, err
	}
	if t.user == 0 && t.internal == 0 {
		return http.StatusOK, nil, nil
	}
	st := http.StatusBadRequest
	if t.user == 0 {
		st = http.StatusInternalServerError
	}
	if code != 0 && t.ok > 0 {
		if code < 1 || code > 599 {
			return st, []string{fmt.Sprintf("invalid HTTP response code override from partial_failure_response_code, reverting to %d", st)}, nil
		}
		st = code
	}
	return st, nil, nil
}

// warnings collects the engine's warnings of a request, once each.
type warnings []string

func (w *warnings) add(s string) {
	if s != "" && !slices.Contains(*w, s) {
		*w = append(*w, s)
	}
}

func (s *Server) encrypt(ctx context.Context, r *http.Request, p *params) (any, int, []string, error) {
	keyID := s.Keys.Resolve(r.PathValue("name"))
	_, _ = p.str("type") // used by transit only to create a missing key
	if err := p.unsupported("convergent_encryption"); err != nil {
		return nil, 0, nil, err
	}
	var warn warnings
	items, batch, err := p.batch()
	if err != nil {
		return nil, 0, nil, err
	}
	if !batch {
		if !p.has("plaintext") {
			return nil, 0, nil, badRequest("missing plaintext to encrypt")
		}
		res, err := s.encryptOne(ctx, keyID, p, &warn)
		if err != nil {
			return nil, 0, nil, err
		}
		return res, 0, warn, nil
	}
	out := make([]cipherItem, len(items))
	var t tally
	for i, it := range items {
		out[i].Reference, _ = it.str("reference")
		var res cipherData
		if !it.has("plaintext") {
			err = badRequest("missing plaintext to encrypt")
		} else {
			res, err = s.encryptOne(ctx, keyID, it, &warn)
		}
		out[i].Ciphertext, out[i].KeyVersion = res.Ciphertext, res.KeyVersion
		out[i].Error = t.add(err)
	}
	st, w, err := t.status(p)
	return batchData[cipherItem]{out}, st, append(warn, w...), err
}

func (s *Server) encryptOne(ctx context.Context, keyID string, p *params, warn *warnings) (cipherData, error) {
	if err := p.unsupported("context", "nonce"); err != nil {
		return cipherData{}, err
	}
	pt, err := p.base64("plaintext")
	if err != nil {
		return cipherData{}, err
	}
	defer clear(pt)
	aad, err := p.base64("associated_data")
	if err != nil {
		return cipherData{}, err
	}
	if err := s.checkEncryptVersion(p, keyID); err != nil {
		return cipherData{}, err
	}
	res, err := s.Engine.Encrypt(ctx, &api.EncryptRequest{KeyRef: api.KeyRef{KeyID: keyID}, Plaintext: pt, AAD: aad})
	if err != nil {
		return cipherData{}, err
	}
	warn.add(res.Warning)
	return cipherData{Ciphertext: FormatValue(res.KeyVersion, res.Ciphertext), KeyVersion: res.KeyVersion}, nil
}

// checkEncryptVersion accepts key_version 0 (the latest) or the latest
// loaded version: the engine always encrypts, signs and MACs with the
// newest loaded version.
func (s *Server) checkEncryptVersion(p *params, keyID string) error {
	kv, err := p.integer("key_version")
	if err != nil || kv == 0 {
		return err
	}
	vs := s.Keys.Versions(keyID)
	if len(vs) == 0 {
		return s.Keys.Absent(keyID)
	}
	latest := vs[len(vs)-1].Version
	switch {
	case kv < 0:
		return badRequest("key_version %d: must be 0 (the latest) or a version number", kv)
	case kv > latest:
		return badRequest("requested version %d is newer than the latest loaded version %d", kv, latest)
	case kv < latest:
		return badRequest("key_version %d: the dcaas transit adapter uses only the latest loaded version (%d) to encrypt, sign and MAC", kv, latest)
	}
	return nil
}

// ciphertext parses a transit ciphertext and checks that its prefix and its
// dcaas header name the same version. The engine checks the key.
func ciphertext(p *params) ([]byte, error) {
	s, err := p.str("ciphertext")
	if err != nil {
		return nil, err
	}
	if s == "" {
		return nil, badRequest("missing ciphertext to decrypt")
	}
	ver, ct, err := ParseValue(s)
	if err != nil {
		return nil, badRequest("invalid ciphertext: %v", err)
	}
	_, hv, err := format.PeekCiphertextKey(ct)
	if err != nil {
		return nil, badRequest("invalid ciphertext: the payload is not a dcaas ciphertext")
	}
	if int64(hv) != int64(ver) {
		return nil, badRequest("invalid ciphertext: its prefix says version %d but it was made with version %d", ver, hv)
	}
	return ct, nil
}

func (s *Server) decrypt(ctx context.Context, r *http.Request, p *params) (any, int, []string, error) {
	keyID := s.Keys.Resolve(r.PathValue("name"))
	items, batch, err := p.batch()
	if err != nil {
		return nil, 0, nil, err
	}
	if !batch {
		pt, err := s.decryptOne(ctx, keyID, p)
		if err != nil {
			return nil, 0, nil, err
		}
		return plainData{Plaintext: pt}, 0, nil, nil
	}
	out := make([]plainItem, len(items))
	var t tally
	for i, it := range items {
		out[i].Reference, _ = it.str("reference")
		out[i].Plaintext, err = s.decryptOne(ctx, keyID, it)
		out[i].Error = t.add(err)
	}
	st, w, err := t.status(p)
	return batchData[plainItem]{out}, st, w, err
}

// decryptOne returns the plaintext in base64, as transit does.
func (s *Server) decryptOne(ctx context.Context, keyID string, p *params) (string, error) {
	if err := p.unsupported("context", "nonce"); err != nil {
		return "", err
	}
	ct, err := ciphertext(p)
	if err != nil {
		return "", err
	}
	aad, err := p.base64("associated_data")
	if err != nil {
		return "", err
	}
	res, err := s.Engine.Decrypt(ctx, &api.DecryptRequest{KeyRef: api.KeyRef{KeyID: keyID}, Ciphertext: ct, AAD: aad})
	if err != nil {
		return "", err
	}
	defer clear(res.Plaintext)
	return base64.StdEncoding.EncodeToString(res.Plaintext), nil
}

// rewrap moves ciphertexts to the latest loaded version of the key. Like
// transit, a batch answers 200 with the failures in its items.
func (s *Server) rewrap(ctx context.Context, r *http.Request, p *params) (any, int, []string, error) {
	keyID := s.Keys.Resolve(r.PathValue("name"))
	var warn warnings
	items, batch, err := p.batch()
	if err != nil {
		return nil, 0, nil, err
	}
	if !batch {
		res, err := s.rewrapOne(ctx, keyID, p, &warn)
		if err != nil {
			return nil, 0, nil, err
		}
		return res, 0, warn, nil
	}
	out := make([]cipherItem, len(items))
	for i, it := range items {
		out[i].Reference, _ = it.str("reference")
		res, err := s.rewrapOne(ctx, keyID, it, &warn)
		if err != nil {
			out[i].Error = FromError(err).Message
			continue
		}
		out[i].Ciphertext, out[i].KeyVersion = res.Ciphertext, res.KeyVersion
	}
	return batchData[cipherItem]{out}, 0, warn, nil
}

func (s *Server) rewrapOne(ctx context.Context, keyID string, p *params, warn *warnings) (cipherData, error) {
	if err := p.unsupported("context", "nonce"); err != nil {
		return cipherData{}, err
	}
	ct, err := ciphertext(p)
	if err != nil {
		return cipherData{}, err
	}
	if id, _, _ := format.PeekCiphertextKey(ct); id != keyID {
		return cipherData{}, api.Errorf(api.CodeInvalidArgument, "The ciphertext is under key %s, not %s.", id, keyID)
	}
	// An extension: transit's rewrap takes no associated data, so AAD-bound
	// ciphertexts could not be rewrapped; here the same AAD is used to open
	// and to seal again.
	aad, err := p.base64("associated_data")
	if err != nil {
		return cipherData{}, err
	}
	if err := s.checkEncryptVersion(p, keyID); err != nil {
		return cipherData{}, err
	}
	res, err := s.Engine.Translate(ctx, &api.TranslateRequest{Ciphertext: ct, AAD: aad, ToKeyID: keyID, ToAAD: aad})
	if err != nil {
		return cipherData{}, err
	}
	warn.add(res.Warning)
	return cipherData{Ciphertext: FormatValue(res.KeyVersion, res.Ciphertext), KeyVersion: res.KeyVersion}, nil
}

// datakey draws a random key of 128, 256 (default) or 512 bits and returns
// it encrypted under the named key (decrypt gives it back in base64), and,
// for datakey/plaintext, in base64 too.
func (s *Server) datakey(withPlaintext bool) op {
	return func(ctx context.Context, r *http.Request, p *params) (any, int, []string, error) {
		keyID := s.Keys.Resolve(r.PathValue("name"))
		if err := p.unsupported("context", "nonce"); err != nil {
			return nil, 0, nil, err
		}
		bits := 256
		if p.has("bits") {
			var err error
			if bits, err = p.integer("bits"); err != nil {
				return nil, 0, nil, err
			}
		}
		if bits != 128 && bits != 256 && bits != 512 {
			return nil, 0, nil, badRequest("invalid bit length")
		}
		aad, err := p.base64("associated_data")
		if err != nil {
			return nil, 0, nil, err
		}
		if err := s.checkEncryptVersion(p, keyID); err != nil {
			return nil, 0, nil, err
		}
		key := kcrypto.Random(bits / 8)
		defer clear(key)
		res, err := s.Engine.Encrypt(ctx, &api.EncryptRequest{KeyRef: api.KeyRef{KeyID: keyID}, Plaintext: key, AAD: aad})
		if err != nil {
			return nil, 0, nil, err
		}
		d := datakeyData{Ciphertext: FormatValue(res.KeyVersion, res.Ciphertext), KeyVersion: res.KeyVersion}
		if withPlaintext {
			d.Plaintext = base64.StdEncoding.EncodeToString(key)
		}
		var warn warnings
		warn.add(res.Warning)
		return d, 0, warn, nil
	}
}
