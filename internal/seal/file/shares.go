package file

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/secret"
)

// Dual control of the root key (issue 16): root.key mode 2 holds the root
// key wrapped under a random 32-byte unseal key that is never stored. The
// unseal key exists only as N Shamir shares (internal/crypto.Split, any K
// of which recover it), one per share file.
//
// root.key, mode 2 (modeShares), 83 bytes:
//
//	magic "DRK1" (4) | mode 0x02 (1) | share set id (16) | threshold K (1) |
//	shares N (1) | nonce (12) | AES-256-GCM(root key) (32) | tag (16)
//
// The GCM key is HKDF-SHA-256(unseal key, salt = share set id, info
// "dcaas/v1 unseal", 32 bytes); the additional data is the 23-byte header
// magic | mode | set id | K | N, so none of them can be changed.
//
// A share file is text: comment lines starting with "#", then one line of
// lowercase hex of the 59-byte share record
//
//	magic "DSH1" (4) | share set id (16) | threshold K (1) | shares N (1) |
//	index (1, 1..N: the share's x coordinate) | share value (32) |
//	checksum (4): the first 4 bytes of SHA-256 of the 55 bytes before it
//
// The checksum tells a damaged or mistyped file (ErrShareChecksum) from a
// well-formed share that does not belong (another set: a set id that
// differs; a wrong share of this set: the unseal fails as a whole, without
// saying which share was wrong). docs/formats.md quotes both layouts.
const (
	modeShares   byte = 2
	setIDSize         = 16
	unsealKeyLen      = 32
	unsealInfo        = "dcaas/v1 unseal"
	sharesHdrLen      = len(magic) + 1 + setIDSize + 2
	sharesLen         = sharesHdrLen + 12 + rootKeySize + 16

	shareMagic     = "DSH1"
	shareBodyLen   = len(shareMagic) + setIDSize + 3 + unsealKeyLen
	shareRecordLen = shareBodyLen + 4
	maxShareFile   = 4096
)

// Errors of the share-sealed root key (test with errors.Is).
var (
	// ErrSharesRequired: root.key is split into shares; the process must
	// start sealed and be unsealed (it cannot be opened with Open).
	ErrSharesRequired = errors.New("seal/file: the root key is split into unseal key shares")
	// ErrUnsealKey: the unseal key combined from the shares does not open
	// root.key: at least one share is wrong (which one is not known).
	ErrUnsealKey = errors.New("seal/file: the shares do not open the root key")
	// ErrShareFormat: the text is not a share file.
	ErrShareFormat = errors.New("seal/file: not an unseal key share")
	// ErrShareChecksum: a share record whose checksum does not match:
	// damaged or mistyped.
	ErrShareChecksum = errors.New("seal/file: share checksum mismatch (damaged or mistyped share)")
)

// ShareSet describes the split of a root key: its id (random, printed in
// every share file), the threshold K and the number of shares N.
type ShareSet struct {
	ID        [setIDSize]byte
	Threshold int
	Shares    int
}

// IDString is the set id in hex.
func (s ShareSet) IDString() string { return hex.EncodeToString(s.ID[:]) }

// UnsealShare is one parsed share file: its set, its index (1..N) and its
// value. Value is secret.
type UnsealShare struct {
	Set   ShareSet
	Index int
	Value *secret.Bytes
}

// String names the share, never its value.
func (s UnsealShare) String() string {
	return fmt.Sprintf("share %d of %d (set %s) [redacted]", s.Index, s.Set.Shares, s.Set.IDString())
}

// GoString is String.
func (s UnsealShare) GoString() string { return s.String() }

// EncodeShare returns the share file text of share index (1..N) of set.
func EncodeShare(set ShareSet, index int, value *secret.Bytes) []byte {
	rec := shareRecord(set, index, value)
	defer secret.Zero(rec)
	var b strings.Builder
	fmt.Fprintf(&b, "# dcaas unseal key share %d of %d (any %d open the root key), share set %s\n", index, set.Shares, set.Threshold, set.IDString())
	b.WriteString("# Keep it secret. Post it with: dcaas kms unseal --share-file FILE\n")
	b.WriteString(hex.EncodeToString(rec))
	b.WriteByte('\n')
	return []byte(b.String())
}

// shareRecord is the 59-byte record; the caller wipes it.
func shareRecord(set ShareSet, index int, value *secret.Bytes) []byte {
	rec := make([]byte, 0, shareRecordLen)
	rec = append(rec, shareMagic...)
	rec = append(rec, set.ID[:]...)
	rec = append(rec, byte(set.Threshold), byte(set.Shares), byte(index))
	rec = append(rec, value.Expose()...)
	sum := sha256.Sum256(rec)
	return append(rec, sum[:4]...)
}

// ParseShare reads share file text (or only its hex line): lines starting
// with "#" and all whitespace are ignored. It fails with ErrShareFormat
// for anything but one share record with consistent fields, and with
// ErrShareChecksum when the record's checksum does not match. It never
// panics. The caller owns the share's value.
func ParseShare(text []byte) (UnsealShare, error) {
	if len(text) > maxShareFile {
		return UnsealShare{}, fmt.Errorf("%w: %d bytes, a share file has about 250", ErrShareFormat, len(text))
	}
	var h strings.Builder
	for line := range strings.Lines(string(text)) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue
		}
		h.WriteString(strings.Join(strings.Fields(line), ""))
	}
	hx := strings.ToLower(h.String())
	if len(hx) != 2*shareRecordLen {
		return UnsealShare{}, fmt.Errorf("%w: %d hex digits, want %d", ErrShareFormat, len(hx), 2*shareRecordLen)
	}
	rec, err := hex.DecodeString(hx)
	if err != nil {
		return UnsealShare{}, fmt.Errorf("%w: not hex", ErrShareFormat)
	}
	defer secret.Zero(rec)
	if string(rec[:len(shareMagic)]) != shareMagic {
		return UnsealShare{}, fmt.Errorf("%w: it does not start with %x (%q)", ErrShareFormat, shareMagic, shareMagic)
	}
	sum := sha256.Sum256(rec[:shareBodyLen])
	if string(sum[:4]) != string(rec[shareBodyLen:]) {
		return UnsealShare{}, ErrShareChecksum
	}
	var set ShareSet
	p := rec[len(shareMagic):]
	copy(set.ID[:], p[:setIDSize])
	p = p[setIDSize:]
	set.Threshold, set.Shares = int(p[0]), int(p[1])
	index := int(p[2])
	if set.Threshold < 1 || set.Shares < set.Threshold || index < 1 || index > set.Shares {
		return UnsealShare{}, fmt.Errorf("%w: share %d of %d with threshold %d", ErrShareFormat, index, set.Shares, set.Threshold)
	}
	return UnsealShare{Set: set, Index: index, Value: secret.Copy(p[3 : 3+unsealKeyLen])}, nil
}

// encodeSharesKeyFile returns root.key mode 2: root wrapped under the
// unseal key. The nonce comes from crypto/rand.
func encodeSharesKeyFile(set ShareSet, root, unsealKey *secret.Bytes) ([]byte, error) {
	out := make([]byte, 0, sharesLen)
	out = append(out, magic...)
	out = append(out, modeShares)
	out = append(out, set.ID[:]...)
	out = append(out, byte(set.Threshold), byte(set.Shares))
	aead, err := unsealAEAD(unsealKey, set.ID[:])
	if err != nil {
		return nil, err
	}
	header := append([]byte(nil), out...)
	return aead.Seal(out, root.Expose(), header), nil
}

// parseSharesHeader reads the share set of a mode-2 file.
func parseSharesHeader(data []byte) (ShareSet, error) {
	if len(data) != sharesLen {
		return ShareSet{}, fmt.Errorf("%w: %d bytes, want %d", ErrCorrupt, len(data), sharesLen)
	}
	var set ShareSet
	copy(set.ID[:], data[len(magic)+1:])
	set.Threshold, set.Shares = int(data[sharesHdrLen-2]), int(data[sharesHdrLen-1])
	if set.Threshold < 1 || set.Shares < set.Threshold {
		return ShareSet{}, fmt.Errorf("%w: threshold %d of %d shares", ErrCorrupt, set.Threshold, set.Shares)
	}
	return set, nil
}

// unsealAEAD is AES-256-GCM under HKDF(unseal key, set id, "dcaas/v1 unseal").
func unsealAEAD(unsealKey *secret.Bytes, setID []byte) (*kcrypto.AEAD, error) {
	k, err := kcrypto.HKDF(unsealKey, setID, []byte(unsealInfo), kcrypto.AEADKeySize)
	if err != nil {
		return nil, fmt.Errorf("seal/file: deriving the unseal wrapping key: %w", err)
	}
	defer k.Wipe()
	return kcrypto.NewAEAD(k)
}

// SharesOf reports the share set of dir/root.key: ok is false when the
// file is not split into shares (or does not exist).
func SharesOf(dir string) (set ShareSet, ok bool, err error) {
	data, err := readKeyFile(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return ShareSet{}, false, nil
	}
	if err != nil {
		return ShareSet{}, false, err
	}
	defer secret.Zero(data)
	if len(data) < len(magic)+1 || string(data[:len(magic)]) != magic || data[len(magic)] != modeShares {
		return ShareSet{}, false, nil
	}
	set, err = parseSharesHeader(data)
	return set, err == nil, err
}

// InitShares creates dir (0700) and dir/root.key (mode 2) holding a fresh
// root key wrapped under a fresh unseal key, split into n shares with
// threshold k (1 <= k <= n <= 255). It refuses when root.key exists
// (fs.ErrExist), changing nothing. It returns the Sealer of the new root
// key and the n share files' contents; the unseal key itself is wiped.
func InitShares(dir string, n, k int) (*Sealer, ShareSet, [][]byte, error) {
	if err := checkSplit(n, k); err != nil {
		return nil, ShareSet{}, nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, ShareSet{}, nil, fmt.Errorf("seal/file: %w", err)
	}
	root := secret.New(make([]byte, rootKeySize))
	rand.Read(root.Expose())
	defer root.Wipe()
	set, files, data, err := splitRoot(root, n, k)
	if err != nil {
		return nil, ShareSet{}, nil, err
	}
	if err := createKeyFile(dir, data); err != nil {
		return nil, ShareSet{}, nil, fmt.Errorf("seal/file: creating %s: %w", keyFileName, err)
	}
	s, err := newSealer(root, true)
	return s, set, files, err
}

// OpenShares combines the shares (at least the threshold, all of dir's
// share set, distinct) into the unseal key and opens dir/root.key with it.
// ErrUnsealKey: the combined key does not open the file.
func OpenShares(dir string, shares []UnsealShare) (*Sealer, error) {
	data, err := readSharesFile(dir)
	if err != nil {
		return nil, err
	}
	defer secret.Zero(data)
	root, err := openSharesFile(data, shares)
	if err != nil {
		return nil, err
	}
	defer root.Wipe()
	return newSealer(root, true)
}

// Rekey splits the root key of dir anew, for a change of custodians or
// of N and K, or after a share was lost or exposed: the shares, at least the
// threshold of dir's share set, open root.key; a fresh unseal key wraps
// the same root key under a new share set of n shares with threshold k,
// and write is handed the new set and its n share files' contents. Only
// when write succeeds is root.key replaced (atomically), so that a failure
// at any step leaves the old shares valid and root.key as it was; the new
// share files are then the caller's to remove. The root key does not
// change: everything sealed under it stays openable and a running KMS is
// unaffected. ErrUnsealKey: the shares do not open root.key.
//
// The old shares still open any copy of the old root.key (a backup, a
// replica's data dir): replace or destroy those copies too.
func Rekey(dir string, shares []UnsealShare, n, k int, write func(ShareSet, [][]byte) error) (ShareSet, error) {
	if err := checkSplit(n, k); err != nil {
		return ShareSet{}, err
	}
	data, err := readSharesFile(dir)
	if err != nil {
		return ShareSet{}, err
	}
	defer secret.Zero(data)
	root, err := openSharesFile(data, shares)
	if err != nil {
		return ShareSet{}, err
	}
	defer root.Wipe()
	return resplit(dir, root, n, k, write)
}

// Split moves the root key of dir from the passphrase (mode 1, or none:
// mode 0) to dual control: as seal init would have made it, wrapped under a
// fresh unseal key split into n shares with threshold k (mode 2). The
// passphrase must open root.key (ErrPassphrase otherwise); write and the
// replacement of root.key are as in Rekey, and so is what a failure leaves.
// The root key does not change. A root.key split already is refused with
// ErrSharesRequired (Rekey changes that split).
func Split(dir string, passphrase *secret.Bytes, n, k int, write func(ShareSet, [][]byte) error) (ShareSet, error) {
	if err := checkSplit(n, k); err != nil {
		return ShareSet{}, err
	}
	data, err := loadKeyFile(dir)
	if err != nil {
		return ShareSet{}, err
	}
	defer secret.Zero(data)
	root, _, err := decodeKeyFile(data, passphrase)
	if err != nil {
		return ShareSet{}, err
	}
	defer root.Wipe()
	return resplit(dir, root, n, k, write)
}

// resplit wraps root under a new share set of n shares with threshold k,
// hands write the share files, and only when it succeeds replaces
// dir/root.key (Rekey, Split).
func resplit(dir string, root *secret.Bytes, n, k int, write func(ShareSet, [][]byte) error) (ShareSet, error) {
	set, files, out, err := splitRoot(root, n, k)
	if err != nil {
		return ShareSet{}, err
	}
	defer secret.Zero(out)
	defer func() {
		for _, f := range files {
			secret.Zero(f)
		}
	}()
	if err := write(set, files); err != nil {
		return ShareSet{}, err
	}
	if err := replaceKeyFile(dir, out); err != nil {
		return ShareSet{}, fmt.Errorf("seal/file: writing %s (it still opens as before; the new shares open nothing): %w", keyFileName, err)
	}
	return set, nil
}

// checkSplit refuses share counts Split cannot make.
func checkSplit(n, k int) error {
	if k < 1 || n < k || n > kcrypto.MaxShares {
		return fmt.Errorf("seal/file: %d shares with threshold %d: want 1 <= threshold <= shares <= %d", n, k, kcrypto.MaxShares)
	}
	return nil
}

// splitRoot wraps root under a fresh unseal key split into n shares with
// threshold k: the new share set, the share files' contents and root.key
// mode 2. The unseal key is wiped.
func splitRoot(root *secret.Bytes, n, k int) (ShareSet, [][]byte, []byte, error) {
	set := ShareSet{Threshold: k, Shares: n}
	rand.Read(set.ID[:])
	unsealKey := secret.New(make([]byte, unsealKeyLen))
	rand.Read(unsealKey.Expose())
	defer unsealKey.Wipe()
	shares, err := kcrypto.Split(unsealKey, n, k)
	if err != nil {
		return ShareSet{}, nil, nil, err
	}
	files := make([][]byte, n)
	for i, s := range shares {
		files[i] = EncodeShare(set, int(s.X), s.Y)
		s.Wipe()
	}
	out, err := encodeSharesKeyFile(set, root, unsealKey)
	if err != nil {
		return ShareSet{}, nil, nil, err
	}
	return set, files, out, nil
}

// readSharesFile reads dir/root.key, which must be split into shares
// (mode 2). The caller wipes the data.
func readSharesFile(dir string) ([]byte, error) {
	data, err := loadKeyFile(dir)
	if err != nil {
		return nil, err
	}
	if len(data) < len(magic)+1 || string(data[:len(magic)]) != magic || data[len(magic)] != modeShares {
		secret.Zero(data)
		return nil, fmt.Errorf("%w: %s is not split into shares", ErrCorrupt, keyFileName)
	}
	return data, nil
}

// openSharesFile combines the shares (at least the threshold, all of the
// file's share set, distinct) into the unseal key and opens root.key mode
// 2 data with it: the root key, which the caller wipes.
func openSharesFile(data []byte, shares []UnsealShare) (*secret.Bytes, error) {
	set, err := parseSharesHeader(data)
	if err != nil {
		return nil, err
	}
	if len(shares) < set.Threshold {
		return nil, fmt.Errorf("seal/file: %d of the %d shares needed", len(shares), set.Threshold)
	}
	points := make([]kcrypto.Share, len(shares))
	for i, s := range shares {
		if s.Set != set {
			return nil, fmt.Errorf("seal/file: share %d is of share set %s, %s is of %s", s.Index, s.Set.IDString(), keyFileName, set.IDString())
		}
		points[i] = kcrypto.Share{X: byte(s.Index), Y: s.Value}
	}
	unsealKey, err := kcrypto.Combine(points)
	if err != nil {
		return nil, err
	}
	defer unsealKey.Wipe()
	aead, err := unsealAEAD(unsealKey, set.ID[:])
	if err != nil {
		return nil, err
	}
	root, err := aead.Open(nil, data[sharesHdrLen:], data[:sharesHdrLen])
	if err != nil {
		return nil, ErrUnsealKey
	}
	return secret.New(root), nil
}
