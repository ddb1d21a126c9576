package transit

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// params are the parameters of one request (or of one batch_input item),
// decoded as transit decodes them: a JSON object whose values are weakly
// typed, because the Vault and OpenBao CLIs send every key=value argument
// as a string ("key_version": "2", "prehashed": "false").
type params struct {
	raw map[string]json.RawMessage
}

// decodeParams reads a request body. An empty body is an empty object.
func decodeParams(body []byte) (*params, error) {
	p := &params{raw: map[string]json.RawMessage{}}
	if len(bytes.TrimSpace(body)) == 0 {
		return p, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&p.raw); err != nil {
		return nil, badRequest("failed to parse JSON input: the body must be one JSON object")
	}
	if dec.More() {
		return nil, badRequest("failed to parse JSON input: data after the JSON object")
	}
	if p.raw == nil { // the body was null
		p.raw = map[string]json.RawMessage{}
	}
	return p, nil
}

func (p *params) get(name string) (json.RawMessage, bool) {
	v, ok := p.raw[name]
	if ok && string(v) == "null" {
		return nil, false
	}
	return v, ok
}

// has reports whether name was sent (and not null).
func (p *params) has(name string) bool {
	_, ok := p.get(name)
	return ok
}

// str returns a string parameter ("" if absent). Numbers and booleans are
// taken as their text, as transit's weak decoding does.
func (p *params) str(name string) (string, error) {
	v, ok := p.get(name)
	if !ok {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(v, &n); err == nil {
		return n.String(), nil
	}
	var b bool
	if err := json.Unmarshal(v, &b); err == nil {
		return strconv.FormatBool(b), nil
	}
	return "", badRequest("%q: expected a string", name)
}

// integer returns an integer parameter (0 if absent): a JSON number or a
// decimal string.
func (p *params) integer(name string) (int, error) {
	v, ok := p.get(name)
	if !ok {
		return 0, nil
	}
	var n json.Number
	if err := json.Unmarshal(v, &n); err != nil {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return 0, badRequest("%q: expected an integer", name)
		}
		if s == "" {
			return 0, nil
		}
		n = json.Number(s)
	}
	i, err := strconv.ParseInt(n.String(), 10, 32)
	if err != nil {
		return 0, badRequest("%q: expected an integer, got %q", name, n.String())
	}
	return int(i), nil
}

// boolean returns a boolean parameter (false if absent): a JSON boolean or
// one of the strings strconv.ParseBool takes.
func (p *params) boolean(name string) (bool, error) {
	v, ok := p.get(name)
	if !ok {
		return false, nil
	}
	var b bool
	if err := json.Unmarshal(v, &b); err == nil {
		return b, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		if s == "" {
			return false, nil
		}
		if b, err := strconv.ParseBool(s); err == nil {
			return b, nil
		}
	}
	return false, badRequest("%q: expected a boolean", name)
}

// base64 returns a standard-base64 parameter, decoded (nil if absent).
func (p *params) base64(name string) ([]byte, error) {
	s, err := p.str(name)
	if err != nil || s == "" {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, badRequest("%q: not valid standard base64", name)
	}
	return b, nil
}

// input returns the base64 "input" of a sign, HMAC or verify item, which
// is required: missing is the refusal's message (transit's own for each
// endpoint).
func (p *params) input(missing string) ([]byte, error) {
	if !p.has("input") {
		return nil, badRequest("%s", missing)
	}
	return p.base64("input")
}

// batch returns the items of batch_input; ok is false if it was not sent.
func (p *params) batch() (items []*params, ok bool, err error) {
	v, ok := p.get("batch_input")
	if !ok {
		return nil, false, nil
	}
	var raws []map[string]json.RawMessage
	if err := json.Unmarshal(v, &raws); err != nil {
		// Weak typing again: the array as a JSON string (batch_input=@file
		// on a CLI command line sends the file's text).
		var text string
		if json.Unmarshal(v, &text) != nil || json.Unmarshal([]byte(text), &raws) != nil {
			return nil, true, badRequest("failed to parse batch input: batch_input must be an array of objects")
		}
	}
	if len(raws) == 0 {
		return nil, true, badRequest("missing batch input to process")
	}
	if len(raws) > MaxBatch {
		return nil, true, tooLarge("batch_input holds %d items; at most %d are allowed", len(raws), MaxBatch)
	}
	items = make([]*params, len(raws))
	for i, r := range raws {
		if r == nil {
			return nil, true, badRequest("failed to parse batch input: [%d] is not an object", i)
		}
		items[i] = &params{raw: r}
	}
	return items, true, nil
}

// unsupported refuses parameters the adapter recognizes but does not
// implement when they are set to anything but their default.
func (p *params) unsupported(names ...string) error {
	for _, n := range names {
		v, ok := p.get(n)
		if !ok {
			continue
		}
		switch strings.TrimSpace(string(v)) {
		case `""`, "false", `"false"`, "0", `"0"`:
			continue
		}
		return badRequest("%q is not supported by the dcaas transit adapter (docs/transit.md lists what is)", n)
	}
	return nil
}

// ignoredWarning is transit's warning about parameters an endpoint does
// not know (known lists those it does), or "".
func ignoredWarning(p *params, known []string) string {
	var names []string
	for k := range p.raw {
		if !slices.Contains(known, k) {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return ""
	}
	slices.Sort(names)
	return fmt.Sprintf("Endpoint ignored these unrecognized parameters: %v", names)
}
