package wire

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// recordingReader yields body in reads of at most step bytes, keeps each
// slice it was given to fill (they alias ReadBody's arrays), and after
// the body either reports EOF or, with fail, scribbles past its count
// and fails.
type recordingReader struct {
	body  []byte
	step  int
	fail  bool
	given [][]byte
}

func (r *recordingReader) Read(p []byte) (int, error) {
	r.given = append(r.given, p)
	if len(r.body) == 0 {
		if r.fail {
			for i := range p {
				p[i] = 'X' // what a reader may do with the room it was given
			}
			return 0, errors.New("connection reset")
		}
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.step)], r.body)
	r.body = r.body[n:]
	return n, nil
}

// TestReadBody: ReadBody returns the body whatever the read sizes and
// announced length, and leaves no copy of it in an array it let go of;
// on a failed read it wipes all of its array.
func TestReadBody(t *testing.T) {
	body := []byte(strings.Repeat("pan 4111 1111 1111 1111;", 200)) // 4,800 bytes
	for _, tc := range []struct {
		name string
		dst  int   // capacity of the (zeroed) buffer offered
		size int64 // announced length
		step int
		fail bool
	}{
		{name: "announced, fits", dst: 8192, size: int64(len(body)), step: 1000},
		{name: "announced, buffer too small", dst: 64, size: int64(len(body)), step: 1000},
		{name: "not announced, grows", dst: 0, size: 0, step: 700},
		{name: "not announced, small reads", dst: 100, size: -1, step: 13},
		{name: "announced short (the body is longer)", dst: 0, size: 100, step: 1000},
		{name: "announced long (the body is shorter)", dst: 0, size: 9000, step: 1000},
		{name: "read fails", dst: 0, size: 0, step: 700, fail: true},
		{name: "read fails, announced", dst: 8192, size: int64(len(body)) + 10, step: 1000, fail: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recordingReader{body: body, step: tc.step, fail: tc.fail}
			got, err := ReadBody(make([]byte, 0, tc.dst), r, tc.size)
			if tc.fail {
				if err == nil || len(got) != 0 {
					t.Fatalf("ReadBody = %d bytes, %v; want an error and nothing", len(got), err)
				}
			} else if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("ReadBody = %d bytes, %v; want the %d-byte body", len(got), err, len(body))
			}
			// Every array ReadBody wrote into is either the one it
			// returned (the caller's to wipe) or all zeros now.
			for _, p := range r.given {
				if !tc.fail && sameArray(p, got) {
					continue // the array returned
				}
				if strings.Trim(string(p[:cap(p)]), "\x00") != "" {
					t.Fatalf("an array ReadBody let go of still holds %.40q...", p[:cap(p)])
				}
			}
		})
	}
	// A reader of the standard library's test kit: one byte at a time,
	// and data with the EOF.
	for _, r := range []io.Reader{iotest.OneByteReader(bytes.NewReader(body)), iotest.DataErrReader(bytes.NewReader(body))} {
		if got, err := ReadBody(nil, r, 0); err != nil || !bytes.Equal(got, body) {
			t.Fatalf("ReadBody(%T) = %d bytes, %v", r, len(got), err)
		}
	}
}

// sameArray reports whether p and q are slices of one array that reach to
// its end (as the slices ReadBody reads into and returns do).
func sameArray(p, q []byte) bool {
	return cap(p) > 0 && cap(q) > 0 && &p[:cap(p)][cap(p)-1] == &q[:cap(q)][cap(q)-1]
}
