package crypto

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// Ed25519PublicKeyFromPEM returns the 32 raw bytes of the Ed25519 public
// key in a PKIX "PUBLIC KEY" PEM block, as PublicKeyPEM writes it (not
// secret; the form transit shows Ed25519 public keys in). Any other block
// or key type is an error.
func Ed25519PublicKeyFromPEM(pemText string) ([]byte, error) {
	blk, _ := pem.Decode([]byte(pemText))
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("crypto: no PUBLIC KEY PEM block")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("crypto: parse public key: %w", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: the public key is a %T, not Ed25519", ErrWrongKeyType, k)
	}
	return pub, nil
}
