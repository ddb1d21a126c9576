package main

import (
	"strings"
	"testing"

	"github.com/dcaas/dcaas/internal/seal/sealmigrate"
)

// TestDescribeCensus: after a failed run the message says where the items
// are and never that the store still runs with the file seal when some of
// it is under the HSM.
func TestDescribeCensus(t *testing.T) {
	tests := []struct {
		name     string
		c        sealmigrate.Census
		released bool
		want     []string
		not      []string
	}{
		{"all old", sealmigrate.Census{Old: 7, Total: 7}, true,
			[]string{"7 under the file seal, 0 under pkcs11", "the KMS starts as before"}, []string{"locked"}},
		{"half", sealmigrate.Census{Old: 2, New: 5, Total: 7}, false,
			[]string{"2 under the file seal, 5 under pkcs11", "locked against KMS starts", "re-seals only what is left"}, []string{"starts as before"}},
		{"all new", sealmigrate.Census{New: 7, Total: 7}, false,
			[]string{"already under pkcs11", "run dcaas seal migrate again"}, []string{"starts as before"}},
		{"unopenable", sealmigrate.Census{Old: 6, Neither: []string{`master key v1 of tenant "x"`}, Total: 7}, false,
			[]string{`1 under neither (master key v1 of tenant "x")`, "locked against KMS starts"}, []string{"starts as before"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := describeCensus(tt.c, "file", "pkcs11", tt.released)
			if !strings.HasPrefix(got, "this run changed nothing") {
				t.Errorf("describeCensus() = %q, want it to start with what this run did", got)
			}
			wantContains(t, "describeCensus()", got, tt.want, tt.not)
		})
	}
}

func TestServeCommand(t *testing.T) {
	base := sealMigrateFlags{dataDir: "/var/lib/dcaas kms", listen: "0.0.0.0:8443", listenSet: true, store: "sqlite",
		to: sealFlags{module: "/usr/lib/softhsm/libsofthsm2.so", token: "dcaas", keyLabel: "dcaas-root"}}
	tests := []struct {
		name       string
		mod        func(*sealMigrateFlags)
		want, not  []string
		wantInNote string
	}{
		{"pin from env", func(*sealMigrateFlags) {},
			[]string{"--listen 0.0.0.0:8443", "--data-dir '/var/lib/dcaas kms'", "--seal pkcs11", "--pkcs11-token dcaas", "--pkcs11-key-label dcaas-root"},
			[]string{"--pkcs11-pin-file", "--store"}, envPKCS11PIN},
		{"pin file", func(f *sealMigrateFlags) { f.to.pinFile = "/run/pin" },
			[]string{"--pkcs11-pin-file /run/pin"}, nil, "--tls-host"},
		{"postgres env", func(f *sealMigrateFlags) { f.store = "postgres" },
			[]string{"--store postgres"}, []string{"--postgres-dsn"}, "DCAAS_POSTGRES_DSN, as this migration did"},
		{"postgres password", func(f *sealMigrateFlags) { f.store, f.postgresDSN = "postgres", "postgres://kms:s3cret@db/kms" },
			[]string{"--store postgres"}, []string{"s3cret", "--postgres-dsn"}, "not printed"},
		{"postgres keyword password", func(f *sealMigrateFlags) { f.store, f.postgresDSN = "postgres", "host=db password=s3cret" },
			nil, []string{"s3cret"}, "not printed"},
		{"default listen", func(f *sealMigrateFlags) { f.listen, f.listenSet = defaultKMSListen, false },
			[]string{"--listen " + defaultKMSListen}, nil, "kms serve's default"},
		{"postgres no password", func(f *sealMigrateFlags) { f.store, f.postgresDSN = "postgres", "host=/run/pg dbname=kms" },
			[]string{"--postgres-dsn 'host=/run/pg dbname=kms'"}, nil, "--tls-host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := base
			tt.mod(&f)
			line, notes := f.serveCommand()
			all := strings.Join(notes, "\n")
			wantContains(t, "serveCommand()", line, tt.want, tt.not)
			if strings.Contains(line+all, "s3cret") {
				t.Errorf("serveCommand() = %q, notes %q: they hold the DSN's password", line, all)
			}
			if !strings.Contains(all, tt.wantInNote) {
				t.Errorf("serveCommand() notes %q, want %q in them", all, tt.wantInNote)
			}
		})
	}
}

// wantContains reports every string of want that got, the result of call,
// lacks and every one of not that it holds.
func wantContains(t *testing.T, call, got string, want, not []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s = %q, want %q in it", call, got, w)
		}
	}
	for _, n := range not {
		if strings.Contains(got, n) {
			t.Errorf("%s = %q, want no %q", call, got, n)
		}
	}
}
