package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/dcaas/dcaas/internal/console"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
)

func newConsoleCmd() *cobra.Command {
	var listen, auditKey, tlsCert, tlsKey string
	var lease, sampleEvery time.Duration
	var logs logFlags
	cmd := &cobra.Command{
		Use:   "console",
		Short: "Serve the admin web console of a KMS (prints a one-time login URL first)",
		Long: `Serve a web console for one KMS (or its replicas): tenants and master keys,
apps and certificates, data keys, the fleet of sidecars, the audit trail with
its chain verification, and charts of the KMS's request counters.

The console calls the KMS with --cert/--key (an admin's certificate to see
everything); the browser never gets that key. The first line of standard
output is a one-time login URL: opening it starts a session (an HttpOnly,
SameSite=Strict cookie). It listens on loopback unless --listen names another
address, which then needs --tls-cert and --tls-key.`,
		Args: cobra.NoArgs,
	}
	conn := connFlags(cmd)
	_ = cmd.PersistentFlags().MarkHidden("socket") // the console calls no sidecar
	_ = cmd.PersistentFlags().MarkHidden("json")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		kms, err := conn.kmsClient()
		if err != nil {
			return err
		}
		defer kms.Close()
		logger, err := logs.newLogger()
		if err != nil {
			return err
		}
		cfg := console.Config{KMS: kms, Lease: lease, SampleEvery: sampleEvery, Logger: logger}
		if auditKey != "" {
			b, err := os.ReadFile(auditKey)
			if err != nil {
				return fmt.Errorf("--audit-key: %w", err)
			}
			if cfg.AuditKey, err = kcrypto.ParseLogVerifyKeyPEM(b); err != nil {
				return fmt.Errorf("--audit-key: %w", err)
			}
		}
		var tlsCfg *tls.Config
		if tlsCert != "" || tlsKey != "" {
			pair, err := tls.LoadX509KeyPair(tlsCert, tlsKey)
			if err != nil {
				return fmt.Errorf("--tls-cert/--tls-key: %w", err)
			}
			tlsCfg = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
			cfg.TLS = true
		}
		host, _, err := net.SplitHostPort(listen)
		if err != nil {
			return fmt.Errorf("--listen: %w", err)
		}
		if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" && tlsCfg == nil {
			return errors.New("--listen: a console on an address other than loopback must be served over TLS: give --tls-cert and --tls-key")
		}
		c, token, err := console.New(cfg)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return err
		}
		scheme := "http"
		if tlsCfg != nil {
			scheme = "https"
			ln = tls.NewListener(ln, tlsCfg)
		}
		// The first line of standard output: the one-time login URL.
		fmt.Fprintln(cmd.OutOrStdout(), console.LoginURL(scheme+"://"+ln.Addr().String(), token))
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		go c.Run(ctx)
		srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
	fl := cmd.Flags()
	logs.add(fl)
	fl.StringVar(&listen, "listen", "127.0.0.1:8090", "address to serve the console on (loopback unless --tls-cert is given)")
	fl.StringVar(&auditKey, "audit-key", "", "the audit key's public key, PEM, pinned for the chain verification (default: fetched from the KMS, shown as not pinned)")
	fl.StringVar(&tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
	fl.StringVar(&tlsKey, "tls-key", "", "the private key of --tls-cert (PEM)")
	fl.DurationVar(&lease, "lease", 24*time.Hour, "the sidecars' --lease, to estimate when a sidecar that stopped polling loses its keys")
	fl.DurationVar(&sampleEvery, "sample-every", 10*time.Second, "how often to sample the KMS's /metrics for the charts")
	return cmd
}
