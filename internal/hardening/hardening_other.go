//go:build !linux

package hardening

func process() error { return nil }

func scrubInitialEnv([]string) error { return nil }
