package api

// KeyName is a sidecar-local name of a loaded key: what the transit API's
// :name stands for (/v1/transit/encrypt/{name}). Names live in the
// sidecar's memory, like the keys they name; set them again after a
// restart. PUT and DELETE /v1/keys/{key_id}/name answer with it.
type KeyName struct {
	Name  string `json:"name"`
	KeyID string `json:"key_id"`
}

// SetKeyNameRequest is the body of a sidecar's PUT /v1/keys/{key_id}/name.
// Name is 1 to 128 characters of letters, digits and _ . @ -, starting
// and ending with a letter, digit or _ (transit's key name rule), and must
// not be or look like a key id ("key_…", "drv_…").
type SetKeyNameRequest struct {
	Name string `json:"name"`
}

// KeyNames is the body of a sidecar's GET /v1/keys/names, sorted by name.
type KeyNames struct {
	Names []KeyName `json:"names"`
}
