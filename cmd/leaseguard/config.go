package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/leaseguard/leaseguard/detectors"
	"github.com/leaseguard/leaseguard/revoker"
	"github.com/leaseguard/leaseguard/schemas"

	"github.com/leaseguard/leaseguard/store"
	"github.com/leaseguard/leaseguard/target"
)

// envPrefix prefixes every variable: LEASEGUARD_DATABASE_URL, ….
const envPrefix = "LEASEGUARD"

// Config is every setting, read from the environment. Only this package
// reads the environment; packages receive typed, validated config structs.
// The README's configuration table lists the same variables.
type Config struct {
	DatabaseURL    string `envconfig:"LEASEGUARD_DATABASE_URL" default:"postgres://postgres@127.0.0.1:5432/test?sslmode=disable" desc:"state store (lease ledger, outbox); PostgreSQL URL"`
	DatabaseSchema string `envconfig:"LEASEGUARD_DATABASE_SCHEMA" default:"leaseguard" desc:"schema of the state store"`

	NATSURL           string        `envconfig:"LEASEGUARD_NATS_URL" desc:"NATS cluster URL(s), comma-separated; empty starts an embedded JetStream server under DATA_DIR"`
	AuditSubject      string        `envconfig:"LEASEGUARD_AUDIT_SUBJECT" default:"vault.audit.>" desc:"subject pattern carrying Vault audit entries, one JSON entry per message"`
	LeaseSubject      string        `envconfig:"LEASEGUARD_LEASE_SUBJECT" default:"vault.leases.>" desc:"subject carrying LeaseEvent documents from other producers (empty: off)"`
	AuditStream       string        `envconfig:"LEASEGUARD_AUDIT_STREAM" default:"VAULT_AUDIT" desc:"JetStream stream holding both subjects (created if absent)"`
	IngestConsumer    string        `envconfig:"LEASEGUARD_INGEST_CONSUMER" default:"leaseguard-ingest" desc:"durable pull consumer name"`
	DeadletterSubject string        `envconfig:"LEASEGUARD_DEADLETTER_SUBJECT" default:"leaseguard.deadletter" desc:"prefix for dead letters (<prefix>.audit, <prefix>.lease), stream LEASEGUARD_DEADLETTER"`
	DeadletterMaxAge  time.Duration `envconfig:"LEASEGUARD_DEADLETTER_MAX_AGE" default:"168h" desc:"how long the dead-letter stream keeps dead letters (secrets in them are redacted before they are stored)"`
	AuditMaxAge       time.Duration `envconfig:"LEASEGUARD_AUDIT_MAX_AGE" default:"168h" desc:"how long the audit stream keeps entries"`

	MetricsAddr string `envconfig:"LEASEGUARD_METRICS_ADDR" default:":9464" desc:"listen address for /metrics, /livez (alias /healthz), /readyz"`
	LogLevel    string `envconfig:"LEASEGUARD_LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat   string `envconfig:"LEASEGUARD_LOG_FORMAT" default:"auto" desc:"json, text, or auto (text on a terminal, else json)"`
	DataDir     string `envconfig:"LEASEGUARD_DATA_DIR" default:"/var/lib/leaseguard" desc:"local state: embedded JetStream store, generated signing key"`

	Targets       string `envconfig:"LEASEGUARD_TARGETS" desc:"target databases, name=postgres-url,…; default one target, the state-store database, named after it"`
	Routes        string `envconfig:"LEASEGUARD_ROUTES" desc:"mount or mount/role glob → target, pattern=target,… (first match wins); optional with one target"`
	RoleTTLs      string `envconfig:"LEASEGUARD_ROLE_TTLS" desc:"fallback lease TTL per Vault role, role=duration or mount/role=duration,…"`
	MaxEntryBytes int    `envconfig:"LEASEGUARD_MAX_ENTRY_BYTES" default:"1048576" desc:"larger audit entries are dead-lettered"`
	IngestBatch   int    `envconfig:"LEASEGUARD_INGEST_BATCH" default:"500" desc:"messages per ledger transaction"`
	MaxAckPending int    `envconfig:"LEASEGUARD_MAX_ACK_PENDING" default:"4096" desc:"unacknowledged messages the ingest consumer may hold"`
	Roles         string `envconfig:"LEASEGUARD_ROLES" default:"ingest,detectors,revoker,relay,observer,alerts" desc:"which parts run in this process: ingest, detectors (expiry), revoker, relay (evidence), observer (database roles and sessions, and their rules), alerts (on-call sinks)"`

	ExpiryGrace     time.Duration `envconfig:"LEASEGUARD_EXPIRY_GRACE" default:"30s" desc:"time after a lease's expiry before leaseguard acts (Vault's own revocation gets this long)"`
	DetectInterval  time.Duration `envconfig:"LEASEGUARD_DETECT_INTERVAL" default:"1s" desc:"how often the expiry detector looks for due leases"`
	ObserveInterval time.Duration `envconfig:"LEASEGUARD_OBSERVE_INTERVAL" default:"5s" desc:"how often the observer reads pg_roles and pg_stat_activity of each target"`
	DetectBatch     int           `envconfig:"LEASEGUARD_DETECT_BATCH" default:"500" desc:"due leases claimed per detector transaction"`
	RuleModes       string        `envconfig:"LEASEGUARD_RULE_MODES" desc:"starting point of the rule modes (recorded at first start; then leaseguard scope): rule=observe|approve|enforce,… over the defaults: lease-expired-not-revoked, ghost-session and credential-reuse-after-revoke enforce inside the scope; the other rules observe (see the rules table)"`
	EnforceScope    string        `envconfig:"LEASEGUARD_ENFORCE_SCOPE" desc:"starting point of where rules may enforce (recorded at first start; then leaseguard scope): *, or db:<glob>,role:<mount/role glob>,…; empty = nowhere: a pilot, rules record what they would do (would_drop, would_terminate); * = everywhere"`

	ManagedRolePattern   string        `envconfig:"LEASEGUARD_MANAGED_ROLE_PATTERN" default:"^v-" desc:"regular expression a role name must match to be dropped (Vault's default username template starts with v-)"`
	ProtectedRoles       string        `envconfig:"LEASEGUARD_PROTECTED_ROLES" desc:"comma-separated roles never dropped, whatever their name"`
	ReassignOwnedTo      string        `envconfig:"LEASEGUARD_REASSIGN_OWNED_TO" desc:"role that receives objects owned by dropped users (default: the revoker's login role)"`
	CommandSigningKey    string        `envconfig:"LEASEGUARD_COMMAND_SIGNING_KEY" desc:"Ed25519 key signing revocation commands: base64 seed or private key, or file:<path>; empty: generated in DATA_DIR"`
	CommandVerifyKeys    string        `envconfig:"LEASEGUARD_COMMAND_VERIFY_KEYS" desc:"comma-separated base64 Ed25519 public keys whose commands the revoker accepts (the signing key's own is always accepted)"`
	CommandTTL           time.Duration `envconfig:"LEASEGUARD_COMMAND_TTL" default:"10m" desc:"how long a signed revocation command stays valid; the revoker refuses it after (1s to 24h)"`
	RevokeGroupRoles     bool          `envconfig:"LEASEGUARD_REVOKE_GROUP_ROLES" default:"false" desc:"let the revoker drop roles that have members (group roles); refused by default"`
	RevokeCreateRole     bool          `envconfig:"LEASEGUARD_REVOKE_CREATEROLE" default:"false" desc:"let the revoker drop roles with CREATEROLE; refused by default"`
	MaxRevocationsPerMin int           `envconfig:"LEASEGUARD_MAX_REVOCATIONS_PER_MINUTE" default:"600" desc:"blast-radius limit on automatic revocations; past it commands wait and leaseguard_revocation_throttling rises"`
	RevocationBatch      int           `envconfig:"LEASEGUARD_REVOCATION_BATCH" default:"100" desc:"roles dropped per target transaction"`
	StatementTimeout     time.Duration `envconfig:"LEASEGUARD_STATEMENT_TIMEOUT" default:"10s" desc:"statement_timeout of drop transactions, and of every connection to a target; a call to a target still unanswered 2 s past it is given up (a silent network)"`
	LockTimeout          time.Duration `envconfig:"LEASEGUARD_LOCK_TIMEOUT" default:"5s" desc:"lock_timeout of drop transactions, and of every connection to a target"`
	RevocationSubject    string        `envconfig:"LEASEGUARD_REVOCATION_SUBJECT" default:"leaseguard.revocations" desc:"work-queue subject of revocation commands (stream LEASEGUARD_REVOCATIONS)"`
	EvidenceSubject      string        `envconfig:"LEASEGUARD_EVIDENCE_SUBJECT" default:"leaseguard.evidence" desc:"subject evidence is relayed to (stream LEASEGUARD_EVIDENCE)"`
	TransportConfig
	AuditSourceConfig
	AdminConfig
	AlertConfig
	ApprovalConfig
	SignalRulesConfig
	VaultConfig
	HealthConfig
	DeadlineConfig

	AllowInsecure bool `envconfig:"LEASEGUARD_ALLOW_INSECURE" default:"false" desc:"accept settings refused outside loopback (admin API without TLS, Kafka SASL without TLS, Vault over http, NATS without TLS or credentials, PostgreSQL with sslmode=disable, a world-writable audit socket), each logged as a warning at start"`

	Instance string `envconfig:"LEASEGUARD_INSTANCE" desc:"name of this installation in evidence (CloudEvents source urn:leaseguard:<instance>); default the host name"`
}

// configError marks invalid configuration (exit 3).
type configError struct{ err error }

func (e configError) Error() string { return "configuration: " + e.err.Error() }
func (e configError) Unwrap() error { return e.err }

// loadConfig reads and validates the environment. The tags carry the full
// prefixed names and Process gets no prefix, so envconfig never falls back
// to an unprefixed variable (a stray DATABASE_URL in a container).
func loadConfig() (Config, error) {
	var c Config
	if err := envconfig.Process("", &c); err != nil {
		return c, configError{err}
	}
	if err := c.Validate(); err != nil {
		return c, configError{err}
	}
	return c, nil
}

func env(name string) string { return envPrefix + "_" + name }

// requiresApproval says which rules are in approve mode: the revoker
// carries out their commands only if an owner approved them.
func (c Config) requiresApproval() func(rule string) bool {
	modes, _ := detectors.ParseModes(c.RuleModes)
	return func(rule string) bool { return modes.Mode(rule) == schemas.ModeApprove }
}

var knownRoles = map[string]bool{"ingest": true, "detectors": true, "revoker": true, "relay": true, "observer": true, "alerts": true}

// Validate checks every setting; each error names its variable.
func (c Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", env(name), fmt.Sprintf(format, args...)))
	}
	if err := (store.Config{URL: c.DatabaseURL, Schema: c.DatabaseSchema}).Validate(); err != nil {
		bad("DATABASE_URL", "%v", err)
	}
	if !regexp.MustCompile(`^[a-z_][a-z0-9_]*$`).MatchString(c.DatabaseSchema) {
		bad("DATABASE_SCHEMA", "%q is not a plain lowercase identifier", c.DatabaseSchema)
	}
	if c.AuditSubject == "" {
		bad("AUDIT_SUBJECT", "must not be empty")
	}
	if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
		bad("METRICS_ADDR", "%q is not host:port", c.MetricsAddr)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("LOG_LEVEL", "%v", err)
	}
	switch c.LogFormat {
	case "auto", "json", "text":
	default:
		bad("LOG_FORMAT", "%q is not auto, json or text", c.LogFormat)
	}
	if c.DataDir == "" {
		bad("DATA_DIR", "must not be empty")
	}
	if _, err := c.targetConfig(); err != nil {
		bad("TARGETS", "%v", err)
	}
	if _, err := parseRoleTTLs(c.RoleTTLs); err != nil {
		bad("ROLE_TTLS", "%v", err)
	}
	if c.DeadletterMaxAge <= 0 {
		bad("DEADLETTER_MAX_AGE", "must be positive")
	}
	if c.MaxEntryBytes < 1024 {
		bad("MAX_ENTRY_BYTES", "%d is below 1024", c.MaxEntryBytes)
	}
	if c.IngestBatch < 1 || c.IngestBatch > 10000 {
		bad("INGEST_BATCH", "%d is outside 1..10000", c.IngestBatch)
	}
	if c.MaxAckPending < c.IngestBatch {
		bad("MAX_ACK_PENDING", "%d is below INGEST_BATCH %d", c.MaxAckPending, c.IngestBatch)
	}
	if _, err := parseRoles(c.Roles); err != nil {
		bad("ROLES", "%v", err)
	}
	if c.ExpiryGrace < 0 {
		bad("EXPIRY_GRACE", "must not be negative")
	}
	if c.DetectInterval <= 0 {
		bad("DETECT_INTERVAL", "must be positive")
	}
	if c.ObserveInterval < 100*time.Millisecond {
		bad("OBSERVE_INTERVAL", "must be at least 100ms")
	}
	if c.DetectBatch < 1 {
		bad("DETECT_BATCH", "must be positive")
	}
	if modes, err := detectors.ParseModes(c.RuleModes); err != nil {
		bad("RULE_MODES", "%v", err)
	} else {
		for _, r := range []string{detectors.RuleUnauditedIssue, detectors.RuleMassRevocation} {
			if modes.Mode(r) != schemas.ModeObserve { // enforce or approve
				bad("RULE_MODES", "%s names no database user and can only observe", r)
			}
		}
	}
	if _, err := detectors.ParseScope(c.EnforceScope); err != nil {
		bad("ENFORCE_SCOPE", "%v", err)
	}
	if c.ManagedRolePattern == "" {
		bad("MANAGED_ROLE_PATTERN", "must not be empty: it is what keeps leaseguard off roles Vault did not create")
	} else if _, err := regexp.Compile(c.ManagedRolePattern); err != nil {
		bad("MANAGED_ROLE_PATTERN", "%v", err)
	}
	if c.CommandSigningKey != "" {
		if _, err := revoker.ParsePrivateKey(c.CommandSigningKey); err != nil {
			bad("COMMAND_SIGNING_KEY", "%v", err)
		}
	}
	if _, err := revoker.ParsePublicKeys(c.CommandVerifyKeys); err != nil {
		bad("COMMAND_VERIFY_KEYS", "%v", err)
	}
	if c.CommandTTL < time.Second || c.CommandTTL > revoker.MaxCommandTTL {
		bad("COMMAND_TTL", "%s is outside 1s..%s", c.CommandTTL, revoker.MaxCommandTTL)
	}
	if c.MaxRevocationsPerMin < 1 {
		bad("MAX_REVOCATIONS_PER_MINUTE", "must be positive")
	}
	if c.RevocationBatch < 1 || c.RevocationBatch > 1000 {
		bad("REVOCATION_BATCH", "%d is outside 1..1000", c.RevocationBatch)
	}
	if c.StatementTimeout <= 0 || c.LockTimeout <= 0 {
		bad("STATEMENT_TIMEOUT", "statement and lock timeouts must be positive")
	}
	c.TransportConfig.validate(bad)
	c.validateNATSListen(bad)
	c.validateAuditSources(bad)
	c.AdminConfig.validate(bad)
	c.AlertConfig.validate(bad)
	c.ApprovalConfig.validate(bad)
	c.SignalRulesConfig.validate(c.RuleModes, bad)
	c.VaultConfig.validate(bad)
	c.HealthConfig.validate(bad)
	c.DeadlineConfig.validate(bad)
	c.validatePosture(bad)
	if c.RevocationSubject == "" || c.EvidenceSubject == "" {
		bad("REVOCATION_SUBJECT", "revocation and evidence subjects must not be empty")
	}
	return errors.Join(errs...)
}

// targetConfig builds the target set: the configured one, or the state
// store's database alone.
func (c Config) targetConfig() (target.Config, error) {
	var tc target.Config
	var err error
	if strings.TrimSpace(c.Targets) == "" {
		tc.Targets = []target.Target{{Name: target.DefaultName(c.DatabaseURL), URL: c.DatabaseURL}}
	} else if tc.Targets, err = target.ParseTargets(c.Targets); err != nil {
		return tc, err
	}
	if tc.Routes, err = target.ParseRoutes(c.Routes); err != nil {
		return tc, fmt.Errorf("%s: %w", env("ROUTES"), err)
	}
	tc.Conn = c.targetConn()
	return tc, tc.Validate()
}

func parseRoleTTLs(s string) (store.RoleTTLs, error) {
	out := store.RoleTTLs{}
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		k, v, ok := strings.Cut(e, "=")
		k = strings.Trim(strings.TrimSpace(k), "/")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: want role=duration", e)
		}
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%q: %q is not a positive duration", e, v)
		}
		out[k] = d
	}
	return out, nil
}

func parseRoles(s string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, r := range strings.Split(s, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		if !knownRoles[r] {
			return nil, fmt.Errorf("unknown role %q (known: ingest, detectors, revoker, relay, observer, alerts)", r)
		}
		out[r] = true
	}
	return out, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("%q is not debug, info, warn or error", s)
	}
	return l, nil
}

// newLogger builds the process logger: JSON for machines, text for people.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	l, _ := parseLevel(level)
	opts := &slog.HandlerOptions{Level: l}
	if format == "text" || (format == "auto" && isTerminal(w)) {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// redactURL hides a connection URL's password.
func redactURL(u string) string {
	re := regexp.MustCompile(`(://[^:/@]*:)[^@]*@`)
	u = re.ReplaceAllString(u, "${1}xxxxx@")
	return regexp.MustCompile(`(?i)(password=)[^ &]*`).ReplaceAllString(u, "${1}xxxxx")
}

// configCmd prints the effective configuration with secrets redacted.
func configCmd(_ context.Context, m *Main, args []string) error {
	fs := m.flags("config", "[--markdown]")
	markdown := fs.Bool("markdown", false, "print the table of every variable, its default and meaning (as in the README)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *markdown {
		fmt.Fprint(m.Stdout, configTable())
		return nil
	}
	c, err := loadConfig()
	if err != nil {
		return err
	}
	lines := []string{
		env("DATABASE_URL") + "=" + redactURL(c.DatabaseURL),
		env("DATABASE_SCHEMA") + "=" + c.DatabaseSchema,
		env("NATS_URL") + "=" + redactURL(c.NATSURL),
		env("AUDIT_SUBJECT") + "=" + c.AuditSubject,
		env("LEASE_SUBJECT") + "=" + c.LeaseSubject,
		env("METRICS_ADDR") + "=" + c.MetricsAddr,
		env("DATA_DIR") + "=" + filepath.Clean(c.DataDir),
		env("ROLES") + "=" + c.Roles,
	}
	tc, _ := c.targetConfig()
	for _, t := range tc.Targets {
		lines = append(lines, "target "+t.Name+"="+redactURL(t.URL))
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Fprintln(m.Stdout, l)
	}
	return nil
}

// configTable renders every variable of Config as a Markdown table.
func configTable() string {
	var b strings.Builder
	b.WriteString("| variable | default | meaning |\n|---|---|---|\n")
	for _, f := range reflect.VisibleFields(reflect.TypeOf(Config{})) {
		name := f.Tag.Get("envconfig")
		if name == "" {
			continue
		}
		def := f.Tag.Get("default")
		if def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", name, def, strings.ReplaceAll(f.Tag.Get("desc"), "|", "\\|"))
	}
	return b.String()
}
