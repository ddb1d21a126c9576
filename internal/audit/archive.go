package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/dcaas/dcaas/api"
	kcrypto "github.com/dcaas/dcaas/internal/crypto"
	"github.com/dcaas/dcaas/internal/store"
)

// An archive holds records pruned from the start of the log, to keep
// elsewhere (docs/formats.md §4.1): JSON Lines, a header (ArchiveHeader)
// then one record a line, as GET /v1/audit answers them (api.AuditRecord),
// the records after the header's start, in order, ending with a signed
// record. It verifies with the audit key alone, and archives made one
// after another chain: each starts after the last record of the one
// before.

// ArchiveFormat names the format in an archive's header.
const ArchiveFormat = "dcaas-audit-archive/v1"

// maxArchiveLine bounds one line of an archive (a record is a few hundred
// bytes).
const maxArchiveLine = 1 << 20

// ArchiveHeader is an archive's first line: the format, the id of the
// audit key that signed its records, and the signed record it starts
// after (the zero Start: the log's first record).
type ArchiveHeader struct {
	Format string `json:"format"`
	KeyID  string `json:"key_id"`
	Start  Start  `json:"start"`
}

// ArchiveWriter writes an archive. Records are added in order; an
// unsigned record is held until the signed record that covers it is
// added, so the archive ends with a signed record: Close drops those
// still held. It does not verify (feed a Verifier the same records).
type ArchiveWriter struct {
	w       *bufio.Writer
	enc     *json.Encoder
	pending []store.AuditRecord
	end     store.AuditRecord
	n       int64
}

// NewArchiveWriter writes the header of an archive of records signed by
// key, after start, to w.
func NewArchiveWriter(w io.Writer, key kcrypto.LogVerifyKey, start Start) (*ArchiveWriter, error) {
	bw := bufio.NewWriter(w)
	a := &ArchiveWriter{w: bw, enc: json.NewEncoder(bw)}
	return a, a.enc.Encode(ArchiveHeader{Format: ArchiveFormat, KeyID: key.ID(), Start: start})
}

// Add adds the next record.
func (a *ArchiveWriter) Add(r store.AuditRecord) error {
	a.pending = append(a.pending, r)
	if r.Sig == nil {
		return nil
	}
	for _, p := range a.pending {
		if err := a.enc.Encode(ToAPI(p)); err != nil {
			return err
		}
	}
	a.n += int64(len(a.pending))
	a.pending, a.end = a.pending[:0], r
	return nil
}

// Close writes what is buffered and returns the archive's last record
// and how many records it holds; an archive of no record is an error.
func (a *ArchiveWriter) Close() (end store.AuditRecord, n int64, err error) {
	if a.n == 0 {
		return a.end, 0, errors.New("audit: no signed record to archive")
	}
	return a.end, a.n, a.w.Flush()
}

// ArchiveChain verifies archives read one after another, in order, as one
// log: the first starts after its header's start (a record the key
// signed, or the log's first record), each next one after the last
// record of the one before; every record is checked as Verify checks a
// log, each archive must end with a signed record, and each checkpoint
// given whose record an archive holds must match it.
type ArchiveChain struct {
	v    *Verifier
	key  kcrypto.LogVerifyKey
	cps  map[int64][]store.AuditCheckpoint
	read int // archives read

	// Start: the first archive starts after this record.
	Start int64
	// End is the last record of the last archive read.
	End Start
	// Records is how many records the archives read hold.
	Records int64
	// Matched are the checkpoints given whose record the archives hold.
	Matched []store.AuditCheckpoint
}

// NewArchiveChain returns a chain verified with key, the log's first,
// holding checkpoints (each checked for its signature, by a key the log
// trusts by then, when its record is read).
func NewArchiveChain(key kcrypto.LogVerifyKey, checkpoints ...store.AuditCheckpoint) (*ArchiveChain, error) {
	v, err := NewVerifier(key)
	if err != nil {
		return nil, err
	}
	c := &ArchiveChain{v: v, key: key, cps: map[int64][]store.AuditCheckpoint{}}
	for _, cp := range checkpoints {
		// Signed by the first key or one the log rotated to: checked when
		// its record is read.
		c.cps[cp.Seq] = append(c.cps[cp.Seq], cp)
	}
	return c, nil
}

// Read reads and verifies the next archive from r. Its first failure
// sticks: the chain cannot go on after it.
func (c *ArchiveChain) Read(r io.Reader) error {
	lines := &archiveLines{r: bufio.NewReaderSize(r, 64<<10)}
	var h ArchiveHeader
	if err := lines.next(&h); err != nil {
		return fmt.Errorf("audit: not an archive: %w", err)
	}
	switch {
	case h.Format != ArchiveFormat:
		return fmt.Errorf("audit: not an archive (format %q, want %q)", h.Format, ArchiveFormat)
	case h.KeyID != c.key.ID():
		return fmt.Errorf("audit: the archive's records are signed by audit key %s, not by %s", h.KeyID, c.key.ID())
	case c.read == 0:
		if err := c.v.StartAfter(h.Start, false); err != nil {
			return err
		}
		c.Start, c.End = h.Start.Seq, h.Start
	case h.Start.Seq != c.End.Seq || !bytes.Equal(h.Start.Hash, c.End.Hash):
		return fmt.Errorf("audit: the archive starts after record %d, but the archive before it ends at record %d: give the archives in order, none missing", h.Start.Seq, c.End.Seq)
	}
	c.read++
	var last store.AuditRecord
	for {
		var ar api.AuditRecord
		err := lines.next(&ar)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("audit: archive %w", err)
		}
		rec := FromAPI(ar)
		if err := c.v.Add(rec); err != nil {
			return err
		}
		if err := c.v.checkpointsSigned(c.cps[rec.Seq]); err != nil {
			return err
		}
		if err := matchCheckpoints(c.cps[rec.Seq], rec.Hash); err != nil {
			return err
		}
		c.Matched = append(c.Matched, c.cps[rec.Seq]...)
		last = rec
		c.Records++
	}
	switch {
	case last.Seq == 0:
		return errors.New("audit: the archive holds no record")
	case last.Sig == nil:
		return fmt.Errorf("audit: the archive ends with record %d, which is not signed: an archive ends with a signed record, so it was cut short", last.Seq)
	}
	c.End = StartOf(last)
	_, err := c.v.Result()
	return err
}

// archiveLines reads an archive's lines, each at most maxArchiveLine.
type archiveLines struct {
	r    *bufio.Reader
	line int
}

// next decodes the next line into v strictly (no unknown field, one JSON
// value); io.EOF at the end.
func (a *archiveLines) next(v any) error {
	var buf []byte
	for {
		chunk, err := a.r.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > maxArchiveLine {
			return fmt.Errorf("line %d is longer than %d bytes", a.line+1, maxArchiveLine)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && (!errors.Is(err, io.EOF) || len(buf) == 0) {
			return err
		}
		break
	}
	a.line++
	dec := json.NewDecoder(bytes.NewReader(buf))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("line %d: %w", a.line, err)
	}
	if dec.More() {
		return fmt.Errorf("line %d: more than one JSON value", a.line)
	}
	return nil
}

// ToAPI is r as the API and archives carry it.
func ToAPI(r store.AuditRecord) api.AuditRecord {
	return api.AuditRecord{
		Seq: r.Seq, Time: r.Time, Caller: r.Caller, Role: r.Role, Action: r.Action, Tenant: r.Tenant,
		KeyID: r.KeyID, Outcome: r.Outcome, Code: r.Code, PrevHash: r.PrevHash, Hash: r.Hash, Signature: r.Sig,
	}
}

// FromAPI is a record as GET /v1/audit answers it (and an archive holds
// it), for a Verifier.
func FromAPI(r api.AuditRecord) store.AuditRecord {
	return store.AuditRecord{
		Seq: r.Seq, Time: r.Time, Caller: r.Caller, Role: r.Role, Action: r.Action, Tenant: r.Tenant,
		KeyID: r.KeyID, Outcome: r.Outcome, Code: r.Code, PrevHash: r.PrevHash, Hash: r.Hash, Sig: r.Signature,
	}
}
