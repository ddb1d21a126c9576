package e2e

import (
	"bytes"
	"sync"
)

// LogBuffer collects what is written to it from several goroutines (a
// slog handler of an in-process KMS or sidecar, a child process's stdout
// or stderr) while the test reads it; its zero value is empty and ready
// to use.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p; it never fails.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Bytes returns a copy of everything written so far; the caller owns it.
func (l *LogBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Len is the number of bytes written so far.
func (l *LogBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

// Lines are the JSON lines written so far whose msg starts with prefix,
// decoded (see LogLines).
func (l *LogBuffer) Lines(prefix string) []map[string]any {
	return LogLines(l.String(), prefix)
}
