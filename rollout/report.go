package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"
	"github.com/leaseguard/leaseguard/store"
)

// NoRole is the role of a finding that no lease explains (a ghost session
// of an unknown role, a user with no lease).
const NoRole = "(no lease)"

// NameGuard is the revoker's guard on role names (revoker.GuardConfig):
// the managed pattern and the protected roles.
type NameGuard interface {
	CheckName(name string) error
}

// ReportConfig selects the pilot window.
type ReportConfig struct {
	Since, Until time.Time
	// Guard sets apart the users the revoker would have refused to drop
	// (protected, not managed): they would not have been dropped. Default
	// the Policies' (WithGuard).
	Guard NameGuard
}

// Report summarises a pilot window: what the rules would have dropped or
// terminated outside the enforcement scope, who a guard would have spared,
// and which exceptions spared whom. It is the baseline an owner signs off
// on before the scope widens.
type Report struct {
	Since      time.Time    `json:"since"`
	Until      time.Time    `json:"until"`
	Policy     PolicyBrief  `json:"policy"`
	Would      Would        `json:"would"`
	Rows       []WouldRow   `json:"rows"`
	Spared     []Spared     `json:"spared"`
	Exceptions []Exception  `json:"exceptions"`
	Configured *PolicyBrief `json:"configured,omitempty"`
}

// PolicyBrief is a policy version as the report shows it.
type PolicyBrief struct {
	Version   int64                   `json:"version,omitempty"`
	Scope     string                  `json:"scope"`
	Modes     map[string]schemas.Mode `json:"modes"`
	Actor     string                  `json:"actor,omitempty"`
	ChangedAt *time.Time              `json:"changed_at,omitempty"`
}

// Would counts the pilot findings (would_drop, would_terminate) whose user
// no guard spares.
type Would struct {
	Findings int `json:"findings"`
	// Users: distinct database users.
	Users      int            `json:"users"`
	ByAction   map[string]int `json:"by_action"`
	ByRule     map[string]int `json:"by_rule"`
	ByDatabase map[string]int `json:"by_database"`
	// ByRole: by Vault mount/role, NoRole when no lease explains the user.
	ByRole map[string]int `json:"by_role"`
}

// WouldRow is one rule, database, role and action.
type WouldRow struct {
	Rule     string `json:"rule"`
	Database string `json:"database"`
	Role     string `json:"role"`
	Action   string `json:"action"`
	Findings int    `json:"findings"`
	Users    int    `json:"users"`
}

// Spared is a user a pilot finding would have dropped, whom a guard of the
// revoker spares.
type Spared struct {
	Guard    string `json:"guard"`
	Rule     string `json:"rule"`
	Database string `json:"database"`
	DBUser   string `json:"db_user"`
	Reason   string `json:"reason"`
}

// Exception is one configured exception hit in the window.
type Exception struct {
	Exception string `json:"exception"`
	Value     string `json:"value"`
	Rule      string `json:"rule"`
	Database  string `json:"database"`
	Role      string `json:"role"`
	// Objects: sessions (or other objects) it spared.
	Objects int      `json:"objects"`
	Users   []string `json:"users"`
}

// Report builds the report of the window, under the policy in force now.
func (p *Policies) Report(ctx context.Context, cfg ReportConfig) (Report, error) {
	if cfg.Until.IsZero() {
		cfg.Until = time.Now()
	}
	if !cfg.Since.Before(cfg.Until) {
		return Report{}, fmt.Errorf("%w: the window starts %s, not before its end %s", ErrInvalid, cfg.Since, cfg.Until)
	}
	rep := Report{Since: cfg.Since.UTC(), Until: cfg.Until.UTC(), Rows: []WouldRow{}, Spared: []Spared{}, Exceptions: []Exception{}}
	cur, err := current(ctx, p.pool)
	if err != nil {
		return Report{}, err
	}
	at := cur.ChangedAt
	rep.Policy = PolicyBrief{Version: cur.Version, Scope: cur.Scope.String(), Modes: modeMap(cur.Modes), Actor: cur.Actor, ChangedAt: &at}
	if !cur.Equal(p.configured) {
		rep.Configured = &PolicyBrief{Scope: p.configured.Scope.String(), Modes: modeMap(p.configured.Modes)}
	}
	pilots, err := readPilots(ctx, p.pool, cfg.Since, cfg.Until)
	if err != nil {
		return Report{}, err
	}
	if cfg.Guard == nil {
		cfg.Guard = p.guard
	}
	rep.count(pilots, cfg.Guard)
	if rep.Exceptions, err = readExceptions(ctx, p.pool, cfg.Since, cfg.Until); err != nil {
		return Report{}, err
	}
	return rep, nil
}

// ParseSince reads a report's start: a duration back from until ("24h",
// "90m", "7d"), or an RFC 3339 time; empty is 24h.
func ParseSince(s string, until time.Time) (time.Time, error) {
	if s == "" {
		s = "24h"
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return until.Add(-d), nil
	}
	if n, err := strconv.Atoi(strings.TrimSuffix(s, "d")); err == nil && n > 0 && strings.HasSuffix(s, "d") {
		return until.Add(-time.Duration(n) * 24 * time.Hour), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: since %q: want a positive duration (24h, 7d) or an RFC 3339 time", ErrInvalid, s)
	}
	return t, nil
}

// pilot is one pilot finding.
type pilot struct {
	rule, database, user, role, action string
}

func readPilots(ctx context.Context, q store.Querier, since, until time.Time) ([]pilot, error) {
	rows, err := q.Query(ctx, `
		SELECT rule, coalesce(database, ''), coalesce(db_user, ''), coalesce(finding->>'mount', ''), coalesce(finding->>'role', ''), action
		FROM findings WHERE action = ANY($1) AND detected_at >= $2 AND detected_at < $3`,
		[]string{schemas.ActionWouldDrop, schemas.ActionWouldTerminate}, since, until)
	if err != nil {
		return nil, fmt.Errorf("read pilot findings: %w", err)
	}
	defer rows.Close()
	var out []pilot
	for rows.Next() {
		var f pilot
		var mount string
		if err := rows.Scan(&f.rule, &f.database, &f.user, &mount, &f.role, &f.action); err != nil {
			return nil, fmt.Errorf("read pilot findings: %w", err)
		}
		f.role = roleName(mount, f.role)
		out = append(out, f)
	}
	return out, rows.Err()
}

func roleName(mount, role string) string {
	if mount == "" && role == "" {
		return NoRole
	}
	return mount + "/" + role
}

// count fills Would, Rows and Spared.
func (rep *Report) count(pilots []pilot, guard NameGuard) {
	w := Would{ByAction: map[string]int{}, ByRule: map[string]int{}, ByDatabase: map[string]int{}, ByRole: map[string]int{}}
	users := map[string]bool{}
	type tally struct {
		findings int
		users    map[string]bool
	}
	rows := map[WouldRow]*tally{}
	for _, f := range pilots {
		if s, spared := spare(guard, f); spared {
			rep.Spared = append(rep.Spared, s)
			continue
		}
		w.Findings++
		w.ByAction[f.action]++
		w.ByRule[f.rule]++
		w.ByDatabase[f.database]++
		w.ByRole[f.role]++
		users[f.database+"/"+f.user] = true
		key := WouldRow{Rule: f.rule, Database: f.database, Role: f.role, Action: f.action}
		if rows[key] == nil {
			rows[key] = &tally{users: map[string]bool{}}
		}
		rows[key].findings++
		rows[key].users[f.user] = true
	}
	w.Users = len(users)
	rep.Would = w
	for key, t := range rows {
		key.Findings, key.Users = t.findings, len(t.users)
		rep.Rows = append(rep.Rows, key)
	}
	sort.Slice(rep.Rows, func(i, j int) bool { return rowLess(rep.Rows[i], rep.Rows[j]) })
	sort.Slice(rep.Spared, func(i, j int) bool { return rep.Spared[i].DBUser < rep.Spared[j].DBUser })
}

// spare says whether the revoker would refuse to drop the user of a
// would_drop finding, and why.
func spare(guard NameGuard, f pilot) (Spared, bool) {
	if guard == nil || f.action != schemas.ActionWouldDrop || f.user == "" {
		return Spared{}, false
	}
	var ref *revoker.Refusal
	if err := guard.CheckName(f.user); errors.As(err, &ref) {
		return Spared{Guard: ref.Guard, Rule: f.rule, Database: f.database, DBUser: f.user, Reason: ref.Reason}, true
	}
	return Spared{}, false
}

func rowLess(a, b WouldRow) bool {
	ka := []string{a.Rule, a.Database, a.Role, a.Action}
	kb := []string{b.Rule, b.Database, b.Role, b.Action}
	return slices.Compare(ka, kb) < 0
}

func readExceptions(ctx context.Context, q store.Querier, since, until time.Time) ([]Exception, error) {
	rows, err := q.Query(ctx, `
		SELECT exception, value, rule, database, mount, role, count(*), array_agg(DISTINCT db_user ORDER BY db_user)
		FROM exception_hits WHERE seen_at >= $1 AND seen_at < $2
		GROUP BY exception, value, rule, database, mount, role
		ORDER BY exception, value, rule, database, mount, role`, since, until)
	if err != nil {
		return nil, fmt.Errorf("read exception hits: %w", err)
	}
	defer rows.Close()
	out := []Exception{}
	for rows.Next() {
		var e Exception
		var mount string
		if err := rows.Scan(&e.Exception, &e.Value, &e.Rule, &e.Database, &mount, &e.Role, &e.Objects, &e.Users); err != nil {
			return nil, fmt.Errorf("read exception hits: %w", err)
		}
		e.Role = roleName(mount, e.Role)
		out = append(out, e)
	}
	return out, rows.Err()
}
