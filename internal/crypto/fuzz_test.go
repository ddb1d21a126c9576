package crypto

import (
	"errors"
	"testing"

	"github.com/dcaas/dcaas/api"
	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/secret"
)

// The fuzz targets feed outside bytes to the functions that authenticate
// them. Property: no panic; the only errors are the opaque ErrDecrypt and
// format.ErrMalformed; nothing but the committed vector opens.

// FuzzUnwrap: wrapped bytes and aad from anywhere, the P-256 vector's key.
func FuzzUnwrap(f *testing.F) {
	var vs []wrapVector
	readVectors(f, "wrap_vectors.json", &vs)
	var v wrapVector
	for _, w := range vs {
		if w.KEM == api.KEMP256 {
			v = w
		}
	}
	for _, it := range v.Items {
		f.Add([]byte(it.Wrapped), []byte(it.AAD))
	}
	kem, err := KEMOf(v.KEM)
	if err != nil {
		f.Fatal(err)
	}
	priv, err := kem.NewPrivateKey(v.PrivateKey)
	if err != nil {
		f.Fatal(err)
	}
	u := NewUnwrapper(priv, v.Info)
	f.Fuzz(func(t *testing.T, wrapped, aad []byte) {
		key, err := u.Unwrap(wrapped, aad)
		if err == nil {
			defer key.Wipe()
			for _, it := range v.Items {
				if string(it.Wrapped) == string(wrapped) && string(it.AAD) == string(aad) {
					return
				}
			}
			t.Fatalf("Unwrap opened bytes that are not a vector")
		}
		if err != ErrDecrypt && !errors.Is(err, format.ErrMalformed) {
			t.Fatalf("Unwrap = %v, want ErrDecrypt or ErrMalformed", err)
		}
	})
}

// FuzzKeyDecrypt: ciphertext bytes and aad from anywhere, one message
// vector's key.
func FuzzKeyDecrypt(f *testing.F) {
	var vs []messageVector
	readVectors(f, "message_vectors.json", &vs)
	v := vs[len(vs)-1]
	f.Add([]byte(v.Ciphertext), []byte(v.AAD))
	k, err := NewKey(api.KeyAES256GCM, v.KeyID, v.Version, secret.Copy(v.Key))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, ct, aad []byte) {
		pt, err := k.Decrypt(nil, ct, aad)
		if err == nil {
			if string(ct) != string(v.Ciphertext) || string(aad) != string(v.AAD) || string(pt) != string(v.Plaintext) {
				t.Fatalf("Decrypt opened bytes that are not the vector")
			}
			return
		}
		if err != ErrDecrypt && !errors.Is(err, format.ErrMalformed) {
			t.Fatalf("Decrypt = %v, want ErrDecrypt or ErrMalformed", err)
		}
	})
}

// FuzzOpenEKB: EKB bytes from anywhere, the vectors' TMK.
func FuzzOpenEKB(f *testing.F) {
	var file ekbVectorFile
	readVectors(f, "ekb_vectors.json", &file)
	for _, v := range file.Vectors {
		f.Add([]byte(v.EKB))
	}
	tmk := secret.Copy(file.TMK)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := format.ParseEKB(b)
		if err != nil {
			if !errors.Is(err, format.ErrMalformed) {
				t.Fatalf("ParseEKB = %v, want ErrMalformed", err)
			}
			return
		}
		dek, err := OpenEKB(tmk, e)
		if err == nil {
			defer dek.Wipe()
			for _, v := range file.Vectors {
				if string(v.EKB) == string(b) {
					return
				}
			}
			t.Fatalf("OpenEKB opened bytes that are not a vector")
		}
		if err != ErrDecrypt {
			t.Fatalf("OpenEKB = %v, want ErrDecrypt", err)
		}
	})
}
