package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dcaas/dcaas/internal/store"
)

// Quorum approvals (store.Approvals). A request leaves pending once: its
// conditional UPDATE (CloseApproval) queues concurrent callers on the
// row's lock, and PostgreSQL re-checks the condition for each against the
// committed row, so exactly one of them, on any replica, closes it. A
// vote is an INSERT … SELECT conditioned on the request being pending and
// unexpired; its primary key keeps one per approver.

// GetApprovalPolicy implements store.Approvals.
func (q *queries) GetApprovalPolicy(ctx context.Context, tenant string) (store.ApprovalPolicy, error) {
	const op = "GetApprovalPolicy"
	p, err := scanApprovalPolicy(q.read().queryRow(ctx,
		`SELECT `+approvalPolicyColumns+` FROM approval_policies WHERE tenant = ?`, tenant))
	if err != nil {
		return store.ApprovalPolicy{}, q.mapErr(op, err)
	}
	return p, nil
}

const approvalPolicyColumns = `tenant, quorum, approvers, version, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanApprovalPolicy(row scanner) (store.ApprovalPolicy, error) {
	var p store.ApprovalPolicy
	var approvers string
	var quorum, version, updated int64
	if err := row.Scan(&p.Tenant, &quorum, &approvers, &version, &updated); err != nil {
		return store.ApprovalPolicy{}, err
	}
	if err := json.Unmarshal([]byte(approvers), &p.Approvers); err != nil {
		return store.ApprovalPolicy{}, fmt.Errorf("approvers of tenant %q: %w", p.Tenant, err)
	}
	p.Quorum, p.Version, p.UpdatedAt = int(quorum), int(version), fromNanos(updated)
	return p, nil
}

// ListApprovalPolicies implements store.Approvals.
func (q *queries) ListApprovalPolicies(ctx context.Context) ([]store.ApprovalPolicy, error) {
	const op = "ListApprovalPolicies"
	out, err := all(ctx, q, `SELECT `+approvalPolicyColumns+` FROM approval_policies ORDER BY tenant`, nil, scanApprovalPolicy)
	if err != nil {
		return nil, q.mapErr(op, err)
	}
	return out, nil
}

// PutApprovalPolicy implements store.Approvals. The policy's row (when
// there is one) stays locked from the version check to the commit; two
// first policies racing meet on the primary key.
func (q *queries) PutApprovalPolicy(ctx context.Context, p store.ApprovalPolicy) error {
	const op = "PutApprovalPolicy"
	updated, err := nanos("UpdatedAt", p.UpdatedAt)
	if err != nil {
		return q.mapErr(op, err)
	}
	if p.Approvers == nil {
		p.Approvers = []string{}
	}
	approvers, err := json.Marshal(p.Approvers)
	if err != nil {
		return q.mapErr(op, err)
	}
	return q.write(ctx, op, func(c conn) error {
		var cur int64
		err := c.queryRow(ctx, `SELECT version FROM approval_policies WHERE tenant = ?`+c.d.forUpdate(), p.Tenant).Scan(&cur)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if p.Version != 1 {
				return fmt.Errorf("version %d, want 1: %w", p.Version, store.ErrConflict)
			}
			_, err := c.exec(ctx, `INSERT INTO approval_policies (`+approvalPolicyColumns+`) VALUES (?, ?, ?, ?, ?)`,
				p.Tenant, int64(p.Quorum), string(approvers), int64(p.Version), updated)
			if err != nil && errors.Is(mapErr(c.d, op, err), store.ErrExists) {
				return fmt.Errorf("a first policy was stored concurrently: %w", store.ErrConflict)
			}
			return err
		case err != nil:
			return err
		case int64(p.Version) != cur+1:
			return fmt.Errorf("version %d over stored version %d: %w", p.Version, cur, store.ErrConflict)
		}
		n, err := c.changed(ctx, `UPDATE approval_policies SET quorum = ?, approvers = ?, version = ?, updated_at = ? WHERE tenant = ? AND version = ?`,
			int64(p.Quorum), string(approvers), int64(p.Version), updated, p.Tenant, cur)
		if err == nil && n != 1 {
			err = fmt.Errorf("policy changed concurrently: %w", store.ErrConflict)
		}
		return err
	})
}

const approvalColumns = `id, tenant, action, key_id, params, params_hash, requester, state, created_at, expires_at, closed_at, closed_by`

// CreateApproval implements store.Approvals.
func (q *queries) CreateApproval(ctx context.Context, a store.Approval) error {
	const op = "CreateApproval"
	var ts times
	created := ts.at("CreatedAt", a.CreatedAt)
	expires := ts.at("ExpiresAt", a.ExpiresAt)
	if ts.err != nil {
		return q.mapErr(op, ts.err)
	}
	if a.ID == "" || len(a.ParamsHash) == 0 {
		return q.mapErr(op, errors.New("an approval needs an id and a hash"))
	}
	_, err := q.exec(ctx, op, `INSERT INTO approvals (`+approvalColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)`,
		a.ID, a.Tenant, a.Action, a.KeyID, a.Params, a.ParamsHash, a.Requester, store.ApprovalPending, created, expires)
	return err
}

func scanApproval(row scanner) (store.Approval, error) {
	var a store.Approval
	var created, expires int64
	var closed sql.NullInt64
	var closedBy sql.NullString
	err := row.Scan(&a.ID, &a.Tenant, &a.Action, &a.KeyID, &a.Params, &a.ParamsHash, &a.Requester, &a.State, &created, &expires, &closed, &closedBy)
	if err != nil {
		return store.Approval{}, err
	}
	a.Params = nilIfEmpty(a.Params)
	a.CreatedAt, a.ExpiresAt, a.ClosedAt, a.ClosedBy = fromNanos(created), fromNanos(expires), fromNullNanos(closed), closedBy.String
	return a, nil
}

// GetApproval implements store.Approvals.
func (q *queries) GetApproval(ctx context.Context, id string) (store.Approval, error) {
	const op = "GetApproval"
	var a store.Approval
	// The approval and its votes from one snapshot: a vote committed
	// between two reads would otherwise show beside the state before it.
	err := q.snapshot(ctx, func(c conn) error {
		var err error
		if a, err = scanApproval(c.queryRow(ctx, `SELECT `+approvalColumns+` FROM approvals WHERE id = ?`, id)); err != nil {
			return err
		}
		rows, err := c.query(ctx, `SELECT approver, voted_at FROM approval_votes WHERE approval_id = ? ORDER BY voted_at, approver`, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var v store.ApprovalVote
			var at int64
			if err := rows.Scan(&v.Approver, &at); err != nil {
				return err
			}
			v.At = fromNanos(at)
			a.Votes = append(a.Votes, v)
		}
		return rows.Err()
	})
	if err != nil {
		return store.Approval{}, q.mapErr(op, err)
	}
	return a, nil
}

// ListApprovals implements store.Approvals.
func (q *queries) ListApprovals(ctx context.Context, tenant, requester string, limit int) ([]store.Approval, error) {
	const op = "ListApprovals"
	var where []string
	var args []any
	if tenant != "*" {
		where, args = append(where, `tenant = ?`), append(args, tenant)
	}
	if requester != "" {
		where, args = append(where, `requester = ?`), append(args, requester)
	}
	query := `SELECT ` + approvalColumns + ` FROM approvals`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	query += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	out, err := all(ctx, q, query, append(args, int64(limit)), scanApproval)
	if err != nil {
		return nil, q.mapErr(op, err)
	}
	return out, nil
}

// AddApprovalVote implements store.Approvals.
func (q *queries) AddApprovalVote(ctx context.Context, id, approver string, now time.Time) error {
	const op = "AddApprovalVote"
	n, err := nanos("now", now)
	if err != nil {
		return q.mapErr(op, err)
	}
	return q.write(ctx, op, func(c conn) error {
		added, err := c.changed(ctx, `INSERT INTO approval_votes (approval_id, approver, voted_at)
			SELECT id, ?, ? FROM approvals WHERE id = ? AND state = ? AND expires_at > ?`,
			approver, n, id, store.ApprovalPending, n)
		if err != nil || added == 1 {
			return err
		}
		return whyNotOpen(ctx, c, id, n)
	})
}

// CloseApproval implements store.Approvals.
func (q *queries) CloseApproval(ctx context.Context, id, state, by string, now time.Time) error {
	const op = "CloseApproval"
	n, err := nanos("now", now)
	if err != nil {
		return q.mapErr(op, err)
	}
	switch state {
	case store.ApprovalExecuted, store.ApprovalDenied, store.ApprovalCancelled:
	default:
		return q.mapErr(op, fmt.Errorf("cannot close an approval as %q", state))
	}
	return q.write(ctx, op, func(c conn) error {
		closed, err := c.changed(ctx, `UPDATE approvals SET state = ?, closed_at = ?, closed_by = ?
			WHERE id = ? AND state = ? AND expires_at > ?`,
			state, n, by, id, store.ApprovalPending, n)
		if err != nil || closed == 1 {
			return err
		}
		return whyNotOpen(ctx, c, id, n)
	})
}

// whyNotOpen classifies an approval a conditional statement did not
// match, in a statement after it (on PostgreSQL with a snapshot that sees
// a racing winner's commit).
func whyNotOpen(ctx context.Context, c conn, id string, now int64) error {
	var state string
	var expires int64
	err := c.queryRow(ctx, `SELECT state, expires_at FROM approvals WHERE id = ?`, id).Scan(&state, &expires)
	switch {
	case err != nil:
		return err // sql.ErrNoRows becomes store.ErrNotFound
	case state != store.ApprovalPending:
		return fmt.Errorf("approval is %s: %w", state, store.ErrUsed)
	case now >= expires:
		return store.ErrExpired
	}
	return fmt.Errorf("approval %s neither changed nor refused: %w", id, store.ErrConflict)
}

// DeleteApprovalsExpiredBefore implements store.Approvals.
func (q *queries) DeleteApprovalsExpiredBefore(ctx context.Context, cutoff time.Time) (int, error) {
	const op = "DeleteApprovalsExpiredBefore"
	n, err := nanos("cutoff", cutoff)
	if err != nil {
		return 0, q.mapErr(op, err)
	}
	return q.deleteExpired(ctx, op, n, `approvals`, `approval_votes`, `approval_id`)
}

// deleteExpired deletes, in one write transaction, the rows of the table
// parent whose expires_at is before cutoff, and first the rows of child
// whose column fk holds their id. It returns how many rows of parent it
// deleted.
func (q *queries) deleteExpired(ctx context.Context, op string, cutoff int64, parent, child, fk string) (int, error) {
	var deleted int64
	err := q.write(ctx, op, func(c conn) error {
		if _, err := c.exec(ctx,
			`DELETE FROM `+child+` WHERE `+fk+` IN (SELECT id FROM `+parent+` WHERE expires_at < ?)`, cutoff); err != nil {
			return err
		}
		var err error
		deleted, err = c.changed(ctx, `DELETE FROM `+parent+` WHERE expires_at < ?`, cutoff)
		return err
	})
	return int(deleted), err
}
