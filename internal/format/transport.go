package format

import (
	"encoding/json"

	"github.com/dcaas/dcaas/api"
)

// TransportInfo is the HPKE info string for data keys wrapped to a sidecar
// instance (rewrap, load, derive): it binds every wrapped key to that one
// recipient.
func TransportInfo(instanceID string) []byte {
	return []byte("dcaas/v1 key-transport\x00" + instanceID)
}

// MetadataAAD is the associated data that binds a wrapped key to its
// metadata: the JSON encoding of md. The KMS and the sidecar both compute
// it from the api.KeyMetadata value, so any change to the metadata on the
// way makes the unwrap fail.
func MetadataAAD(md *api.KeyMetadata) ([]byte, error) {
	return json.Marshal(md)
}
