package sidecar

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dcaas/dcaas/internal/atomicfile"
)

// auditFile is the sidecar's local audit log: one JSON object per line,
// appended and synced. It records refusals, key management (which keys)
// and what the KMS told the sidecar, never secrets or operations. Past
// Config.AuditMaxBytes it is rotated: audit.jsonl becomes audit.jsonl.1,
// .1 becomes .2 and so on, Config.AuditKeep of them kept.
const auditFile = "audit.jsonl"

// Defaults of the local audit log's rotation.
const (
	DefaultAuditMaxBytes = 64 << 20
	DefaultAuditKeep     = 4
)

type localAudit struct {
	mu     sync.Mutex
	broken bool // the last write failed, perhaps half-way through a line
	f      *os.File
	size   int64 // bytes in f, as written here (a rotation checks the file)
	now    func() time.Time
	log    *slog.Logger

	path     string
	maxBytes int64 // rotate past this many bytes
	keep     int   // rotated files kept
}

type localRecord struct {
	Time    time.Time `json:"time"`
	Caller  string    `json:"caller"`
	Action  string    `json:"action"`
	KeyID   string    `json:"key_id,omitempty"`
	Keys    []string  `json:"keys,omitempty"` // the keys a management call acted on
	Outcome string    `json:"outcome"`
	Code    string    `json:"code,omitempty"`
}

// openLocalAudit opens DIR/audit.jsonl for appending, to be rotated past
// maxBytes with keep rotated files kept.
func openLocalAudit(dir string, maxBytes int64, keep int, now func() time.Time, log *slog.Logger) (*localAudit, error) {
	a := &localAudit{path: filepath.Join(dir, auditFile), maxBytes: maxBytes, keep: keep, now: now, log: log}
	f, size, err := a.open()
	if err != nil {
		return nil, err
	}
	a.f, a.size = f, size
	return a, nil
}

// open opens the log's path for appending and returns its size.
func (a *localAudit) open() (*os.File, int64, error) {
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// write appends rec and syncs it to the disk, so a full or read-only disk
// shows at once; then rotates the file if it grew past maxBytes.
func (a *localAudit) write(rec localRecord) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	rec.Time = a.now().UTC()
	line, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("sidecar: local audit log: %w", err)
	}
	// One write per record (not a json.Encoder, whose first write error
	// sticks): the log works again once the disk has room.
	if a.broken {
		line = append([]byte{'\n'}, line...) // end a line a failed write may have cut
	}
	n, err := a.f.Write(append(line, '\n'))
	a.size += int64(n)
	if err != nil {
		a.broken = true
		return fmt.Errorf("sidecar: local audit log: %w", err)
	}
	a.broken = false
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("sidecar: local audit log: %w", err)
	}
	if a.size >= a.maxBytes {
		a.rotate()
	}
	return nil
}

// rotate moves the full log aside (audit.jsonl.1, the older ones one
// number up, the oldest past keep removed) and opens a new one. The
// record just written is in the file moved aside; a failure leaves the
// sidecar writing on where it was, and is logged. a.mu is held.
func (a *localAudit) rotate() {
	if fi, err := a.f.Stat(); err == nil && fi.Size() < a.maxBytes {
		a.size = fi.Size() // truncated under it (copytruncate)
		return
	}
	rotated := func(i int) string { return fmt.Sprintf("%s.%d", a.path, i) }
	if err := os.Remove(rotated(a.keep)); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Error("rotating the local audit log: removing the oldest file failed", "file", rotated(a.keep), "err", err)
		return
	}
	for i := a.keep - 1; i >= 1; i-- {
		if err := os.Rename(rotated(i), rotated(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			a.log.Error("rotating the local audit log failed", "file", rotated(i), "err", err)
			return
		}
	}
	if err := os.Rename(a.path, rotated(1)); err != nil {
		a.log.Error("rotating the local audit log failed", "file", a.path, "err", err)
		return
	}
	f, size, err := a.open()
	if err != nil {
		// Records go on into the file moved aside, which is still open.
		a.log.Error("rotating the local audit log: opening a new file failed; writing on in the old one", "file", rotated(1), "err", err)
		return
	}
	if err := atomicfile.SyncDir(filepath.Dir(a.path)); err != nil {
		a.log.Warn("rotating the local audit log: syncing its directory failed", "err", err)
	}
	old := a.f
	a.f, a.size = f, size
	if err := old.Close(); err != nil {
		a.log.Warn("rotating the local audit log: closing the old file failed", "err", err)
	}
	a.log.Info("local audit log rotated", "file", rotated(1), "kept", a.keep)
}

// Append records a management call or a decision; the caller fails closed
// when it cannot be written.
func (a *localAudit) Append(caller, action string, keys []string, outcome, code string) error {
	return a.write(localRecord{Caller: caller, Action: action, Keys: keys, Outcome: outcome, Code: code})
}

// Record appends an event the sidecar cannot refuse after the fact (a
// refusal already sent, what the KMS told it); a failure is logged.
func (a *localAudit) Record(caller, action, keyID, outcome, code string) {
	if err := a.write(localRecord{Caller: caller, Action: action, KeyID: keyID, Outcome: outcome, Code: code}); err != nil {
		a.log.Error("the local audit log cannot be written", "action", action, "key", keyID, "err", err)
	}
}

func (a *localAudit) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Close()
}
