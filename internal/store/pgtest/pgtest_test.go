package pgtest

import "testing"

func TestWithDatabase(t *testing.T) {
	for _, c := range []struct{ dsn, want string }{
		{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:5432/t_1?sslmode=disable"},
		{"postgresql://u:p@h/db", "postgresql://u:p@h/t_1"},
		{"postgres://h:1", "postgres://h:1/t_1"},
		{"host=h user=u dbname=db", "host=h user=u dbname=db dbname=t_1"},
	} {
		got, err := withDatabase(c.dsn, "t_1")
		if err != nil || got != c.want {
			t.Errorf("withDatabase(%q, t_1) = %q, %v; want %q", c.dsn, got, err, c.want)
		}
	}
}

func TestRedact(t *testing.T) {
	if got := redact("postgres://u:secret@h/db"); got != "postgres://u:xxxxx@h/db" {
		t.Errorf("redact() = %q, want the password hidden", got)
	}
	if got := redact("host=h password=secret"); got != "the DSN" {
		t.Errorf("redact(keyword DSN) = %q, want %q", got, "the DSN")
	}
}
