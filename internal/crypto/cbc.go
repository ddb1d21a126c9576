package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"

	"github.com/dcaas/dcaas/internal/secret"
)

// AES-CBC without padding (NIST SP 800-38A §6.2), for formats that define
// their own padding and authenticate the data separately: the key data of a
// TR-31 / ANSI X9.143 key block (version D), whose CMAC is the IV. CBC alone
// authenticates nothing; callers verify a MAC over the result before they
// trust it, as internal/tr31 does.

// EncryptAESCBC encrypts plaintext, a whole number of 16-byte blocks, under
// an AES key of 16, 24 or 32 bytes with the 16-byte iv. key stays the
// caller's; the returned ciphertext is new.
func EncryptAESCBC(key *secret.Bytes, iv, plaintext []byte) ([]byte, error) {
	b, err := cbcBlock(key, iv, plaintext)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(plaintext))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, plaintext)
	return out, nil
}

// DecryptAESCBC decrypts ciphertext, a whole number of 16-byte blocks,
// under an AES key of 16, 24 or 32 bytes with the 16-byte iv. The result
// is secret (it is usually key material) and the caller's to wipe.
func DecryptAESCBC(key *secret.Bytes, iv, ciphertext []byte) (*secret.Bytes, error) {
	b, err := cbcBlock(key, iv, ciphertext)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(ciphertext))
	cipher.NewCBCDecrypter(b, iv).CryptBlocks(out, ciphertext)
	return secret.New(out), nil
}

func cbcBlock(key *secret.Bytes, iv, data []byte) (cipher.Block, error) {
	k := key.Expose()
	switch len(k) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w: an AES key is 16, 24 or 32 bytes, not %d", ErrInvalidKey, len(k))
	}
	if len(iv) != aes.BlockSize {
		return nil, fmt.Errorf("crypto: an AES-CBC IV is %d bytes, not %d", aes.BlockSize, len(iv))
	}
	if len(data)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("crypto: AES-CBC without padding takes whole %d-byte blocks, not %d bytes", aes.BlockSize, len(data))
	}
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return b, nil
}
