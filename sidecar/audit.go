package sidecar

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// auditFile is the sidecar's local audit log: one JSON object per line,
// appended. It records refusals and key management, never secrets.
const auditFile = "audit.jsonl"

type localAudit struct {
	mu  sync.Mutex
	f   *os.File
	enc *json.Encoder
	now func() time.Time
}

type localRecord struct {
	Time    time.Time `json:"time"`
	Caller  string    `json:"caller"`
	Action  string    `json:"action"`
	KeyID   string    `json:"key_id,omitempty"`
	Outcome string    `json:"outcome"`
	Code    string    `json:"code,omitempty"`
}

func openLocalAudit(dir string, now func() time.Time) (*localAudit, error) {
	f, err := os.OpenFile(filepath.Join(dir, auditFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &localAudit{f: f, enc: json.NewEncoder(f), now: now}, nil
}

// Record appends one record; a failure to write is not the caller's
// problem (the request was already decided) but is visible in the file's
// absence of the line.
func (a *localAudit) Record(caller, action, keyID, outcome, code string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	_ = a.enc.Encode(localRecord{Time: a.now().UTC(), Caller: caller, Action: action, KeyID: keyID, Outcome: outcome, Code: code})
}

func (a *localAudit) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Close()
}
