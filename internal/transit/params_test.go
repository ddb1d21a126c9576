package transit

import (
	"errors"
	"net/http"
	"testing"
)

func TestParams(t *testing.T) {
	p, err := decodeParams([]byte(`{"s":"x","n":3,"ns":"4","b":true,"bs":"false","b64":"aGk=","null":null,"num":1.5,
		"batch_input":[{"plaintext":"aGk=","reference":"r"}],"context":"","convergent_encryption":"false","nonce":"bm9uY2U="}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		got  func() (any, error)
		want any
	}{
		{"string", func() (any, error) { return p.str("s") }, "x"},
		{"number as string", func() (any, error) { return p.str("n") }, "3"},
		{"bool as string", func() (any, error) { return p.str("b") }, "true"},
		{"absent string", func() (any, error) { return p.str("none") }, ""},
		{"null string", func() (any, error) { return p.str("null") }, ""},
		{"integer", func() (any, error) { return p.integer("n") }, 3},
		{"integer from a string", func() (any, error) { return p.integer("ns") }, 4},
		{"absent integer", func() (any, error) { return p.integer("none") }, 0},
		{"boolean", func() (any, error) { return p.boolean("b") }, true},
		{"boolean from a string", func() (any, error) { return p.boolean("bs") }, false},
		{"base64", func() (any, error) { b, err := p.base64("b64"); return string(b), err }, "hi"},
	} {
		got, err := tc.got()
		if err != nil || got != tc.want {
			t.Errorf("%s = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"fraction as integer", func() error { _, err := p.integer("num"); return err }},
		{"word as integer", func() error { _, err := p.integer("s"); return err }},
		{"word as boolean", func() error { _, err := p.boolean("s"); return err }},
		{"bad base64", func() error { _, err := p.base64("s"); return err }},
		{"a set unsupported parameter", func() error { return p.unsupported("context", "convergent_encryption", "nonce") }},
	} {
		var te *Error
		if err := tc.call(); !errors.As(err, &te) || te.Status != http.StatusBadRequest {
			t.Errorf("%s = %v, want a 400 *Error", tc.name, err)
		}
	}
	if err := p.unsupported("context", "convergent_encryption", "none"); err != nil {
		t.Errorf("unsupported parameters at their defaults = %v", err)
	}
	items, ok, err := p.batch()
	if err != nil || !ok || len(items) != 1 {
		t.Fatalf("batch = %v, %v, %v", items, ok, err)
	}
	if r, _ := items[0].str("reference"); r != "r" {
		t.Errorf("batch item reference = %q", r)
	}
	sp, _ := decodeParams([]byte(`{"batch_input":"[{\"input\":\"eA==\"}]"}`))
	if items, ok, err := sp.batch(); err != nil || !ok || len(items) != 1 || !items[0].has("input") {
		t.Errorf("batch_input as a JSON string = %v, %v, %v", items, ok, err)
	}
	if w := ignoredWarning(p, []string{"s", "n", "ns", "b", "bs", "b64", "null", "num", "batch_input", "context", "convergent_encryption"}); w != "Endpoint ignored these unrecognized parameters: [nonce]" {
		t.Errorf("ignoredWarning = %q", w)
	}
}

func TestDecodeParamsRefuses(t *testing.T) {
	for _, body := range []string{`[]`, `"x"`, `{"a":1} {"b":2}`, `{"a":`, `{"batch_input":{}}`, `{"batch_input":[]}`, `{"batch_input":[1]}`, `{"batch_input":[null]}`} {
		p, err := decodeParams([]byte(body))
		if err == nil {
			_, _, err = p.batch()
		}
		var te *Error
		if !errors.As(err, &te) || te.Status != http.StatusBadRequest {
			t.Errorf("body %s: %v, want a 400 *Error", body, err)
		}
	}
	for _, body := range []string{``, `  `, `null`, `{}`} {
		if p, err := decodeParams([]byte(body)); err != nil || len(p.raw) != 0 {
			t.Errorf("body %q = %v, %v; want no parameters", body, p, err)
		}
	}
}

// FuzzParams: decoding a body and reading every kind of parameter from it
// never panics, and every refusal is a 400 or 413 *Error.
func FuzzParams(f *testing.F) {
	for _, s := range []string{`{"plaintext":"aGk=","key_version":"2"}`, `{"batch_input":[{"input":"eA==","reference":"a"}]}`, `{"prehashed":"true"}`, `{"bits":1e400}`, `null`, `{"a":`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(err error) {
			if err == nil {
				return
			}
			var te *Error
			if !errors.As(err, &te) || (te.Status != http.StatusBadRequest && te.Status != http.StatusRequestEntityTooLarge) {
				t.Fatalf("refusal %v is not a 400/413 *Error", err)
			}
		}
		p, err := decodeParams(body)
		check(err)
		if err != nil {
			return
		}
		items, _, err := p.batch()
		check(err)
		for _, q := range append(items, p) {
			for name := range q.raw {
				_, err := q.str(name)
				check(err)
				_, err = q.integer(name)
				check(err)
				_, err = q.boolean(name)
				check(err)
				_, err = q.base64(name)
				check(err)
				check(q.unsupported(name))
			}
		}
	})
}
