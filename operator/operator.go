package operator

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
)

// RuleOperatorRevoke is the rule of every operator command.
const RuleOperatorRevoke = "operator-revoke"

// IssuerOperator is the issuer of every operator command.
const IssuerOperator = revoker.IssuerOperator

// GuardUnknownTarget is the guard the revoker names when a command's
// database is not a configured target.
const GuardUnknownTarget = "unknown_target"

// Targets are the configured target databases.
type Targets interface {
	Pool(name string) (*pgxpool.Pool, bool)
	Names() []string
}

// Issuer completes and signs revocation commands (revoker.Issuer).
type Issuer interface {
	Issue(ctx context.Context, cmds []schemas.RevocationCommand) error
}

// Deps are what planning and executing need. Executor and Issuer are
// needed by Execute only, so a dry run can go without a signing key.
type Deps struct {
	// State is the state-store pool (search_path set to its schema).
	State   *pgxpool.Pool
	Targets Targets
	// Guard must be the revoker's own guard configuration (the Dropper's),
	// so that the plan shows the refusals execution will make.
	Guard    revoker.GuardConfig
	Executor *revoker.Executor
	Issuer   Issuer
	// Batch is the number of commands per executor call, and so the most
	// roles dropped in one target transaction. Default 100.
	Batch int
	// Attempts bounds the tries of a command that failed transiently; the
	// last failure is recorded as failed. Default 3.
	Attempts int
	// Backoff is the pause before the second attempt, doubled after each.
	// Default 500ms.
	Backoff time.Duration
	// Grace is how long a batch in flight may go on after Execute's context
	// ends, so that an interrupted run does not leave a drop without its
	// recorded outcome. Default 10s.
	Grace  time.Duration
	Clock  func() time.Time
	Logger *slog.Logger
}

// Service plans and executes operator revocations. It is safe for
// concurrent use.
type Service struct {
	d Deps
}

// New checks d and fills in its defaults.
func New(d Deps) (*Service, error) {
	if d.State == nil || d.Targets == nil {
		return nil, errors.New("operator: state store and targets are required")
	}
	if d.Batch <= 0 {
		d.Batch = 100
	}
	if d.Attempts <= 0 {
		d.Attempts = 3
	}
	if d.Backoff <= 0 {
		d.Backoff = 500 * time.Millisecond
	}
	if d.Grace <= 0 {
		d.Grace = 10 * time.Second
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Guard.ManagedPattern == nil {
		d.Guard.ManagedPattern = revoker.DefaultManagedPattern
	}
	return &Service{d: d}, nil
}
