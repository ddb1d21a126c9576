package tpm

import (
	"context"
	"crypto/hpke"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/enclave"
)

// Enclave is an enclave.Enclave and enclave.Attester whose keys live in a
// TPM 2.0. It is safe for concurrent use; TPM commands are serialized.
type Enclave struct {
	// tpmMu serializes TPM command sequences (load, use, flush). It is
	// taken before mu.
	tpmMu  sync.Mutex
	tpm    transport.TPM
	dir    string
	srk    tpm2.NamedHandle
	srkPub tpm2.TPMTPublic

	// mu guards what follows. Writers hold tpmMu as well, so code holding
	// tpmMu may read these fields without mu.
	mu        sync.RWMutex
	closed    bool
	lmk       *kcrypto.AEAD
	identity  *signer
	transport hpke.PrivateKey
	ak        *object
}

var (
	_ enclave.Enclave  = (*Enclave)(nil)
	_ enclave.Attester = (*Enclave)(nil)
)

// Open returns the enclave kept in tpm and dir: it creates the SRK, and
// unseals the LMK from dir (sealing a new one, and creating dir with mode
// 0700, on first use). Other keys are created on first use.
//
// Open does not take ownership of tpm: Close leaves it open, so the caller
// can open the enclave again over the same TPM (and must close tpm after the
// enclave). tpm must be safe for concurrent use, as the connections
// OpenDevice and tpmsim.Open return are. Without a resource manager (the
// simulator, /dev/tpm0) the TPM's few object slots are shared by everyone:
// each open Enclave keeps one (its SRK) and uses one more per operation.
// A blob in dir that does not load under this TPM's SRK (another TPM, a
// cleared owner hierarchy, a tampered file) is an error, never replaced.
// One Enclave at a time may use a directory: two would race to create the
// same key.
func Open(ctx context.Context, tpm transport.TPM, dir string) (*Enclave, error) {
	if tpm == nil || dir == "" {
		return nil, errors.New("tpm: Open needs a TPM and a directory")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tpm: key directory: %w", err)
	}
	e := &Enclave{tpm: tpm, dir: dir}
	if err := e.createSRK(); err != nil {
		return nil, err
	}
	if err := e.openLMK(ctx); err != nil {
		e.flush(e.srk.Handle)
		return nil, err
	}
	return e, nil
}

// Kind reports api.EnclaveTPM.
func (e *Enclave) Kind() api.Enclave { return api.EnclaveTPM }

// Close drops the LMK and flushes the SRK from the TPM. The raw LMK was
// wiped when Open derived its AES key schedule, which Go cannot wipe and
// which Close drops. Keys handed out earlier (Signer, hpke.PrivateKey,
// Protected) fail with enclave.ErrClosed afterwards. Close does not close
// the TPM connection; calling it again does nothing.
func (e *Enclave) Close() error {
	e.tpmMu.Lock()
	defer e.tpmMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	e.lmk = nil
	e.identity = nil
	e.transport = nil
	e.ak = nil
	if _, err := (tpm2.FlushContext{FlushHandle: e.srk.Handle}).Execute(e.tpm); err != nil {
		return fmt.Errorf("tpm: flush SRK: %w", err)
	}
	return nil
}

// String names the enclave without revealing anything it holds.
func (e *Enclave) String() string { return "tpm.Enclave(" + e.dir + ")" }

// GoString is String.
func (e *Enclave) GoString() string { return e.String() }

// Format writes String for every verb, so no verb prints the fields.
func (e *Enclave) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(e.String())) }

// begin takes the TPM lock for one command sequence and reports ErrClosed
// or a done ctx. The caller unlocks e.tpmMu when it returns nil.
func (e *Enclave) begin(ctx context.Context) error { return e.enter(ctx, &e.tpmMu) }

// useLMK takes e.mu for reading (the LMK stays until Close) and reports
// ErrClosed or a done ctx. The caller calls e.mu.RUnlock when it returns
// nil.
func (e *Enclave) useLMK(ctx context.Context) error { return e.enter(ctx, e.mu.RLocker()) }

// enter reports a done ctx (nil: none) without locking, or takes lock and
// reports ErrClosed (unlocking again) if the enclave is closed.
func (e *Enclave) enter(ctx context.Context, lock sync.Locker) error {
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	lock.Lock()
	if e.closed {
		lock.Unlock()
		return enclave.ErrClosed
	}
	return nil
}
