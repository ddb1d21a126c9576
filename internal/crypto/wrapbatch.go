package crypto

import (
	"crypto/hpke"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/dcaas/dcaas/internal/format"
	"github.com/dcaas/dcaas/internal/secret"
)

// batchKEKContextV2 is the HPKE exporter context of a version-2 batch's
// key-encryption key.
const batchKEKContextV2 = "dcaas/v2 batch-wrap kek"

// BatchItem is one key of a SealBatch: its exact metadata bytes and the
// encryption count to bind to it, and the key material (the caller's; not
// retained).
type BatchItem struct {
	Metadata    []byte
	Encryptions int64
	Key         *secret.Bytes
}

// SealBatch seals every item's key to pub, for the sidecar instance
// recipient, as one format.WrappedBatch (version 2) valid from issuedAt
// until notAfter, and returns its encoding (not secret; the caller owns
// it). One HPKE encapsulation (RFC 9180 base mode, HKDF-SHA-256,
// AES-256-GCM, info format.TransportInfoV2(recipient)) serves the batch;
// its export "dcaas/v2 batch-wrap kek" (32 bytes) is the AES-256-GCM key
// that seals item i with associated data format.AppendEntryAAD(header, i):
// the batch header (KEM, enc, recipient, times, count) and the item's
// metadata and count. The kek is wiped.
//
// A KEM dcaas does not offer is ErrUnknownKEM, a non-approved one in FIPS
// mode ErrNotApproved; key material of 0 or over MaxDEKSize bytes is
// ErrInvalidKey; anything the format cannot hold (no items, too many,
// metadata too long, times out of order) wraps format.ErrMalformed.
func SealBatch(pub hpke.PublicKey, recipient string, issuedAt, notAfter time.Time, items []BatchItem) ([]byte, error) {
	kemID := pub.KEM().ID()
	if _, err := kemOfID(kemID); err != nil {
		return nil, err
	}
	w := &format.WrappedBatch{
		KEMID: kemID, Enc: []byte{0}, Recipient: recipient,
		IssuedAt: issuedAt.UnixMilli(), NotAfter: notAfter.UnixMilli(),
		Keys: make([]format.BatchEntry, len(items)),
	}
	for i, it := range items {
		if n := it.Key.Len(); n < 1 || n > MaxDEKSize {
			return nil, fmt.Errorf("%w: item %d: key material of %d bytes not in 1..%d", ErrInvalidKey, i, n, MaxDEKSize)
		}
		w.Keys[i] = format.BatchEntry{Metadata: it.Metadata, Encryptions: it.Encryptions, Sealed: make([]byte, format.MinSealedLen)}
	}
	// Check everything the format bounds before paying for the
	// encapsulation (Enc is a placeholder until then).
	if err := w.Validate(); err != nil {
		return nil, err
	}
	enc, sender, err := hpke.NewSender(pub, hpke.HKDFSHA256(), hpke.AES256GCM(), format.TransportInfoV2(recipient))
	if err != nil {
		return nil, fmt.Errorf("crypto: HPKE encapsulation: %w", err)
	}
	w.Enc = enc
	if err := w.Validate(); err != nil {
		return nil, err
	}
	a, err := batchAEADContext(sender.Export, batchKEKContextV2)
	if err != nil {
		return nil, err
	}
	header := w.Header()
	var aad []byte
	for i, it := range items {
		e := &w.Keys[i]
		aad = format.AppendEntryAAD(aad[:0], header, i, e)
		e.Sealed = a.Seal(make([]byte, 0, it.Key.Len()+AEADOverhead), it.Key.Expose(), aad)
	}
	return w.Marshal(), nil
}

// parallelOpenMin is the batch size from which OpenBatch opens keys on
// every core.
const parallelOpenMin = 256

// OpenBatch parses a marshaled format.WrappedBatch and opens every key in
// it with priv (secret, the caller's), checking that it was sealed to the
// instance recipient. It returns the parsed batch and the keys in order
// (new secrets the caller owns and wipes). It is all or nothing: on any
// error no key is returned. A malformed batch is an error wrapping
// format.ErrMalformed; every other failure (another recipient, KEM, enc,
// header field, metadata, count or ciphertext bit) is ErrDecrypt. It does
// not look at the batch's times: the caller checks them against its clock.
// Large batches are opened on every core.
func OpenBatch(priv hpke.PrivateKey, recipient string, blob []byte) (*format.WrappedBatch, []*secret.Bytes, error) {
	kemID := priv.KEM().ID()
	if _, err := kemOfID(kemID); err != nil {
		return nil, nil, err
	}
	w, err := format.ParseWrappedBatch(blob)
	if err != nil {
		return nil, nil, err
	}
	if w.KEMID != kemID || w.Recipient != recipient {
		return nil, nil, ErrDecrypt
	}
	r, err := hpke.NewRecipient(w.Enc, priv, hpke.HKDFSHA256(), hpke.AES256GCM(), format.TransportInfoV2(recipient))
	if err != nil {
		return nil, nil, ErrDecrypt
	}
	a, err := batchAEADContext(r.Export, batchKEKContextV2)
	if err != nil {
		return nil, nil, ErrDecrypt
	}
	header := w.Header()
	keys := make([]*secret.Bytes, len(w.Keys))
	open := func(lo, hi int) error {
		var aad []byte
		for i := lo; i < hi; i++ {
			e := &w.Keys[i]
			aad = format.AppendEntryAAD(aad[:0], header, i, e)
			k, err := a.Open(nil, e.Sealed, aad)
			if err != nil {
				return ErrDecrypt
			}
			keys[i] = secret.New(k)
		}
		return nil
	}
	workers := 1
	if len(keys) >= parallelOpenMin {
		workers = runtime.GOMAXPROCS(0)
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	per := (len(keys) + workers - 1) / workers
	for j := 0; j < workers; j++ {
		lo, hi := j*per, min((j+1)*per, len(keys))
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[j] = open(lo, hi)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			for _, k := range keys {
				k.Wipe()
			}
			return nil, nil, err
		}
	}
	return w, keys, nil
}

// batchAEADContext derives a batch's kek with export under context and
// returns its AEAD. The kek bytes are wiped before it returns.
func batchAEADContext(export func(string, int) ([]byte, error), context string) (*AEAD, error) {
	b, err := export(context, AEADKeySize)
	if err != nil {
		return nil, fmt.Errorf("crypto: HPKE export: %w", err)
	}
	kek := secret.New(b)
	defer kek.Wipe()
	return NewAEAD(kek)
}
