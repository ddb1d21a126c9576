package kms

import "fmt"

// A KMS caches unsealed tenant master keys: it never prints its fields.

// String describes the KMS without its state.
func (k *KMS) String() string { return "kms.KMS{[REDACTED]}" }

// GoString redacts.
func (k *KMS) GoString() string { return k.String() }

// Format redacts for every verb.
func (k *KMS) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// String describes the server without its state.
func (s *Server) String() string { return "kms.Server{" + s.DataDir + "}" }

// Format prints String for every verb.
func (s *Server) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }
