package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/pflag"

	"github.com/dcaas/dcaas/api"
)

// logFlags are the logging flags of `kms serve` and `sidecar serve`.
type logFlags struct {
	level, format string
}

func (l *logFlags) add(fl *pflag.FlagSet) {
	fl.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn, error (info logs one line per request)")
	fl.StringVar(&l.format, "log-format", "json", "log format on stderr: json or text; with json a failure to start is one JSON line too")
}

// newLogger makes the process's logger, on stderr.
func (l *logFlags) newLogger() (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch l.format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", l.format)
}

// reportedError is an error already written to the log: main exits 1
// without printing it again.
type reportedError struct{ error }

func (e reportedError) Unwrap() error { return e.error }

// startupError writes err, which stopped command (e.g. "kms serve"), as
// one JSON log line when the log format is json (issue 15: a failure to
// start was plain text while everything else was JSON). The exit code
// stays 1.
func (l *logFlags) startupError(command string, err error) error {
	if err == nil || l.format != "json" {
		return err
	}
	lv := slog.LevelInfo
	_ = lv.UnmarshalText([]byte(l.level)) // a bad level is the error itself
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	log.Error("dcaas "+command+" failed", "err", err.Error())
	return reportedError{err}
}

// exitCode is main's: 0 for nil, else 1 (after printing err unless it was
// logged already).
func exitCode(err error) int { return writeExit(os.Stderr, os.Args[1:], err) }

// writeExit prints err to w for a command run with args and returns the
// exit code. With --json among the arguments the error is a JSON object
// like the API's, {"error":{"code":…,"message":…}}: the message says it as
// the text form does, the code is there when the KMS or a sidecar answered
// with one, so a script reads a failure as it reads an answer (a flag the
// command does not know included).
func writeExit(w io.Writer, args []string, err error) int {
	if err == nil {
		return 0
	}
	if errors.As(err, new(reportedError)) {
		return 1
	}
	if !jsonRequested(args) {
		fmt.Fprintln(w, "dcaas:", err)
		return 1
	}
	type errorObject struct {
		Code    api.Code `json:"code,omitempty"`
		Message string   `json:"message"`
	}
	obj := errorObject{Message: err.Error()} // with the command's context around an answer
	if ae := (*api.Error)(nil); errors.As(err, &ae) {
		obj.Code = ae.Code
	}
	_ = json.NewEncoder(w).Encode(struct {
		Error errorObject `json:"error"`
	}{obj})
	return 1
}

// jsonRequested reports whether args ask for JSON output (--json before
// any "--").
func jsonRequested(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--json", "--json=true":
			return true
		}
	}
	return false
}
