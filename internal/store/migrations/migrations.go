// Package migrations holds the dcaas database schema as numbered SQL files,
// embedded in FS, and parses them into ordered migrations with All.
//
// The same files run unchanged on every store implementation (SQLite now,
// PostgreSQL later), so they are written in a portable subset of SQL: the
// types TEXT, BIGINT and BYTEA; times as BIGINT Unix nanoseconds (UTC),
// NULL for an optional time; booleans as BIGINT 0/1; no AUTOINCREMENT or
// SERIAL; primary keys, UNIQUE constraints and plain indexes only.
//
// A file is named NNNN_description.sql, numbered from 0001 without gaps, and
// holds statements ended by ';'. Lines starting with "--" are comments. A
// statement must not contain ';' or "--" anywhere else (no string literals
// holding them, no function bodies): Statements splits on them naively.
//
// Implementations record applied versions in a schema_migrations table that
// they create themselves, and apply every pending migration in one
// transaction. Files are never edited once released; a change is a new file.
package migrations

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// FS holds the migration files, NNNN_description.sql, at its root.
//
//go:embed *.sql
var FS embed.FS

// Migration is one schema migration.
type Migration struct {
	Version int    // from the file name: 1, 2, ...
	Name    string // the file name
	SQL     string // the whole file
}

// Statements returns m's SQL statements, comments and the ending ';'
// removed, in order, for drivers that run one statement per call.
func (m Migration) Statements() []string {
	var b strings.Builder
	for line := range strings.Lines(m.SQL) {
		if i := strings.Index(line, "--"); i >= 0 {
			line = line[:i] + "\n"
		}
		b.WriteString(line)
	}
	var stmts []string
	for s := range strings.SplitSeq(b.String(), ";") {
		if s = strings.TrimSpace(s); s != "" {
			stmts = append(stmts, s)
		}
	}
	return stmts
}

// All returns every migration in FS, ordered by version. It fails if a file
// name has no version or the versions are not 1, 2, ... without gaps.
func All() ([]Migration, error) {
	return parse(FS)
}

func parse(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, err
	}
	ms := make([]Migration, 0, len(names))
	for _, name := range names {
		prefix, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(prefix)
		if !ok || err != nil || v <= 0 || len(prefix) != 4 {
			return nil, fmt.Errorf("migrations: %q is not named NNNN_description.sql", name)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migrations: %s has version %d, want %d", m.Name, m.Version, i+1)
		}
	}
	return ms, nil
}
