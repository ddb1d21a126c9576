package tpm

import (
	"bytes"
	"crypto/fips140"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/go-tpm/tpm2"
)

// Blob files in the key directory.
const (
	lmkFile       = "lmk.tpm"
	identityFile  = "identity.tpm"
	transportFile = "transport-p256.tpm"
	akFile        = "ak.tpm"
)

// objectVersion is the first byte of a blob file:
// objectVersion || TPM2B_PUBLIC || TPM2B_PRIVATE.
const objectVersion = 1

// object is a key created under the SRK: its public area and its private
// area as the TPM returned it (encrypted and integrity-protected by the SRK).
type object struct {
	pub  tpm2.TPM2BPublic
	priv tpm2.TPM2BPrivate
}

// public returns the object's public area.
func (o *object) public() (*tpm2.TPMTPublic, error) {
	p, err := o.pub.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpm: key blob public area: %w", err)
	}
	return p, nil
}

func (o *object) marshal() []byte {
	var b bytes.Buffer
	b.WriteByte(objectVersion)
	b.Write(tpm2.Marshal(o.pub))
	b.Write(tpm2.Marshal(o.priv))
	return b.Bytes()
}

func parseObject(b []byte) (*object, error) {
	if len(b) == 0 || b[0] != objectVersion {
		return nil, errors.New("tpm: key blob: unknown version")
	}
	pub, rest, ok := cut2B(b[1:])
	if !ok {
		return nil, errors.New("tpm: key blob: truncated public area")
	}
	priv, rest, ok := cut2B(rest)
	if !ok || len(rest) != 0 {
		return nil, errors.New("tpm: key blob: bad private area")
	}
	o := &object{
		pub:  tpm2.BytesAs2B[tpm2.TPMTPublic](pub),
		priv: tpm2.TPM2BPrivate{Buffer: priv},
	}
	if _, err := o.public(); err != nil {
		return nil, err
	}
	return o, nil
}

// cut2B splits a TPM2B (u16 size || bytes) off the front of b.
func cut2B(b []byte) (body, rest []byte, ok bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return nil, nil, false
	}
	return b[2 : 2+n], b[2+n:], true
}

// checkTemplate reports whether a blob's public area is what tmpl creates,
// public key aside: a blob planted in the directory cannot swap in a key
// with other attributes (one the TPM did not generate, or a non-restricted
// AK).
func checkTemplate(got *tpm2.TPMTPublic, tmpl tpm2.TPMTPublic) error {
	g := *got
	g.Unique = tmpl.Unique
	if !bytes.Equal(tpm2.Marshal(g), tpm2.Marshal(tmpl)) {
		return errors.New("tpm: key blob does not match its template")
	}
	return nil
}

// readObject reads a blob file; a missing file is an error wrapping
// fs.ErrNotExist.
func (e *Enclave) readObject(name string) (*object, error) {
	b, err := os.ReadFile(filepath.Join(e.dir, name))
	if err != nil {
		return nil, err
	}
	o, err := parseObject(b)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, name)
	}
	return o, nil
}

// writeObject writes a blob file atomically (temporary file, fsync,
// rename), mode 0600.
func (e *Enclave) writeObject(name string, o *object) error {
	f, err := os.CreateTemp(e.dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("tpm: write key blob: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename, a no-op
	if _, err := f.Write(o.marshal()); err != nil {
		f.Close()
		return fmt.Errorf("tpm: write key blob: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("tpm: write key blob: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("tpm: write key blob: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(e.dir, name)); err != nil {
		return fmt.Errorf("tpm: write key blob: %w", err)
	}
	if d, err := os.Open(e.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// objectFor returns the blob called name, creating and storing it with
// create when the file does not exist. An existing blob must match tmpl
// and load under the SRK. The caller holds tpmMu.
func (e *Enclave) objectFor(name string, tmpl tpm2.TPMTPublic, create func() (*object, error)) (*object, error) {
	o, err := e.readObject(name)
	switch {
	case err == nil:
		pub, err := o.public()
		if err != nil {
			return nil, err
		}
		if err := checkTemplate(pub, tmpl); err != nil {
			return nil, fmt.Errorf("%w (%s)", err, name)
		}
		// Load it once, so a blob from another TPM (or a damaged one)
		// fails here rather than at its first use.
		h, err := e.load(o)
		if err != nil {
			return nil, fmt.Errorf("%w (%s)", err, name)
		}
		e.flush(h.Handle)
		return o, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("tpm: read key blob: %w", err)
	}
	if o, err = create(); err != nil {
		return nil, err
	}
	if err := e.writeObject(name, o); err != nil {
		return nil, err
	}
	return o, nil
}

// createSRK creates the storage root key from the TCG ECC P-256 template.
func (e *Enclave) createSRK() error {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(e.tpm)
	if err != nil {
		return fmt.Errorf("tpm: create SRK: %w", err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		e.flush(rsp.ObjectHandle)
		return fmt.Errorf("tpm: SRK public area: %w", err)
	}
	e.srk = tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
	e.srkPub = *pub
	return nil
}

// parent is the SRK as the parent of Create and Load, with the empty
// password, or with session s when s is not nil.
func (e *Enclave) parent(s tpm2.Session) tpm2.AuthHandle {
	if s == nil {
		s = tpm2.PasswordAuth(nil)
	}
	return tpm2.AuthHandle{Handle: e.srk.Handle, Name: e.srk.Name, Auth: s}
}

// encryptIn and encryptOut are the parameter encryption of a
// secretSession: the first command parameter, or the first response
// parameter, travels AES-128-CFB-encrypted.
var (
	encryptIn  = tpm2.AESEncryption(128, tpm2.EncryptIn)
	encryptOut = tpm2.AESEncryption(128, tpm2.EncryptOut)
)

// secretSession is a one-use HMAC session, salted with the SRK and with
// parameter encryption enc, for the empty auth value: what secrets cross
// the bus in. With GODEBUG=fips140=only, Go refuses AES-CFB, the one mode
// TPM parameter encryption has, so the session only authenticates and the
// secrets cross the bus in clear.
func (e *Enclave) secretSession(enc tpm2.AuthOption) tpm2.Session {
	opts := []tpm2.AuthOption{tpm2.Salted(e.srk.Handle, e.srkPub)}
	if !fips140.Enforced() {
		opts = append(opts, enc)
	}
	return tpm2.HMAC(tpm2.TPMAlgSHA256, 16, opts...)
}

// create creates a key from tmpl under the SRK. The caller holds tpmMu.
func (e *Enclave) create(tmpl tpm2.TPMTPublic) (*object, error) {
	rsp, err := tpm2.Create{
		ParentHandle: e.parent(nil),
		InPublic:     tpm2.New2B(tmpl),
	}.Execute(e.tpm)
	if err != nil {
		return nil, fmt.Errorf("tpm: create key: %w", err)
	}
	return &object{pub: rsp.OutPublic, priv: rsp.OutPrivate}, nil
}

// load loads o under the SRK; the caller flushes the handle when done and
// holds tpmMu throughout.
func (e *Enclave) load(o *object) (tpm2.NamedHandle, error) {
	rsp, err := tpm2.Load{
		ParentHandle: e.parent(nil),
		InPrivate:    o.priv,
		InPublic:     o.pub,
	}.Execute(e.tpm)
	if err != nil {
		return tpm2.NamedHandle{}, fmt.Errorf("tpm: load key (is this the TPM that created it?): %w", err)
	}
	return tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, nil
}

// flush evicts a transient object. A failure leaves a slot in use until
// the TPM resets; there is nothing better to do with it.
func (e *Enclave) flush(h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(e.tpm)
}

// eccObject returns the ECC key object kept in file (created from tmpl on
// first use) and its public point, uncompressed. The caller holds tpmMu.
func (e *Enclave) eccObject(file string, tmpl tpm2.TPMTPublic) (*object, []byte, error) {
	o, err := e.objectFor(file, tmpl, func() (*object, error) { return e.create(tmpl) })
	if err != nil {
		return nil, nil, err
	}
	pub, err := o.public()
	if err != nil {
		return nil, nil, err
	}
	point, err := eccPublic(pub)
	if err != nil {
		return nil, nil, err
	}
	return o, point, nil
}

// eccPublic returns the uncompressed point (0x04 || X || Y) of a P-256
// public area.
func eccPublic(pub *tpm2.TPMTPublic) ([]byte, error) {
	p, err := pub.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("tpm: not an ECC key: %w", err)
	}
	if len(p.X.Buffer) > 32 || len(p.Y.Buffer) > 32 {
		return nil, errors.New("tpm: not a P-256 point")
	}
	out := make([]byte, 65)
	out[0] = 4
	copy(out[33-len(p.X.Buffer):33], p.X.Buffer)
	copy(out[65-len(p.Y.Buffer):], p.Y.Buffer)
	return out, nil
}
