package wire

import (
	"errors"
	"io"
)

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
