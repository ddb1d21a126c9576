//go:build cgo

package pkcs11

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	p11 "github.com/miekg/pkcs11"

	"github.com/dcaas/dcaas/internal/seal"
	"github.com/dcaas/dcaas/internal/secret"
)

const (
	format     byte = 0x02
	ivSize          = 12
	tagSize         = 16
	overhead        = 1 + ivSize + tagSize
	keySize         = 32
	sessions        = 8
	tagBits         = tagSize * 8
	maxRetries      = 1
)

// Sealer is the PKCS#11-backed seal.Sealer. It is safe for concurrent use:
// each operation runs on a token session of its own, taken from a pool.
type Sealer struct {
	tok   *token
	label string
	sem   chan struct{} // one slot per session in use
	done  chan struct{} // closed by Close

	mu     sync.Mutex
	key    p11.ObjectHandle
	idle   []p11.SessionHandle
	closed bool
}

var _ seal.Sealer = (*Sealer)(nil)

// Open loads the module, logs in to the token and finds the root key by
// its label, generating it inside the token when it is absent and
// cfg.Create is set. The key is never read out: Open refuses a key that
// is extractable or not sensitive (ErrKey). The caller keeps ownership of
// cfg.PIN and closes the Sealer.
func Open(cfg Config) (*Sealer, error) {
	if cfg.ModulePath == "" {
		return nil, fmt.Errorf("%w: no module path", ErrModule)
	}
	if cfg.TokenLabel == "" {
		return nil, fmt.Errorf("%w: no token label", ErrToken)
	}
	if cfg.PIN.Len() == 0 {
		return nil, fmt.Errorf("%w: no PIN given", ErrPIN)
	}
	if cfg.KeyLabel == "" {
		cfg.KeyLabel = DefaultKeyLabel
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = sessions
	}
	tok, key, err := attach(cfg)
	if err != nil {
		return nil, err
	}
	return &Sealer{
		tok:   tok,
		label: cfg.KeyLabel,
		key:   key,
		sem:   make(chan struct{}, cfg.MaxSessions),
		done:  make(chan struct{}),
	}, nil
}

// Name is "pkcs11".
func (s *Sealer) Name() string { return "pkcs11" }

// Seal encrypts plaintext (nil is empty) inside the token and binds aad.
// The caller keeps ownership of plaintext; the result is not secret.
func (s *Sealer) Seal(ctx context.Context, plaintext *secret.Bytes, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	iv := make([]byte, ivSize)
	rand.Read(iv)
	ad := additionalData(aad)
	var out []byte
	err := s.do(ctx, func(c *p11.Ctx, sh p11.SessionHandle, key p11.ObjectHandle) error {
		params := p11.NewGCMParams(iv, ad, tagBits)
		defer params.Free()
		if err := c.EncryptInit(sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}, key); err != nil {
			return err
		}
		ct, err := c.Encrypt(sh, plaintext.Expose())
		if err != nil {
			return err
		}
		used := params.IV() // the token's, if it chose its own
		if len(used) != ivSize || len(ct) != plaintext.Len()+tagSize {
			return fmt.Errorf("seal/pkcs11: token returned a %d-byte IV and %d bytes for %d", len(used), len(ct), plaintext.Len())
		}
		out = make([]byte, 0, overhead+plaintext.Len())
		out = append(out, format)
		out = append(out, used...)
		out = append(out, ct...)
		return nil
	})
	if err != nil {
		return nil, s.opErr("seal", err)
	}
	return out, nil
}

// Open decrypts what Seal returned for the same aad inside the token. Every
// failure to open is seal.ErrOpen (a token failure wraps it too, with the
// PKCS#11 error for logs); a closed Sealer is ErrClosed. The caller owns
// and wipes the result.
func (s *Sealer) Open(ctx context.Context, sealed, aad []byte) (*secret.Bytes, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(sealed) < overhead || sealed[0] != format {
		return nil, seal.ErrOpen
	}
	iv, ct := sealed[1:1+ivSize], sealed[1+ivSize:]
	ad := additionalData(aad)
	var pt *secret.Bytes
	err := s.do(ctx, func(c *p11.Ctx, sh p11.SessionHandle, key p11.ObjectHandle) error {
		params := p11.NewGCMParams(iv, ad, tagBits)
		defer params.Free()
		if err := c.DecryptInit(sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_GCM, params)}, key); err != nil {
			return err
		}
		b, err := c.Decrypt(sh, ct)
		if err != nil {
			return err
		}
		pt = secret.New(b)
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrClosed) || ctx.Err() != nil {
			return nil, err
		}
		if isAuthFailure(err) {
			return nil, seal.ErrOpen
		}
		return nil, fmt.Errorf("seal/pkcs11: open: %w: %w", seal.ErrOpen, err)
	}
	if pt.Len() != len(ct)-tagSize {
		pt.Wipe()
		return nil, seal.ErrOpen
	}
	return pt, nil
}

func (s *Sealer) opErr(op string, err error) error {
	if errors.Is(err, ErrClosed) {
		return err
	}
	return fmt.Errorf("seal/pkcs11: %s: %w", op, err)
}

// additionalData is format | aad.
func additionalData(aad []byte) []byte {
	return append([]byte{format}, aad...)
}

// isAuthFailure reports the PKCS#11 results a wrong tag, IV or aad gives.
func isAuthFailure(err error) bool {
	var e p11.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e {
	case p11.CKR_ENCRYPTED_DATA_INVALID, p11.CKR_ENCRYPTED_DATA_LEN_RANGE, p11.CKR_DATA_INVALID,
		p11.CKR_DATA_LEN_RANGE, 0x35 /* CKR_AEAD_DECRYPT_FAILED, PKCS#11 3.0 */ :
		return true
	}
	return false
}

// do runs op on a session of the pool. A session whose operation failed is
// closed rather than pooled (it may hold an unfinished operation); after a
// failure that means the login or the key handle was lost, do logs in and
// finds the key again, then retries once.
func (s *Sealer) do(ctx context.Context, op func(*p11.Ctx, p11.SessionHandle, p11.ObjectHandle) error) error {
	for attempt := 0; ; attempt++ {
		sh, key, err := s.acquire(ctx)
		if err != nil {
			return err
		}
		err = op(s.tok.mod.ctx, sh, key)
		s.release(sh, err == nil)
		if err == nil || attempt == maxRetries || !isStale(err) {
			return err
		}
		if rerr := s.refresh(); rerr != nil {
			return errors.Join(err, rerr)
		}
	}
}

// acquire takes a session slot and a session (pooled or new) and the
// current key handle.
func (s *Sealer) acquire(ctx context.Context) (p11.SessionHandle, p11.ObjectHandle, error) {
	select {
	case s.sem <- struct{}{}:
	case <-s.done:
		return 0, 0, ErrClosed
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.sem
		return 0, 0, ErrClosed
	}
	key := s.key
	if n := len(s.idle); n > 0 {
		sh := s.idle[n-1]
		s.idle = s.idle[:n-1]
		s.mu.Unlock()
		return sh, key, nil
	}
	s.mu.Unlock()
	sh, err := s.tok.mod.ctx.OpenSession(s.tok.slot, p11.CKF_SERIAL_SESSION)
	if err != nil {
		<-s.sem
		return 0, 0, err
	}
	return sh, key, nil
}

// release returns sh to the pool when ok, else closes it, and frees its
// slot.
func (s *Sealer) release(sh p11.SessionHandle, ok bool) {
	s.mu.Lock()
	if ok && !s.closed {
		s.idle = append(s.idle, sh)
		sh = 0
	}
	s.mu.Unlock()
	if sh != 0 {
		_ = s.tok.mod.ctx.CloseSession(sh)
	}
	<-s.sem
}

// refresh logs the token in again and finds the key again.
func (s *Sealer) refresh() error {
	key, err := s.tok.refresh(s.label)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.key = key
	s.mu.Unlock()
	return nil
}

// Close waits for operations in flight, closes the Sealer's sessions and,
// if it is the last Sealer of its token or module, logs the token out and
// finalizes the module. Later calls fail with ErrClosed. Close is
// idempotent.
func (s *Sealer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	for range cap(s.sem) {
		s.sem <- struct{}{}
	}
	s.mu.Lock()
	idle := s.idle
	s.idle = nil
	s.mu.Unlock()
	var errs []error
	for _, sh := range idle {
		if err := s.tok.mod.ctx.CloseSession(sh); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, detach(s.tok))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("seal/pkcs11: close: %w", err)
	}
	return nil
}
