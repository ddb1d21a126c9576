package wire

import (
	"errors"
	"io"
	"sync"
)

// bodies holds the arrays request and answer bodies are read and encoded
// into, on the servers (internal/httpapi) and in the SDK, as *[]byte of
// length 0. A pooled array is all zeros: what was written into it is
// wiped before it goes back (PutBody), since bodies carry plaintexts and
// keys.
var bodies = sync.Pool{New: func() any { return new([]byte) }}

// GetBody returns a pooled array for a body: length 0, all zeros.
func GetBody() *[]byte { return bodies.Get().(*[]byte) }

// PutBody wipes used — what was written into buf's array, or into the
// larger one that replaced it (ReadBody, AppendPooled) — and pools its
// array in buf, unless a large body grew it past 4 MiB (a large batch
// should not pin memory). Since a pooled array is all zeros, wiping what
// was written is enough; wiping the whole capacity made every small
// request pay for the largest body the array ever held, a 2 MiB clear for
// each 1 KiB encrypt on a sidecar after a large load
// (internal/httpapi's BenchmarkDecodeAfterLargeBody).
func PutBody(buf *[]byte, used []byte) {
	clear(used)
	if cap(used) <= 4<<20 {
		*buf = used[:0]
		bodies.Put(buf)
	}
}

// AppendPooled is Append into buf's pooled array, followed by end (the
// servers end an answer with a newline). An array the JSON outgrows,
// which may hold a prefix of it, is wiped whole; the array returned is
// the caller's to give back with PutBody(buf, b). When Append declines v,
// nothing was written.
func AppendPooled(buf *[]byte, v any, end string) ([]byte, bool) {
	b, ok := Append(*buf, v)
	if !ok {
		return b, false
	}
	wipeIfMoved(*buf, b)
	e := append(b, end...)
	wipeIfMoved(b, e)
	return e, true
}

// wipeIfMoved wipes all of from's array when an append moved its bytes to
// another array, to (an append either stays in place, keeping the
// capacity, or copies into a larger one).
func wipeIfMoved(from, to []byte) {
	if cap(to) != cap(from) {
		clear(from[:cap(from)])
	}
}

// minRead is the least room ReadBody offers a Read.
const minRead = 512

// ReadBody reads r to EOF into dst[:0] — an empty slice whose capacity
// holds only zeros, as the servers' and the SDK's pooled buffers do — and
// returns what it read. Bodies carry plaintexts and keys, so no copy is
// left behind: when the body outgrows dst's array, that array is wiped
// once its bytes are copied to a larger one, and when r fails, all of the
// array is wiped (a reader may write past the count it returns, as
// http.MaxBytesReader does with the byte that proves a body too long) and
// an empty slice is returned with the error. size, when positive, is the
// body's announced length (Content-Length), which the caller has bounded;
// the room is made at once. The caller wipes the slice returned when it is
// done with it.
func ReadBody(dst []byte, r io.Reader, size int64) ([]byte, error) {
	dst = dst[:0]
	if size > 0 && int64(cap(dst)) < size+1 {
		// minRead more than the body: room for the read that sees EOF,
		// and for an answer a little longer than the request (an
		// encrypt's), which the servers encode into the same pooled
		// array afterwards.
		dst = make([]byte, 0, size+minRead)
	}
	for {
		if len(dst) == cap(dst) || (size <= 0 && cap(dst)-len(dst) < minRead) {
			grown := make([]byte, len(dst), 2*cap(dst)+minRead)
			copy(grown, dst)
			clear(dst[:cap(dst)])
			dst = grown
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if errors.Is(err, io.EOF) {
			return dst, nil
		}
		if err != nil {
			clear(dst[:cap(dst)])
			return dst[:0], err
		}
	}
}
