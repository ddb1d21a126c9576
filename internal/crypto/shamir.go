package crypto

import (
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/dcaas/dcaas/internal/secret"
)

// Shamir secret sharing over GF(2^8), the field of AES (reduction
// polynomial x^8 + x^4 + x^3 + x + 1, 0x11b): each byte of the secret is
// the constant term of its own random polynomial of degree k-1, and share
// i holds the values of all of them at x = i. Any k shares determine the
// polynomials (Lagrange interpolation at 0); fewer reveal nothing about
// the secret. This is the scheme of HashiCorp Vault and OpenBao (their
// shares interoperate with ours: see shamir_test.go), except that our x
// coordinates are the share numbers 1..n rather than a random
// permutation, so a share file can say which share it is.
//
// The field arithmetic is constant time: multiplication is a fixed
// 8-round shift-and-add with masks instead of branches, and inversion is
// a^254 by a fixed chain of multiplications. No table is indexed by a
// value derived from the secret or a share.

// Limits of Split: at most 255 shares (the non-zero elements of the
// field), and a threshold of at least 1.
const (
	MaxShares = 255
)

// ErrShares: the shares given to Combine cannot be combined (too few, a
// duplicate or zero x coordinate, lengths that differ). A set of distinct,
// well-formed shares that is not of the same secret is not detected here:
// Combine then returns a wrong secret, which the caller checks (the
// unseal key opens root.key or it does not).
var ErrShares = errors.New("crypto: shares cannot be combined")

// Share is one share of a secret split by Split: the point X (1..255) and
// the values Y of the secret's polynomials there, one byte per byte of the
// secret. Y is secret; Share redacts it when printed.
type Share struct {
	X byte
	Y *secret.Bytes
}

// String names the share's x coordinate, never its value.
func (s Share) String() string { return fmt.Sprintf("share %d [redacted]", s.X) }

// GoString is String.
func (s Share) GoString() string { return s.String() }

// Wipe zeroes the share's value.
func (s Share) Wipe() { s.Y.Wipe() }

// gfMul multiplies a and b in GF(2^8) mod 0x11b in constant time: eight
// rounds of "double r, reduce, add a if this bit of b is set", with
// masks instead of branches.
func gfMul(a, b byte) byte {
	var r byte
	for i := 7; i >= 0; i-- {
		// r = r*x, reduced: subtract 0x11b when the top bit was set.
		r = (r << 1) ^ (-(r >> 7) & 0x1b)
		// r += a when bit i of b is set.
		r ^= -((b >> uint(i)) & 1) & a
	}
	return r
}

// gfInv is the inverse of a in GF(2^8) (a^254, since a^255 = 1), and 0
// for 0, by a fixed sequence of squarings and multiplications.
func gfInv(a byte) byte {
	a2 := gfMul(a, a)     // a^2
	a3 := gfMul(a2, a)    // a^3
	a6 := gfMul(a3, a3)   // a^6
	a12 := gfMul(a6, a6)  // a^12
	a15 := gfMul(a12, a3) // a^15
	a24 := gfMul(a12, a12)
	a48 := gfMul(a24, a24)
	a63 := gfMul(a48, a15)
	a126 := gfMul(a63, a63)
	a127 := gfMul(a126, a)
	return gfMul(a127, a127) // a^254
}

// Split splits sec into n shares, any k of which recover it and fewer of
// which reveal nothing about it; share i (0-based) has X = i+1. The
// coefficients come from crypto/rand. 1 <= k <= n <= 255; k = 1 makes
// every share a copy of the secret, which callers allow only on request.
// The caller keeps ownership of sec and owns the shares.
func Split(sec *secret.Bytes, n, k int) ([]Share, error) {
	if k < 1 || n < k || n > MaxShares {
		return nil, fmt.Errorf("crypto: split into %d shares with threshold %d: want 1 <= threshold <= shares <= %d", n, k, MaxShares)
	}
	s := sec.Expose()
	if len(s) == 0 {
		return nil, errors.New("crypto: cannot split an empty secret")
	}
	shares := make([]Share, n)
	for i := range shares {
		shares[i] = Share{X: byte(i + 1), Y: secret.New(make([]byte, len(s)))}
	}
	// coef holds the k-1 random coefficients of one byte's polynomial.
	coef := make([]byte, k-1)
	defer secret.Zero(coef)
	for j, c0 := range s {
		rand.Read(coef)
		for i := range shares {
			x := shares[i].X
			// Horner: ((c_{k-1} x + c_{k-2}) x + ...) x + c0.
			var y byte
			for d := len(coef) - 1; d >= 0; d-- {
				y = gfMul(y, x) ^ coef[d]
			}
			shares[i].Y.Expose()[j] = gfMul(y, x) ^ c0
		}
	}
	return shares, nil
}

// Combine recovers the secret from shares by Lagrange interpolation at
// x = 0. Give it at least the threshold of distinct shares of one Split
// (more do no harm); with fewer, or shares of different splits, the result
// is a wrong secret of the right length, which the caller must detect.
// It fails with ErrShares when there are no shares, two share one x, an x
// is 0, or the values differ in length. The caller owns the result.
func Combine(shares []Share) (*secret.Bytes, error) {
	if len(shares) == 0 {
		return nil, fmt.Errorf("%w: no shares", ErrShares)
	}
	size := shares[0].Y.Len()
	if size == 0 {
		return nil, fmt.Errorf("%w: empty share", ErrShares)
	}
	var seen [256]bool
	for _, s := range shares {
		if s.X == 0 {
			return nil, fmt.Errorf("%w: share number 0", ErrShares)
		}
		if seen[s.X] {
			return nil, fmt.Errorf("%w: share %d given twice", ErrShares, s.X)
		}
		seen[s.X] = true
		if s.Y.Len() != size {
			return nil, fmt.Errorf("%w: shares of %d and %d bytes", ErrShares, size, s.Y.Len())
		}
	}
	// The Lagrange basis at 0 depends only on the (public) x coordinates:
	// l_i = prod_{j != i} x_j / (x_i - x_j); subtraction is XOR.
	basis := make([]byte, len(shares))
	for i, si := range shares {
		num, den := byte(1), byte(1)
		for j, sj := range shares {
			if i == j {
				continue
			}
			num = gfMul(num, sj.X)
			den = gfMul(den, si.X^sj.X)
		}
		basis[i] = gfMul(num, gfInv(den))
	}
	out := make([]byte, size)
	for i, s := range shares {
		y := s.Y.Expose()
		for j := range out {
			out[j] ^= gfMul(y[j], basis[i])
		}
	}
	return secret.New(out), nil
}
