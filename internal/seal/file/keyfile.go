package file

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dcaas/dcaas/internal/atomicfile"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/secret"
)

// The root key file, dir/root.key:
//
//	magic "DRK1" | mode u8 | fields
//
//	mode 0 (modePlain):   root key (32 bytes)
//	mode 1 (modeWrapped): salt (16) | nonce (12) | AES-256-GCM(root key) (32+16)
//	mode 2 (modeShares):  see shares.go (wrapped under an unseal key split into shares)
//
// In mode 1 the wrapping key is PBKDF2-HMAC-SHA-256(passphrase, salt,
// 600,000 iterations, 32 bytes) and the GCM additional data is the 21-byte
// header magic | mode | salt.
const (
	keyFileName = "root.key"
	magic       = "DRK1"
	rootKeySize = 32
	saltSize    = 16
	iterations  = 600_000

	modePlain   byte = 0
	modeWrapped byte = 1

	plainLen   = len(magic) + 1 + rootKeySize
	wrappedLen = len(magic) + 1 + saltSize + 12 + rootKeySize + 16
	maxFileLen = 1024 // what we read at most
)

// decodeKeyFile returns the root key held in data, unwrapping it with
// passphrase (nil or empty means none) in mode 1. The caller owns the key.
func decodeKeyFile(data []byte, passphrase *secret.Bytes) (*secret.Bytes, bool, error) {
	if len(data) < len(magic)+1 || string(data[:len(magic)]) != magic {
		return nil, false, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	switch data[len(magic)] {
	case modePlain:
		if len(data) != plainLen {
			return nil, false, fmt.Errorf("%w: %d bytes, want %d", ErrCorrupt, len(data), plainLen)
		}
		if passphrase.Len() > 0 {
			return nil, false, fmt.Errorf("%w: a passphrase was given but %s is not passphrase-protected", ErrPassphrase, keyFileName)
		}
		return secret.Copy(data[len(magic)+1:]), false, nil
	case modeWrapped:
		if len(data) != wrappedLen {
			return nil, true, fmt.Errorf("%w: %d bytes, want %d", ErrCorrupt, len(data), wrappedLen)
		}
		if passphrase.Len() == 0 {
			return nil, true, fmt.Errorf("%w: %s is passphrase-protected and no passphrase was given", ErrPassphrase, keyFileName)
		}
		header := data[:len(magic)+1+saltSize]
		aead, err := passphraseAEAD(passphrase, header[len(magic)+1:])
		if err != nil {
			return nil, true, err
		}
		key, err := aead.Open(nil, data[len(header):], header)
		if err != nil {
			return nil, true, fmt.Errorf("%w: wrong passphrase (or %s was altered)", ErrPassphrase, keyFileName)
		}
		return secret.New(key), true, nil
	case modeShares:
		return nil, true, fmt.Errorf("%w: %s opens only with K of its unseal key shares: start the KMS sealed and unseal it (dcaas kms unseal)", ErrSharesRequired, keyFileName)
	default:
		return nil, false, fmt.Errorf("%w: unknown mode %d", ErrCorrupt, data[len(magic)])
	}
}

// encodeKeyFile returns the file contents holding root, wrapped under
// passphrase when it is not empty.
func encodeKeyFile(root, passphrase *secret.Bytes) ([]byte, error) {
	if passphrase.Len() == 0 {
		out := make([]byte, 0, plainLen)
		out = append(out, magic...)
		out = append(out, modePlain)
		return append(out, root.Expose()...), nil
	}
	header := make([]byte, 0, wrappedLen)
	header = append(header, magic...)
	header = append(header, modeWrapped)
	header = append(header, make([]byte, saltSize)...)
	rand.Read(header[len(magic)+1:])
	aead, err := passphraseAEAD(passphrase, header[len(magic)+1:])
	if err != nil {
		return nil, err
	}
	return aead.Seal(header, root.Expose(), header), nil
}

// passphraseAEAD is AES-256-GCM (random nonces) under the PBKDF2 key.
func passphraseAEAD(passphrase *secret.Bytes, salt []byte) (*kcrypto.AEAD, error) {
	k, err := kcrypto.PBKDF2(passphrase, salt, iterations, kcrypto.AEADKeySize)
	if err != nil {
		return nil, fmt.Errorf("seal/file: deriving the passphrase key: %w", err)
	}
	defer k.Wipe()
	return kcrypto.NewAEAD(k)
}

// readKeyFile reads dir/root.key, refusing anything but a regular file that
// only its owner can access.
func readKeyFile(dir string) ([]byte, error) {
	path := filepath.Join(dir, keyFileName)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrPermissions, path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o; only its owner may access it (chmod 600)", ErrPermissions, path, st.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileLen+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileLen {
		return nil, fmt.Errorf("%w: %s is too large", ErrCorrupt, path)
	}
	return data, nil
}

// createKeyFile writes data as dir/root.key unless that file exists (then
// it returns an error wrapping fs.ErrExist and changes nothing). The file
// appears complete or not at all: a synced temporary file is hard-linked
// into place (a link, unlike a rename, never replaces a file another
// process created meanwhile), then the directory is synced.
func createKeyFile(dir string, data []byte) error {
	tmp, err := writeTemp(dir, data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, filepath.Join(dir, keyFileName)); err != nil {
		return err
	}
	return atomicfile.SyncDir(dir)
}

// replaceKeyFile atomically replaces dir/root.key with data.
func replaceKeyFile(dir string, data []byte) error {
	tmp, err := writeTemp(dir, data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, keyFileName)); err != nil {
		os.Remove(tmp)
		return err
	}
	return atomicfile.SyncDir(dir)
}

// writeTemp writes data to a new mode-0600 file in dir and syncs it.
func writeTemp(dir string, data []byte) (name string, err error) {
	f, err := os.CreateTemp(dir, "."+keyFileName+".tmp-*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	return f.Name(), f.Close()
}

// loadKeyFile is readKeyFile for a root.key that must exist: an unsafe or
// damaged file is said as such, any other failure as one to read it. The
// caller wipes the data.
func loadKeyFile(dir string) ([]byte, error) {
	data, err := readKeyFile(dir)
	if err != nil {
		if errors.Is(err, ErrPermissions) || errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		return nil, fmt.Errorf("seal/file: reading %s: %w", keyFileName, err)
	}
	return data, nil
}

// ChangePassphrase re-wraps the root key in dir under newPass, after
// unwrapping it with old. A nil or empty newPass makes the file mode 0
// (file permissions only); a nil or empty old is right for a mode-0 file.
// The root key itself does not change, so everything sealed stays
// openable; a running KMS is unaffected. The file is replaced atomically.
// It returns ErrPassphrase when old is wrong. The caller keeps ownership
// of both passphrases.
func ChangePassphrase(dir string, old, newPass *secret.Bytes) error {
	data, err := loadKeyFile(dir)
	if err != nil {
		return err
	}
	defer secret.Zero(data)
	root, _, err := decodeKeyFile(data, old)
	if err != nil {
		return err
	}
	defer root.Wipe()
	out, err := encodeKeyFile(root, newPass)
	if err != nil {
		return err
	}
	defer secret.Zero(out)
	if err := replaceKeyFile(dir, out); err != nil {
		return fmt.Errorf("seal/file: writing %s: %w", keyFileName, err)
	}
	return nil
}

// loadOrCreate returns the root key in dir, creating it on first use, and
// whether it is passphrase-protected.
func loadOrCreate(dir string, passphrase *secret.Bytes) (*secret.Bytes, bool, error) {
	data, err := readKeyFile(dir)
	if errors.Is(err, fs.ErrNotExist) {
		root, cerr := create(dir, passphrase)
		if !errors.Is(cerr, fs.ErrExist) {
			return root, passphrase.Len() > 0, cerr
		}
		data, err = readKeyFile(dir) // another process created it meanwhile
	}
	if err != nil {
		if errors.Is(err, ErrPermissions) || errors.Is(err, ErrCorrupt) {
			return nil, false, err
		}
		return nil, false, fmt.Errorf("seal/file: reading %s: %w", keyFileName, err)
	}
	defer secret.Zero(data)
	return decodeKeyFile(data, passphrase)
}

// create makes a fresh root key and stores it in dir; the error wraps
// fs.ErrExist when the file appeared meanwhile.
func create(dir string, passphrase *secret.Bytes) (*secret.Bytes, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("seal/file: %w", err)
	}
	root := secret.New(make([]byte, rootKeySize))
	rand.Read(root.Expose())
	out, err := encodeKeyFile(root, passphrase)
	if err != nil {
		root.Wipe()
		return nil, err
	}
	defer secret.Zero(out)
	if err := createKeyFile(dir, out); err != nil {
		root.Wipe()
		return nil, fmt.Errorf("seal/file: creating %s: %w", keyFileName, err)
	}
	return root, nil
}
