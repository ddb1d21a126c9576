package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/spf13/pflag"

	"github.com/dcaas/dcaas/sidecar"
	"github.com/dcaas/dcaas/sidecar/kmsplugin"
)

// kmsPluginFlags configure the Kubernetes KMS v2 plugin of `sidecar serve`.
type kmsPluginFlags struct {
	socket    string
	key       string
	allowUIDs []int
}

func (f *kmsPluginFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.socket, "kms-plugin-socket", "", "also serve the Kubernetes KMS v2 plugin API (gRPC) on this Unix socket (mode 0600)")
	fl.StringVar(&f.key, "kms-plugin-key", "", "the loaded aes-256-gcm key the KMS plugin encrypts with (required with --kms-plugin-socket)")
	fl.IntSliceVar(&f.allowUIDs, "kms-plugin-allow-uid", nil, "Unix uid allowed on the KMS plugin socket (repeatable; default: the --allow-uid list, else own uid)")
}

// validate checks the flags before the sidecar enrolls (which uses up its
// one-time token).
func (f *kmsPluginFlags) validate() error {
	switch {
	case f.socket == "" && (f.key != "" || len(f.allowUIDs) > 0):
		return errors.New("--kms-plugin-key and --kms-plugin-allow-uid need --kms-plugin-socket")
	case f.socket != "" && f.key == "":
		return errors.New("--kms-plugin-socket needs --kms-plugin-key KEY_ID")
	}
	return nil
}

// start serves the plugin until ctx ends, reporting Serve's end on errc.
// It returns the socket path, or "" when no plugin was asked for. The key
// need not be loaded yet: the plugin reports unhealthy until it is.
func (f *kmsPluginFlags) start(ctx context.Context, sc *sidecar.Sidecar, sidecarUIDs []int, shutdown time.Duration, log *slog.Logger, errc chan<- error) (string, error) {
	if f.socket == "" {
		return "", nil
	}
	uids := f.allowUIDs
	if len(uids) == 0 {
		uids = sidecarUIDs
	}
	p, err := kmsplugin.New(sc, kmsplugin.Config{KeyID: f.key, AllowUIDs: uids, ShutdownTimeout: shutdown, Logger: log})
	if err != nil {
		return "", err
	}
	ln, err := kmsplugin.Listen(f.socket)
	if err != nil {
		return "", err
	}
	go func() { errc <- p.Serve(ctx, ln) }()
	return f.socket, nil
}
