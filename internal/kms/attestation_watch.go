package kms

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"time"
)

// ReloadAttestationPolicy reads the attestation policy file at path (and
// its manufacturers' roots files) and puts it in force. A file that does
// not read, parse or compile changes nothing: the policy in force stays
// and the error says why.
func (k *KMS) ReloadAttestationPolicy(path string) error {
	p, err := LoadAttestationPolicy(path)
	if err != nil {
		return err
	}
	return k.SetAttestationPolicy(p)
}

// WatchAttestationPolicy keeps the attestation policy in force in step
// with the file at path until ctx ends: it reloads it at every signal on
// hup (SIGHUP), and at every tick when what the file says (with its roots
// files) has changed since the last load. A bad file is logged and the
// policy in force stays; the next change or signal tries again. Either
// channel may be nil.
func (k *KMS) WatchAttestationPolicy(ctx context.Context, path string, hup <-chan os.Signal, ticks <-chan time.Time) {
	last := policyDigest(path) // the file the KMS started with
	reload := func(why string) {
		d := policyDigest(path)
		if err := k.ReloadAttestationPolicy(path); err != nil {
			k.log.Error("attestation policy not reloaded: the policy in force stays", "file", path, "trigger", why, "err", err)
			last = d // do not log the same bad file at every tick
			return
		}
		last = d
		k.log.Info("attestation policy reloaded", "file", path, "trigger", why)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			reload("signal")
		case <-ticks:
			if d := policyDigest(path); d != last {
				reload("file change")
			}
		}
	}
}

// policyDigest is a digest of what the policy file at path says, roots
// files included; a file that does not load digests its error.
func policyDigest(path string) [32]byte {
	p, err := LoadAttestationPolicy(path)
	if err != nil {
		return sha256.Sum256([]byte("error: " + err.Error()))
	}
	b, _ := json.Marshal(p)
	return sha256.Sum256(b)
}
