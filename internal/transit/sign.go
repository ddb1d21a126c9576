package transit

import (
	"context"
	"net/http"

	"github.com/dcaas/dcaas/api"
)

// Response data of hmac, sign and verify, with transit's field names.
type (
	hmacData struct {
		HMAC string `json:"hmac"`
	}
	signData struct {
		Signature  string `json:"signature"`
		KeyVersion int    `json:"key_version"`
	}
	validData struct {
		Valid bool `json:"valid"`
	}
	hmacItem struct {
		HMAC      string `json:"hmac,omitempty"`
		Error     string `json:"error,omitempty"`
		Reference string `json:"reference"`
	}
	signItem struct {
		Signature  string `json:"signature,omitempty"`
		KeyVersion int    `json:"key_version"`
		Error      string `json:"error,omitempty"`
		Reference  string `json:"reference"`
	}
	validItem struct {
		Valid     bool   `json:"valid"`
		Error     string `json:"error,omitempty"`
		Reference string `json:"reference"`
	}
)

// defaultHash is transit's default hash algorithm, and the only one dcaas
// keys use: HMAC-SHA-256, and ECDSA P-256 over SHA-256.
const defaultHash = "sha2-256"

// hashAlgorithm is the algorithm of an hmac, sign or verify request: from
// the path, else hash_algorithm, else algorithm, else the default.
func hashAlgorithm(r *http.Request, p *params) (string, error) {
	if a := r.PathValue("algorithm"); a != "" {
		return a, nil
	}
	for _, name := range []string{"hash_algorithm", "algorithm"} {
		a, err := p.str(name)
		if err != nil || a != "" {
			return a, err
		}
	}
	return defaultHash, nil
}

// eachItem runs one for the request itself, or for each batch_input item;
// failures of items go into their results (transit answers such batches
// with 200).
func eachItem[T any](p *params, one func(*params) (T, error), fail func(ref, msg string) T) (data any, single T, err error) {
	items, batch, err := p.batch()
	if err != nil {
		return nil, single, err
	}
	if !batch {
		single, err = one(p)
		return nil, single, err
	}
	out := make([]T, len(items))
	for i, it := range items {
		ref, _ := it.str("reference")
		v, err := one(it)
		if err != nil {
			v = fail(ref, FromError(err).Message)
		}
		out[i] = v
	}
	return batchData[T]{out}, single, nil
}

func (s *Server) hmac(ctx context.Context, r *http.Request, p *params) (any, int, []string, error) {
	keyID := s.Keys.Resolve(r.PathValue("name"))
	if alg, err := hashAlgorithm(r, p); err != nil {
		return nil, 0, nil, err
	} else if alg != defaultHash {
		return nil, 0, nil, badRequest("unsupported algorithm %q: dcaas HMAC keys are HMAC-SHA-256 (%s)", alg, defaultHash)
	}
	if err := s.checkEncryptVersion(p, keyID); err != nil {
		return nil, 0, nil, err
	}
	var warn warnings
	batch, single, err := eachItem(p, func(it *params) (hmacItem, error) {
		ref, _ := it.str("reference")
		in, err := it.input("missing input for HMAC")
		if err != nil {
			return hmacItem{}, err
		}
		res, err := s.Engine.MAC(ctx, &api.MACRequest{KeyRef: api.KeyRef{KeyID: keyID}, Message: in})
		if err != nil {
			return hmacItem{}, err
		}
		warn.add(res.Warning)
		return hmacItem{HMAC: FormatValue(res.KeyVersion, res.MAC), Reference: ref}, nil
	}, func(ref, msg string) hmacItem { return hmacItem{Error: msg, Reference: ref} })
	if err != nil {
		return nil, 0, nil, err
	}
	if batch != nil {
		return batch, 0, warn, nil
	}
	return hmacData{HMAC: single.HMAC}, 0, warn, nil
}

// signatureOptions refuses the signing options dcaas keys do not offer:
// prehashed input, JWS marshaling, and any hash but SHA-256 for ECDSA.
// Ed25519 and ML-DSA-65 sign the message itself, so transit ignores the
// hash for them, and so does this adapter.
func (s *Server) signatureOptions(r *http.Request, p *params, keyID string) error {
	if err := p.unsupported("prehashed", "context"); err != nil {
		return err
	}
	_, _ = p.str("signature_algorithm") // RSA only in transit
	_, _ = p.str("salt_length")         // RSA-PSS only in transit
	m, err := p.str("marshaling_algorithm")
	if err != nil {
		return err
	}
	if m != "" && m != "asn1" {
		return badRequest("marshaling_algorithm %q is not supported by the dcaas transit adapter: signatures are ASN.1 DER (ECDSA) or raw (Ed25519)", m)
	}
	alg, err := hashAlgorithm(r, p)
	if err != nil || alg == defaultHash {
		return err
	}
	if vs := s.Keys.Versions(keyID); len(vs) > 0 && vs[0].Type != api.KeyECDSAP256 {
		return nil
	}
	return badRequest("hash algorithm %q is not supported by the dcaas transit adapter: ECDSA P-256 keys sign SHA-256 (%s) digests", alg, defaultHash)
}

func (s *Server) sign(ctx context.Context, r *http.Request, p *params) (any, int, []string, error) {
	keyID := s.Keys.Resolve(r.PathValue("name"))
	if err := s.signatureOptions(r, p, keyID); err != nil {
		return nil, 0, nil, err
	}
	if err := s.checkEncryptVersion(p, keyID); err != nil {
		return nil, 0, nil, err
	}
	var warn warnings
	batch, single, err := eachItem(p, func(it *params) (signItem, error) {
		ref, _ := it.str("reference")
		if err := it.unsupported("context"); err != nil {
			return signItem{}, err
		}
		in, err := it.input("missing input to sign")
		if err != nil {
			return signItem{}, err
		}
		res, err := s.Engine.Sign(ctx, &api.SignRequest{KeyRef: api.KeyRef{KeyID: keyID}, Message: in})
		if err != nil {
			return signItem{}, err
		}
		warn.add(res.Warning)
		return signItem{Signature: FormatValue(res.KeyVersion, res.Signature), KeyVersion: res.KeyVersion, Reference: ref}, nil
	}, func(ref, msg string) signItem { return signItem{Error: msg, Reference: ref} })
	if err != nil {
		return nil, 0, nil, err
	}
	if batch != nil {
		return batch, 0, warn, nil
	}
	return signData{Signature: single.Signature, KeyVersion: single.KeyVersion}, 0, warn, nil
}

// verify checks a signature or an HMAC (exactly one of the two per request
// and per batch) with the key version its "vault:v<N>:" prefix names.
func (s *Server) verify(ctx context.Context, r *http.Request, p *params) (any, int, []string, error) {
	keyID := s.Keys.Resolve(r.PathValue("name"))
	if err := p.unsupported("cmac"); err != nil {
		return nil, 0, nil, err
	}
	kind, err := verifyKind(p)
	if err != nil {
		return nil, 0, nil, err
	}
	if kind == "hmac" {
		if alg, err := hashAlgorithm(r, p); err != nil {
			return nil, 0, nil, err
		} else if alg != defaultHash {
			return nil, 0, nil, badRequest("invalid hash algorithm %q: dcaas HMAC keys are HMAC-SHA-256 (%s)", alg, defaultHash)
		}
	} else if err := s.signatureOptions(r, p, keyID); err != nil {
		return nil, 0, nil, err
	}
	batch, single, err := eachItem(p, func(it *params) (validItem, error) {
		ref, _ := it.str("reference")
		in, err := it.input("missing input")
		if err != nil {
			return validItem{}, err
		}
		v, err := it.str(kind)
		if err != nil {
			return validItem{}, err
		}
		ver, tag, err := ParseValue(v)
		if err != nil {
			return validItem{}, badRequest("invalid %s to verify: %v", kind, err)
		}
		var res *api.ValidResponse
		if kind == "hmac" {
			res, err = s.Engine.MACVerify(ctx, &api.MACVerifyRequest{KeyRef: api.KeyRef{KeyID: keyID}, Message: in, MAC: tag, KeyVersion: ver})
		} else {
			res, err = s.Engine.Verify(ctx, &api.VerifyRequest{KeyRef: api.KeyRef{KeyID: keyID}, Message: in, Signature: tag, KeyVersion: ver})
		}
		if err != nil {
			return validItem{}, err
		}
		return validItem{Valid: res.Valid, Reference: ref}, nil
	}, func(ref, msg string) validItem { return validItem{Error: msg, Reference: ref} })
	if err != nil {
		return nil, 0, nil, err
	}
	if batch != nil {
		return batch, 0, nil, nil
	}
	return validData{Valid: single.Valid}, 0, nil, nil
}

// verifyKind says whether a verify request checks signatures or HMACs.
func verifyKind(p *params) (string, error) {
	items, batch, err := p.batch()
	if err != nil {
		return "", err
	}
	if !batch {
		items = []*params{p}
	}
	var sigs, hmacs int
	for _, it := range items {
		s, h := it.has("signature"), it.has("hmac")
		if s && h {
			return "", badRequest("provide one of 'signature' or 'hmac'")
		}
		if s {
			sigs++
		}
		if h {
			hmacs++
		}
	}
	switch {
	case sigs == 0 && hmacs == 0:
		return "", badRequest("neither a 'signature' nor an 'hmac' were given to verify")
	case sigs > 0 && hmacs > 0:
		return "", badRequest("elements of batch_input must all provide 'signature' or all provide 'hmac'")
	case hmacs > 0 && hmacs < len(items):
		return "", badRequest("some elements of batch_input are missing 'hmac'")
	case sigs > 0 && sigs < len(items):
		return "", badRequest("some elements of batch_input are missing 'signature'")
	case hmacs > 0:
		return "hmac", nil
	}
	return "signature", nil
}
