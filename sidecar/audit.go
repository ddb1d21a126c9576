package sidecar

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// auditFile is the sidecar's local audit log: one JSON object per line,
// appended and synced. It records refusals, key management (which keys)
// and what the KMS told the sidecar, never secrets or operations.
const auditFile = "audit.jsonl"

type localAudit struct {
	mu     sync.Mutex
	broken bool // the last write failed, perhaps half-way through a line
	f      *os.File
	now    func() time.Time
	log    *slog.Logger
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

func openLocalAudit(dir string, now func() time.Time, log *slog.Logger) (*localAudit, error) {
	f, err := os.OpenFile(filepath.Join(dir, auditFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &localAudit{f: f, now: now, log: log}, nil
}

// write appends rec and syncs it to the disk, so a full or read-only disk
// shows at once.
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
	if _, err := a.f.Write(append(line, '\n')); err != nil {
		a.broken = true
		return fmt.Errorf("sidecar: local audit log: %w", err)
	}
	a.broken = false
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("sidecar: local audit log: %w", err)
	}
	return nil
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
