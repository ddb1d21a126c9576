package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dcaas/dcaas/internal/store"
)

// mapErr wraps err, as returned by pgx, in the store error it means, keeping
// err wrapped too:
//
//   - pgx.ErrNoRows is store.ErrNotFound;
//   - unique_violation (23505) is store.ErrExists;
//   - store.ErrUnavailable: a connection that could not be made or was
//     lost (pgconn.ConnectError, network errors, EOF, a closed
//     connection), and the SQLSTATEs of class 08 (connection exception),
//     53 (insufficient resources: 53100 disk full, 53200 out of memory,
//     53300 too many connections), 57P01-57P05 (admin or crash shutdown,
//     cannot connect now, database dropped, idle session timeout), 58
//     (system/I/O error), 25006 (read-only transaction: a standby or
//     default_transaction_read_only), 25P03 (idle in transaction timeout),
//     40001 and 40P01 (serialization failure, deadlock: retry), 55P03 (lock
//     timeout) and 57014 (statement timeout, or canceled by an
//     administrator), all transient conditions of the server rather than
//     of the request;
//   - the caller's context ending (pgx cancels the statement and returns
//     the context's error) is returned as is, wrapped, not as unavailable,
//     unless it stopped a new connection.
//
// An error that already carries a store error keeps it.
func mapErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case isStoreErr(err):
		return fmt.Errorf("postgres: %s: %w", op, err)
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("postgres: %s: %w: %w", op, store.ErrNotFound, err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505":
			return fmt.Errorf("postgres: %s: %w: %w", op, store.ErrExists, err)
		case unavailableState(pe.Code):
			return fmt.Errorf("postgres: %s: %w: %w", op, store.ErrUnavailable, err)
		}
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) { // whatever stopped it, even connect_timeout
		return fmt.Errorf("postgres: %s: %w: %w", op, store.ErrUnavailable, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	if lostConnection(err) {
		return fmt.Errorf("postgres: %s: %w: %w", op, store.ErrUnavailable, err)
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// unavailableState reports whether a SQLSTATE means the server cannot serve
// now, as opposed to a bad request or a bug.
func unavailableState(code string) bool {
	switch code {
	case "25006", "25P03", "40001", "40P01", "55P03", "57014",
		"57P01", "57P02", "57P03", "57P04", "57P05":
		return true
	}
	return strings.HasPrefix(code, "08") || strings.HasPrefix(code, "53") || strings.HasPrefix(code, "58")
}

// lostConnection reports whether err, which is not a server error, means
// the server could not be reached or the connection broke.
func lostConnection(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || pgconn.Timeout(err)
}

func isStoreErr(err error) bool {
	for _, target := range []error{
		store.ErrNotFound, store.ErrExists, store.ErrConflict,
		store.ErrUsed, store.ErrExpired, store.ErrUnavailable,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
