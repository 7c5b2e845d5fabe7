package revoker

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/target"
)

// Command lifetimes. A command is a signed statement that an action is due
// now; one acted on long after it was issued rests on facts that may have
// changed, so it expires.
const (
	// DefaultCommandTTL is how long a command stays valid after it is
	// issued (LEASEGUARD_COMMAND_TTL).
	DefaultCommandTTL = 10 * time.Minute
	// MaxCommandTTL bounds any command's lifetime, whoever signed it: a
	// captured command cannot be replayed a day later.
	MaxCommandTTL = 24 * time.Hour
	// commandClockSkew tolerates an issuer whose clock runs ahead.
	commandClockSkew = 30 * time.Second
)

// TargetFacts is what issuing a command reads from its target database
// (target.Set).
type TargetFacts interface {
	// Identity is the target's system identifier and database oid.
	Identity(ctx context.Context, database string) (schemas.TargetIdentity, error)
	// RoleOIDs returns the oids of the users that exist.
	RoleOIDs(ctx context.Context, database string, users []string) (map[string]uint32, error)
}

// Issuer completes and signs commands: the one place where a command gets
// its lifetime, nonce, target identity and role oid, so every issuer
// (detectors, operators, approvals) makes them alike.
type Issuer struct {
	signer  *Signer
	targets TargetFacts
	ttl     time.Duration
	clock   func() time.Time
}

// NewIssuer returns an Issuer; ttl 0 means DefaultCommandTTL, clock nil
// time.Now.
func NewIssuer(signer *Signer, targets TargetFacts, ttl time.Duration, clock func() time.Time) (*Issuer, error) {
	if signer == nil || targets == nil {
		return nil, errors.New("issuer: signer and targets are required")
	}
	if ttl == 0 {
		ttl = DefaultCommandTTL
	}
	if ttl < time.Second || ttl > MaxCommandTTL {
		return nil, fmt.Errorf("issuer: command ttl %s is outside 1s..%s", ttl, MaxCommandTTL)
	}
	if clock == nil {
		clock = time.Now
	}
	return &Issuer{signer: signer, targets: targets, ttl: ttl, clock: clock}, nil
}

// KeyID is the id of the key the Issuer signs with.
func (i *Issuer) KeyID() string { return i.signer.KeyID() }

// PublicKey is the key that verifies the Issuer's commands.
func (i *Issuer) PublicKey() ed25519.PublicKey { return i.signer.PublicKey() }

// SignProposal signs a proposal held for approval (Signer.SignProposal).
func (i *Issuer) SignProposal(p schemas.RevocationCommand) (string, error) {
	return i.signer.SignProposal(p)
}

// Issue completes cmds in place and signs them. The caller sets what the
// command is about (id, action, rule, database, user or session, lease,
// reason, corroboration); Issue sets the type, the lifetime, a fresh nonce,
// the target's identity and, for a drop whose RoleOID is 0, the role's oid
// as the target shows it now (0 if there is no such role). A command
// without corroboration is not signed: nothing acts on the bus's word
// alone.
func (i *Issuer) Issue(ctx context.Context, cmds []schemas.RevocationCommand) error {
	byDB := map[string][]int{}
	var order []string
	for k := range cmds {
		db := cmds[k].Database
		if _, ok := byDB[db]; !ok {
			order = append(order, db)
		}
		byDB[db] = append(byDB[db], k)
	}
	for _, db := range order {
		if err := i.issueIn(ctx, db, cmds, byDB[db]); err != nil {
			return err
		}
	}
	return nil
}

func (i *Issuer) issueIn(ctx context.Context, db string, cmds []schemas.RevocationCommand, idx []int) error {
	ident, err := i.targets.Identity(ctx, db)
	switch {
	case errors.Is(err, target.ErrUnknownTarget):
		// Signed all the same: the revoker refuses it, with evidence
		// (unknown_target), as it refuses any command for a database it
		// does not know.
		ident = schemas.TargetIdentity{}
	case err != nil:
		return fmt.Errorf("issue commands for %s: %w", db, err)
	}
	var users []string
	for _, k := range idx {
		if c := cmds[k]; c.Action == schemas.ActionDropRole && c.RoleOID == 0 {
			users = append(users, c.DBUser)
		}
	}
	var oids map[string]uint32
	if len(users) > 0 && ident != (schemas.TargetIdentity{}) {
		if oids, err = i.targets.RoleOIDs(ctx, db, users); err != nil {
			return fmt.Errorf("issue commands for %s: %w", db, err)
		}
	}
	now := i.clock().UTC()
	for _, k := range idx {
		c := &cmds[k]
		if err := checkProposal(*c); err != nil {
			return fmt.Errorf("issue command %s: %w", c.ID, err)
		}
		c.Type, c.IssuedAt, c.ExpiresAt, c.Target = schemas.RevocationCommandType, now, now.Add(i.ttl), ident
		if c.Action == schemas.ActionDropRole && c.RoleOID == 0 {
			c.RoleOID = oids[c.DBUser]
		}
		if c.Nonce, err = nonce(); err != nil {
			return err
		}
		if err := i.signer.Sign(c); err != nil {
			return err
		}
	}
	return nil
}

// checkProposal refuses to sign a command that lacks what the revoker
// needs to check it.
func checkProposal(c schemas.RevocationCommand) error {
	switch {
	case c.ID == "" || c.Rule == "" || c.Database == "" || c.Issuer == "":
		return errors.New("id, rule, database and issuer are required")
	case c.Corroboration.Source == "" || c.Corroboration.CheckedAt.IsZero():
		return errors.New("no corroboration: a command rests on the target or Vault agreeing, not on the bus")
	case c.Action == schemas.ActionDropRole && c.DBUser == "":
		return errors.New("a drop names its user")
	case c.Action == schemas.ActionTerminateSession && c.Session == nil:
		return errors.New("a termination names its session")
	case c.Action != schemas.ActionDropRole && c.Action != schemas.ActionTerminateSession:
		return fmt.Errorf("action %q is not %s or %s", c.Action, schemas.ActionDropRole, schemas.ActionTerminateSession)
	}
	return nil
}

func nonce() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("command nonce: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// CheckFresh refuses (guard expired) a command outside its lifetime at
// now: one issued in the future (beyond a clock skew), one that has
// expired, or one whose lifetime is longer than MaxCommandTTL.
func CheckFresh(cmd schemas.RevocationCommand, now time.Time) error {
	switch {
	case cmd.IssuedAt.IsZero() || cmd.ExpiresAt.IsZero():
		return refuse(GuardExpired, "the command has no lifetime (issued_at, expires_at)")
	case !cmd.ExpiresAt.After(cmd.IssuedAt) || cmd.ExpiresAt.Sub(cmd.IssuedAt) > MaxCommandTTL:
		return refuse(GuardExpired, "the command's lifetime %s..%s is not within %s", rfc(cmd.IssuedAt), rfc(cmd.ExpiresAt), MaxCommandTTL)
	case now.Before(cmd.IssuedAt.Add(-commandClockSkew)):
		return refuse(GuardExpired, "the command is issued in the future (%s)", rfc(cmd.IssuedAt))
	case !now.Before(cmd.ExpiresAt):
		return refuse(GuardExpired, "the command expired at %s", rfc(cmd.ExpiresAt))
	}
	return nil
}

// CheckShape refuses (guard action) a command whose action does not fit
// what it names.
func CheckShape(cmd schemas.RevocationCommand) error {
	switch cmd.Action {
	case schemas.ActionDropRole:
		if cmd.DBUser == "" || cmd.Session != nil {
			return refuse(GuardAction, "a drop_role command names a user and no session")
		}
	case schemas.ActionTerminateSession:
		if cmd.Session == nil || cmd.Session.PID <= 0 || cmd.Session.UserOID == 0 {
			return refuse(GuardAction, "a terminate_session command names its session (pid, start, user oid)")
		}
	default:
		return refuse(GuardAction, "action %q is not %s or %s", cmd.Action, schemas.ActionDropRole, schemas.ActionTerminateSession)
	}
	if cmd.Target.SystemIdentifier == "" || (cmd.Target.DatabaseOID == 0 && !serverWide(cmd.Target)) {
		return refuse(GuardTarget, "the command names no target identity")
	}
	return nil
}

func rfc(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// serverWide reports whether an identity is a MySQL or MariaDB server's:
// its accounts are server-wide, so it names no database (oid 0).
func serverWide(id schemas.TargetIdentity) bool {
	return strings.HasPrefix(id.SystemIdentifier, "mysql:") || strings.HasPrefix(id.SystemIdentifier, "mariadb:")
}
