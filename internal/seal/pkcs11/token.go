//go:build cgo

package pkcs11

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	p11 "github.com/miekg/pkcs11"

	"github.com/dcaas/dcaas/internal/secret"
)

// PKCS#11 state is per process: a module is initialized once (a second
// C_Initialize fails, and C_Finalize ends every session), and a token is
// logged in once for all of the process's sessions (C_Logout logs them all
// out). The registry shares both between the Sealers of the process and
// counts their users. Its mutex also serializes finding and creating keys.
var registry = struct {
	mu      sync.Mutex
	modules map[string]*module // by resolved module path
}{modules: map[string]*module{}}

// module is one loaded, initialized PKCS#11 library.
type module struct {
	path     string
	ctx      *p11.Ctx
	finalize bool // this process's registry initialized it
	refs     int
	tokens   map[uint]*token // by slot
}

// token is one logged-in token; login is the session that holds the login
// for as long as any Sealer uses the token.
type token struct {
	mod   *module
	slot  uint
	login p11.SessionHandle
	pin   *secret.Bytes
	refs  int
}

// attach returns the logged-in token cfg names and its root key, loading
// the module, logging in and creating the key as needed.
func attach(cfg Config) (*token, p11.ObjectHandle, error) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	mod, err := loadModule(cfg.ModulePath)
	if err != nil {
		return nil, 0, err
	}
	slot, err := mod.findSlot(cfg.TokenLabel)
	if err != nil {
		mod.unref()
		return nil, 0, err
	}
	tok, err := mod.loginToken(slot, cfg.PIN)
	if err != nil {
		mod.unref()
		return nil, 0, err
	}
	key, err := tok.rootKey(cfg.KeyLabel, cfg.Create)
	if err != nil {
		tok.unref()
		mod.unref()
		return nil, 0, err
	}
	return tok, key, nil
}

// detach drops a Sealer's use of tok: the last user logs the token out,
// and the module's last user finalizes and unloads it.
func detach(tok *token) error {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	err := tok.unref()
	return errors.Join(err, tok.mod.unref())
}

// loadModule returns the module at path, loading and initializing it on
// first use, with one more reference.
func loadModule(path string) (*module, error) {
	abs, err := filepath.Abs(path)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModule, err)
	}
	if m, ok := registry.modules[abs]; ok {
		m.refs++
		return m, nil
	}
	ctx := p11.New(abs)
	if ctx == nil {
		return nil, fmt.Errorf("%w: %s does not load as a PKCS#11 library", ErrModule, abs)
	}
	finalize := true
	if err := ctx.Initialize(); err != nil {
		if !errors.Is(err, p11.Error(p11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
			ctx.Destroy()
			return nil, fmt.Errorf("%w: C_Initialize of %s: %w", ErrModule, abs, err)
		}
		finalize = false // someone else in this process owns it
	}
	m := &module{path: abs, ctx: ctx, finalize: finalize, refs: 1, tokens: map[uint]*token{}}
	registry.modules[abs] = m
	return m, nil
}

// unref drops one reference; the last finalizes and unloads the module.
func (m *module) unref() error {
	m.refs--
	if m.refs > 0 {
		return nil
	}
	delete(registry.modules, m.path)
	var err error
	if m.finalize {
		err = m.ctx.Finalize()
	}
	m.ctx.Destroy()
	return err
}

// findSlot returns the slot of the one token labeled label.
func (m *module) findSlot(label string) (uint, error) {
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("%w: listing slots: %w", ErrModule, err)
	}
	var found []uint
	for _, slot := range slots {
		info, err := m.ctx.GetTokenInfo(slot)
		if err != nil {
			continue // a token that is being removed
		}
		if info.Label == label {
			found = append(found, slot)
		}
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("%w: no token is labeled %q (%d tokens present)", ErrToken, label, len(slots))
	case 1:
		return found[0], nil
	default:
		return 0, fmt.Errorf("%w: %d tokens are labeled %q", ErrToken, len(found), label)
	}
}

// loginToken returns the token in slot, logged in with pin, with one more
// reference. A token the process already logged in only takes the same
// PIN.
func (m *module) loginToken(slot uint, pin *secret.Bytes) (*token, error) {
	if t, ok := m.tokens[slot]; ok {
		if !t.pin.Equal(pin) {
			return nil, fmt.Errorf("%w: the token is logged in with another PIN", ErrPIN)
		}
		t.refs++
		return t, nil
	}
	t := &token{mod: m, slot: slot, pin: pin.Clone(), refs: 1}
	if err := t.logIn(); err != nil {
		t.pin.Wipe()
		return nil, err
	}
	m.tokens[slot] = t
	return t, nil
}

// logIn opens the login session if needed and logs the user in.
func (t *token) logIn() error {
	if t.login == 0 {
		sh, err := t.mod.ctx.OpenSession(t.slot, p11.CKF_SERIAL_SESSION)
		if err != nil {
			return fmt.Errorf("%w: opening a session: %w", ErrToken, err)
		}
		t.login = sh
	}
	err := t.mod.ctx.Login(t.login, p11.CKU_USER, string(t.pin.Expose()))
	var e p11.Error
	switch {
	case err == nil || errors.Is(err, p11.Error(p11.CKR_USER_ALREADY_LOGGED_IN)):
		return nil
	case errors.As(err, &e) && pinError(e):
		err = fmt.Errorf("%w: %w", ErrPIN, err)
	default:
		err = fmt.Errorf("seal/pkcs11: C_Login: %w", err)
	}
	_ = t.mod.ctx.CloseSession(t.login)
	t.login = 0
	return err
}

func pinError(e p11.Error) bool {
	switch e {
	case p11.CKR_PIN_INCORRECT, p11.CKR_PIN_INVALID, p11.CKR_PIN_LEN_RANGE, p11.CKR_PIN_EXPIRED,
		p11.CKR_PIN_LOCKED, p11.CKR_USER_PIN_NOT_INITIALIZED:
		return true
	}
	return false
}

// unref drops one reference; the last logs out and closes the login
// session.
func (t *token) unref() error {
	t.refs--
	if t.refs > 0 {
		return nil
	}
	delete(t.mod.tokens, t.slot)
	t.pin.Wipe()
	if t.login == 0 {
		return nil
	}
	err := t.mod.ctx.Logout(t.login)
	if errors.Is(err, p11.Error(p11.CKR_USER_NOT_LOGGED_IN)) {
		err = nil
	}
	return errors.Join(err, t.mod.ctx.CloseSession(t.login))
}

// refresh logs in again (after the token lost the login, or the login
// session) and finds the key labeled label again.
func (t *token) refresh(label string) (p11.ObjectHandle, error) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if t.login != 0 {
		if _, err := t.mod.ctx.GetSessionInfo(t.login); err != nil {
			t.login = 0 // gone with the token's state; open another
		}
	}
	if err := t.logIn(); err != nil {
		return 0, err
	}
	return t.rootKey(label, false)
}

// isStale reports the failures after which a login or key handle must be
// renewed.
func isStale(err error) bool {
	var e p11.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e {
	case p11.CKR_USER_NOT_LOGGED_IN, p11.CKR_KEY_HANDLE_INVALID, p11.CKR_OBJECT_HANDLE_INVALID,
		p11.CKR_SESSION_HANDLE_INVALID, p11.CKR_SESSION_CLOSED:
		return true
	}
	return false
}
