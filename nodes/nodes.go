package nodes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/leaseguard/leaseguard/internal/pause"
)

// Defaults of Config.
const (
	DefaultHeartbeat = 15 * time.Second
	// A node not seen for DefaultLiveFor is gone (killed, stopped).
	DefaultLiveFor = time.Minute
)

// Self is what a process says of itself.
type Self struct {
	Instance string
	Host     string
	// IssuesCommands: detectors, observer, approvals or the admin API run
	// here, so revokers must accept SigningKeyID.
	IssuesCommands bool
	// RunsRevoker: commands are carried out here, so AcceptedKeyIDs must
	// hold every live issuer's key.
	RunsRevoker      bool
	SigningKeyID     string
	SigningPublicKey string
	AcceptedKeyIDs   []string
}

// Node is a registered process.
type Node struct {
	Self
	ID         string
	LastSeenAt time.Time
}

// Config configures a Register.
type Config struct {
	Heartbeat time.Duration
	LiveFor   time.Duration
}

// Register is this process's entry in the register.
type Register struct {
	cfg    Config
	pool   *pgxpool.Pool
	self   Self
	id     string
	logger *slog.Logger
}

// ErrIncompatible: a live process would refuse this one's commands, or
// this one a live process's.
var ErrIncompatible = errors.New("command signing keys do not match")

// Join checks self against the live processes and registers it. It
// returns an error wrapping ErrIncompatible, which says what to set where,
// when they would refuse each other's commands.
func Join(ctx context.Context, pool *pgxpool.Pool, self Self, cfg Config, logger *slog.Logger) (*Register, error) {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.LiveFor <= 0 {
		cfg.LiveFor = DefaultLiveFor
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Register{cfg: cfg, pool: pool, self: self, id: newID(), logger: logger}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	live, err := r.live(ctx)
	if err != nil {
		return nil, err
	}
	if err := Compatible(self, live); err != nil {
		return nil, err
	}
	if err := r.beat(ctx, true); err != nil {
		return nil, err
	}
	return r, nil
}

// Compatible reports, as an error wrapping ErrIncompatible, every live node
// that would refuse self's commands or whose commands self would refuse.
func Compatible(self Self, live []Node) error {
	var problems []string
	for _, n := range live {
		if self.IssuesCommands && n.RunsRevoker && !slices.Contains(n.AcceptedKeyIDs, self.SigningKeyID) {
			problems = append(problems, fmt.Sprintf("%s does not accept this process's signing key %s: add %s to its LEASEGUARD_COMMAND_VERIFY_KEYS (or give every process the same LEASEGUARD_COMMAND_SIGNING_KEY)",
				n.describe(), self.SigningKeyID, self.SigningPublicKey))
		}
		if self.RunsRevoker && n.IssuesCommands && !slices.Contains(self.AcceptedKeyIDs, n.SigningKeyID) {
			problems = append(problems, fmt.Sprintf("this process does not accept the signing key %s of %s: add %s to LEASEGUARD_COMMAND_VERIFY_KEYS here (or give every process the same LEASEGUARD_COMMAND_SIGNING_KEY)",
				n.SigningKeyID, n.describe(), n.SigningPublicKey))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrIncompatible, strings.Join(problems, "; "))
	}
	return nil
}

func (n Node) describe() string {
	return fmt.Sprintf("process %s on %s (instance %s, seen %s)", n.ID, n.Host, n.Instance, n.LastSeenAt.UTC().Format(time.RFC3339))
}

// Run keeps the entry alive until ctx ends, then removes it. Each beat
// checks the live processes again and logs (at error level) those that
// joined with keys this one would refuse, or that would refuse its own.
func (r *Register) Run(ctx context.Context) error {
	pause.Every(ctx, r.cfg.Heartbeat, nil, func() { r.tick(ctx) })
	r.leave()
	return nil
}

func (r *Register) tick(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Heartbeat)
	defer cancel()
	if err := r.beat(ctx, false); err != nil {
		r.logger.Warn("node register: heartbeat failed; will retry", "err", err)
		return
	}
	live, err := r.live(ctx)
	if err != nil {
		r.logger.Warn("node register: cannot read the other processes; will retry", "err", err)
		return
	}
	if err := Compatible(r.self, live); err != nil {
		r.logger.Error("node register: processes sharing this state store would refuse each other's revocation commands", "err", err)
	}
}

// Owner names the registered process that signs with keyID, if one is
// live; the revoker says so when it refuses a command of an unknown key.
func Owner(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, keyID string, liveFor time.Duration) (string, bool) {
	var who string
	err := q.QueryRow(ctx, `SELECT instance || ' on ' || host FROM nodes WHERE signing_key_id = $1
		AND last_seen_at > now() - make_interval(secs => $2) ORDER BY last_seen_at DESC LIMIT 1`, keyID, liveFor.Seconds()).Scan(&who)
	return who, err == nil
}

func (r *Register) live(ctx context.Context) ([]Node, error) {
	rows, err := r.pool.Query(ctx, `SELECT node_id, instance, host, issues_commands, runs_revoker, signing_key_id,
			signing_public_key, accepted_key_ids, last_seen_at
		FROM nodes WHERE node_id <> $1 AND last_seen_at > now() - make_interval(secs => $2)`, r.id, r.cfg.LiveFor.Seconds())
	if err != nil {
		return nil, fmt.Errorf("read the node register: %w", err)
	}
	nodes, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Node, error) {
		var n Node
		err := row.Scan(&n.ID, &n.Instance, &n.Host, &n.IssuesCommands, &n.RunsRevoker, &n.SigningKeyID,
			&n.SigningPublicKey, &n.AcceptedKeyIDs, &n.LastSeenAt)
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("read the node register: %w", err)
	}
	return nodes, nil
}

func (r *Register) beat(ctx context.Context, first bool) error {
	s := r.self
	_, err := r.pool.Exec(ctx, `INSERT INTO nodes (node_id, instance, host, issues_commands, runs_revoker, signing_key_id,
			signing_public_key, accepted_key_ids, started_at, last_seen_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), now())
		ON CONFLICT (node_id) DO UPDATE SET last_seen_at = now()`,
		r.id, s.Instance, s.Host, s.IssuesCommands, s.RunsRevoker, s.SigningKeyID, s.SigningPublicKey, s.AcceptedKeyIDs)
	if err != nil {
		return fmt.Errorf("register this process: %w", err)
	}
	if first {
		// Entries of processes long gone are removed by whoever starts.
		_, err = r.pool.Exec(ctx, `DELETE FROM nodes WHERE last_seen_at < now() - interval '1 day'`)
	}
	return err
}

func (r *Register) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.pool.Exec(ctx, `DELETE FROM nodes WHERE node_id = $1`, r.id); err != nil {
		r.logger.Warn("node register: could not remove this process; it ages out", "err", err)
	}
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
