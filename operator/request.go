package operator

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalid marks a request that cannot be carried out as given: a usage
// error for the CLI, a 400 for the API.
var ErrInvalid = errors.New("invalid revocation request")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Selector kinds, as Selector.Kind returns them.
const (
	KindDBUser        = "db_user"
	KindLeaseID       = "lease_id"
	KindPrefix        = "prefix"
	KindEntityID      = "entity_id"
	KindTokenAccessor = "token_accessor"
	KindAllManaged    = "all_managed"
)

// Selector names what to revoke: exactly one kind.
type Selector struct {
	// DBUser is a database user by name (in every target, or Database).
	DBUser string
	// LeaseID is one Vault lease id.
	LeaseID string
	// Prefix is a lease id prefix such as "database/creds/readonly/": that
	// lease id or the ids under it, as Vault's revoke-prefix matches.
	Prefix string
	// EntityID is a Vault entity: every lease it obtained.
	EntityID string
	// TokenAccessor is the accessor of the token that obtained the leases,
	// as the audit log shows it (an HMAC unless the audit device is tuned
	// with hmac_accessor=false).
	TokenAccessor string
	// AllManaged is break-glass: every role of Database that matches the
	// managed pattern, whatever the ledger says.
	AllManaged bool
	// Database narrows any selector to one target; AllManaged requires it.
	Database string
}

// Kind returns the kind of the selector that is set, or "" if none is.
// With several set, it returns the first; Validate refuses that.
func (s Selector) Kind() string {
	if k := s.kinds(); len(k) > 0 {
		return k[0]
	}
	return ""
}

func (s Selector) kinds() []string {
	var out []string
	for _, c := range []struct {
		kind string
		set  bool
	}{
		{KindDBUser, s.DBUser != ""}, {KindLeaseID, s.LeaseID != ""}, {KindPrefix, s.Prefix != ""},
		{KindEntityID, s.EntityID != ""}, {KindTokenAccessor, s.TokenAccessor != ""}, {KindAllManaged, s.AllManaged},
	} {
		if c.set {
			out = append(out, c.kind)
		}
	}
	return out
}

// Value returns the selector's argument ("" for AllManaged).
func (s Selector) Value() string {
	switch s.Kind() {
	case KindDBUser:
		return s.DBUser
	case KindLeaseID:
		return s.LeaseID
	case KindPrefix:
		return s.Prefix
	case KindEntityID:
		return s.EntityID
	case KindTokenAccessor:
		return s.TokenAccessor
	}
	return ""
}

// String describes the selection for people: "prefix database/creds/ro/",
// "all managed roles of main", "db_user v-x in main".
func (s Selector) String() string {
	k := s.Kind()
	if k == KindAllManaged {
		return "all managed roles of " + s.Database
	}
	d := k + " " + s.Value()
	if s.Database != "" {
		d += " in " + s.Database
	}
	return d
}

// Validate checks that exactly one selector kind is set, that AllManaged
// names its Database, and that every value is plain text.
func (s Selector) Validate() error {
	switch k := s.kinds(); len(k) {
	case 0:
		return invalid("no selector: name a db user, lease id, prefix, entity id, token accessor, or all managed roles of a database")
	case 1:
	default:
		return invalid("several selectors (%s): name exactly one", strings.Join(k, ", "))
	}
	if s.AllManaged && s.Database == "" {
		return invalid("all managed roles needs the database to act on")
	}
	for name, v := range map[string]string{"db user": s.DBUser, "lease id": s.LeaseID, "prefix": s.Prefix,
		"entity id": s.EntityID, "token accessor": s.TokenAccessor, "database": s.Database} {
		if err := PlainText(name, v, 1024); err != nil {
			return err
		}
		if v != strings.TrimSpace(v) {
			return invalid("%s %q has leading or trailing space", name, v)
		}
	}
	if s.Prefix != "" && strings.Trim(s.Prefix, "/") == "" {
		return invalid("prefix %q would match every lease", s.Prefix)
	}
	return nil
}

// Request is one operator revocation: what, why, by whom.
type Request struct {
	Selector
	// Reason is required; it is recorded in every command and its evidence.
	Reason string
	// Actor is who asked: the OS user for the CLI, the token name for the
	// API. It is recorded in every command and its evidence.
	Actor string
	// Emergency lets the commands bypass the blast-radius limit. The
	// guards apply all the same.
	Emergency bool
	// DryRun: plan only; Execute refuses the plan.
	DryRun bool
	// RequestID names this request. Command ids are derived from it, so
	// executing the same request again (a retry after an interruption, an
	// API client repeating its call) finds the commands already recorded
	// instead of acting twice. Empty: Plan makes a fresh one.
	RequestID string
}

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// Validate checks the selector and that Reason and Actor are given.
func (r Request) Validate() error {
	if err := r.Selector.Validate(); err != nil {
		return err
	}
	if strings.TrimSpace(r.Reason) == "" {
		return invalid("a reason is required")
	}
	if err := PlainText("reason", r.Reason, 2048); err != nil {
		return err
	}
	if strings.TrimSpace(r.Actor) == "" {
		return invalid("the actor is unknown")
	}
	if err := PlainText("actor", r.Actor, 256); err != nil {
		return err
	}
	if r.RequestID != "" && !requestIDRE.MatchString(r.RequestID) {
		return invalid("request id %q: use 1 to 128 letters, digits, '.', '_', ':' or '-'", r.RequestID)
	}
	return nil
}

// PlainText refuses values that are too long, not UTF-8 (commands could not
// be signed) or carry control characters (they would garble logs and
// tables).
func PlainText(name, v string, max int) error {
	switch {
	case len(v) > max:
		return invalid("%s is %d bytes, more than %d", name, len(v), max)
	case !utf8.ValidString(v):
		return invalid("%s is not valid UTF-8", name)
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return invalid("%s contains a control character", name)
	}
	return nil
}
