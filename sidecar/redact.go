package sidecar

import "fmt"

// Config carries the enrollment token, a secret until it is used: printing
// a Config shows everything else.

// String describes the configuration with the token redacted.
func (c Config) String() string {
	tok := ""
	if c.EnrollToken.Len() != 0 {
		tok = "[REDACTED]"
	}
	return fmt.Sprintf("sidecar.Config{KMSURL:%q KMSURLs:%q DataDir:%q EnrollToken:%q Attest:%t KEM:%q AllowUIDs:%v LeaseTTL:%s HealthInterval:%s}",
		c.KMSURL, c.KMSURLs, c.DataDir, tok, c.Attest, c.KEM, c.AllowUIDs, c.LeaseTTL, c.HealthInterval)
}

// GoString redacts the token.
func (c Config) GoString() string { return c.String() }

// Format prints String for every verb.
func (c Config) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// String describes the sidecar without its state.
func (s *Sidecar) String() string { return "sidecar.Sidecar{" + s.InstanceID() + "}" }

// GoString redacts.
func (s *Sidecar) GoString() string { return s.String() }

// Format prints String for every verb.
func (s *Sidecar) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }
