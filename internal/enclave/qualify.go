package enclave

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/dcaas/dcaas/api"
)

func qualifyingData(nonce, identitySPKI []byte, transport api.PublicKey) []byte {
	h := sha256.New()
	field := func(b []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte("dcaas/v1 enrollment attestation"))
	field(nonce)
	spki := sha256.Sum256(identitySPKI)
	field(spki[:])
	field([]byte(transport.KEM))
	tp := sha256.Sum256(transport.PublicKey)
	field(tp[:])
	return h.Sum(nil)
}
