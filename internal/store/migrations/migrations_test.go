package migrations

import (
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

func TestAll(t *testing.T) {
	ms, err := All()
	if err != nil {
		t.Fatalf("All() = %v", err)
	}
	if len(ms) == 0 {
		t.Fatal("All() returned no migrations")
	}
	for i, m := range ms {
		if m.Version != i+1 {
			t.Errorf("All()[%d].Version = %d, want %d", i, m.Version, i+1)
		}
		if len(m.Statements()) == 0 {
			t.Errorf("%s has no statements", m.Name)
		}
	}
}

// TestPortable keeps the files inside the SQL subset that SQLite and
// PostgreSQL both run. Keywords and types are written in upper case, names
// in lower case, so the check is case-sensitive.
func TestPortable(t *testing.T) {
	forbidden := regexp.MustCompile(`\b(AUTOINCREMENT|SERIAL|BIGSERIAL|IDENTITY|INTEGER|INT|BLOB|BOOLEAN|BOOL|REAL|DOUBLE|FLOAT|NUMERIC|DATETIME|TIMESTAMP|TIMESTAMPTZ|VARCHAR|STRICT|ROWID|PRAGMA|RETURNING|ON\s+CONFLICT|OR\s+REPLACE|OR\s+IGNORE|DEFAULT)\b|"|\$`)
	ms, err := All()
	if err != nil {
		t.Fatalf("All() = %v", err)
	}
	for _, m := range ms {
		for _, s := range m.Statements() {
			if w := forbidden.FindString(s); w != "" {
				t.Errorf("%s: statement uses %q, outside the portable subset:\n%s", m.Name, w, s)
			}
			if strings.Contains(s, "'") {
				t.Errorf("%s: statement has a string literal, which Statements cannot split safely:\n%s", m.Name, s)
			}
		}
	}
}

func TestStatements(t *testing.T) {
	m := Migration{SQL: "-- a comment; with a semicolon\nCREATE TABLE a (x TEXT); -- trailing\n\nCREATE INDEX a_x ON a (x);\n"}
	got := m.Statements()
	want := []string{"CREATE TABLE a (x TEXT)", "CREATE INDEX a_x ON a (x)"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Statements() = %q, want %q", got, want)
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name  string
		files []string
	}{
		{"no version", []string{"init.sql"}},
		{"short version", []string{"1_init.sql"}},
		{"zero version", []string{"0000_init.sql"}},
		{"gap", []string{"0001_a.sql", "0003_c.sql"}},
		{"duplicate", []string{"0001_a.sql", "0001_b.sql"}},
		{"not first", []string{"0002_b.sql"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for _, f := range tt.files {
				fsys[f] = &fstest.MapFile{Data: []byte("CREATE TABLE x (y TEXT);")}
			}
			if ms, err := parse(fsys); err == nil {
				t.Errorf("parse(%v) = %v, nil; want an error", tt.files, ms)
			}
		})
	}
}
