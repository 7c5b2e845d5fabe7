package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"time"

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
// The README's configuration table lists the same variables (docs/configuration.md).
type Config struct {
	// typed are the settings below that need parsing, parsed once by
	// Validate (or loadConfig); the commands read them there.
	typed *typedSettings

	DatabaseURL    string `env:"LEASEGUARD_DATABASE_URL" desc:"state store (lease ledger, outbox): its PostgreSQL URL, e.g. postgres://leaseguard@db.example:5432/leaseguard?sslmode=verify-full; required by every command that opens it (run, migrate, replay, revoke, approve, reject, scope, pilot, evidence verify); no default"`
	DatabaseSchema string `env:"LEASEGUARD_DATABASE_SCHEMA" envDefault:"leaseguard" desc:"schema of the state store"`

	NATSURL           string        `env:"LEASEGUARD_NATS_URL" desc:"NATS cluster URL(s), comma-separated; empty starts an embedded JetStream server under DATA_DIR"`
	AuditSubject      string        `env:"LEASEGUARD_AUDIT_SUBJECT" envDefault:"vault.audit.>" desc:"subject pattern carrying Vault audit entries, one JSON entry per message"`
	LeaseSubject      string        `env:"LEASEGUARD_LEASE_SUBJECT" envDefault:"vault.leases.>" desc:"subject carrying LeaseEvent documents from other producers (empty: off)"`
	AuditStream       string        `env:"LEASEGUARD_AUDIT_STREAM" envDefault:"VAULT_AUDIT" desc:"JetStream stream holding both subjects (created if absent)"`
	IngestConsumer    string        `env:"LEASEGUARD_INGEST_CONSUMER" envDefault:"leaseguard-ingest" desc:"durable pull consumer name"`
	DeadletterSubject string        `env:"LEASEGUARD_DEADLETTER_SUBJECT" envDefault:"leaseguard.deadletter" desc:"prefix for dead letters (<prefix>.audit, <prefix>.lease), stream LEASEGUARD_DEADLETTER"`
	DeadletterMaxAge  time.Duration `env:"LEASEGUARD_DEADLETTER_MAX_AGE" envDefault:"168h" desc:"how long the dead-letter stream keeps dead letters (secrets in them are redacted before they are stored)"`
	AuditMaxAge       time.Duration `env:"LEASEGUARD_AUDIT_MAX_AGE" envDefault:"168h" desc:"how long the audit stream keeps entries"`
	StreamReplicas    int           `env:"LEASEGUARD_STREAM_REPLICAS" envDefault:"1" desc:"replicas of every stream leaseguard creates (audit, dead letters, revocations, observer, evidence): 3 or 5 on a JetStream cluster of that many servers; 1 with the embedded server; an existing stream is updated to it"`

	MetricsAddr string `env:"LEASEGUARD_METRICS_ADDR" envDefault:":9464" desc:"listen address for /metrics, /livez (alias /healthz), /readyz"`
	LogLevel    string `env:"LEASEGUARD_LOG_LEVEL" envDefault:"info" desc:"debug, info, warn or error"`
	LogFormat   string `env:"LEASEGUARD_LOG_FORMAT" envDefault:"auto" desc:"json, text, or auto (text on a terminal, else json)"`
	DataDir     string `env:"LEASEGUARD_DATA_DIR" envDefault:"/var/lib/leaseguard" desc:"local state: embedded JetStream store, generated signing key"`

	Targets       string `env:"LEASEGUARD_TARGETS" desc:"target databases, name=url,… (postgres:// or key=value for PostgreSQL, mysql://user:password@host:port/ for MySQL and MariaDB); default one target, the state-store database, named after it"`
	Routes        string `env:"LEASEGUARD_ROUTES" desc:"mount or mount/role glob → target, pattern=target,… (first match wins); optional with one target"`
	RoleTTLs      string `env:"LEASEGUARD_ROLE_TTLS" desc:"fallback lease TTL per Vault role, role=duration or mount/role=duration,…"`
	MaxEntryBytes int    `env:"LEASEGUARD_MAX_ENTRY_BYTES" envDefault:"1048576" desc:"larger audit entries are dead-lettered"`
	IngestBatch   int    `env:"LEASEGUARD_INGEST_BATCH" envDefault:"500" desc:"messages per ledger transaction"`
	MaxAckPending int    `env:"LEASEGUARD_MAX_ACK_PENDING" envDefault:"4096" desc:"unacknowledged messages the ingest consumer may hold"`
	Roles         string `env:"LEASEGUARD_ROLES" envDefault:"ingest,detectors,revoker,relay,observer,alerts" desc:"which parts run in this process: ingest, detectors (expiry), revoker, relay (evidence), observer (database roles and sessions, and their rules), alerts (on-call sinks)"`

	ExpiryGrace     time.Duration `env:"LEASEGUARD_EXPIRY_GRACE" envDefault:"30s" desc:"time after a lease's expiry before leaseguard acts (Vault's own revocation gets this long)"`
	DetectInterval  time.Duration `env:"LEASEGUARD_DETECT_INTERVAL" envDefault:"1s" desc:"how often the expiry detector looks for due leases"`
	ObserveInterval time.Duration `env:"LEASEGUARD_OBSERVE_INTERVAL" envDefault:"5s" desc:"how often the observer reads pg_roles and pg_stat_activity of each target"`
	DetectBatch     int           `env:"LEASEGUARD_DETECT_BATCH" envDefault:"500" desc:"due leases claimed per detector transaction"`
	RuleModes       string        `env:"LEASEGUARD_RULE_MODES" desc:"starting point of the rule modes (recorded at first start; then leaseguard scope): rule=observe|approve|enforce,… over the defaults: lease-expired-not-revoked, ghost-session and credential-reuse-after-revoke enforce inside the scope; the other rules observe (see the rules table)"`
	EnforceScope    string        `env:"LEASEGUARD_ENFORCE_SCOPE" desc:"starting point of where rules may enforce (recorded at first start; then leaseguard scope): *, or db:<glob>,role:<mount/role glob>,…; empty = nowhere: a pilot, rules record what they would do (would_drop, would_terminate); * = everywhere"`

	ManagedRolePattern    string        `env:"LEASEGUARD_MANAGED_ROLE_PATTERN" envDefault:"^v-" desc:"regular expression a role name must match to be dropped (Vault's default username template starts with v-)"`
	ProtectedRoles        string        `env:"LEASEGUARD_PROTECTED_ROLES" desc:"comma-separated roles never dropped, whatever their name"`
	ReassignOwnedTo       string        `env:"LEASEGUARD_REASSIGN_OWNED_TO" desc:"role that receives objects owned by dropped users (default: the revoker's login role)"`
	CommandSigningKey     string        `env:"LEASEGUARD_COMMAND_SIGNING_KEY" secret:"true" desc:"Ed25519 key signing revocation commands: base64 seed or private key, or file:<path>; empty: generated in DATA_DIR"`
	CommandVerifyKeys     string        `env:"LEASEGUARD_COMMAND_VERIFY_KEYS" desc:"comma-separated base64 Ed25519 public keys whose commands the revoker accepts (the signing key's own is always accepted)"`
	CommandTTL            time.Duration `env:"LEASEGUARD_COMMAND_TTL" envDefault:"10m" desc:"how long a signed revocation command stays valid; the revoker refuses it after (1s to 24h)"`
	RevokeGroupRoles      bool          `env:"LEASEGUARD_REVOKE_GROUP_ROLES" envDefault:"false" desc:"let the revoker drop roles that have members (group roles); refused by default"`
	RevokeCreateRole      bool          `env:"LEASEGUARD_REVOKE_CREATEROLE" envDefault:"false" desc:"let the revoker drop roles with CREATEROLE; refused by default"`
	RevokeMySQLSuper      bool          `env:"LEASEGUARD_REVOKE_MYSQL_SUPER" envDefault:"false" desc:"let the revoker drop MySQL/MariaDB accounts with global SUPER or ALL PRIVILEGES; refused by default"`
	MaxRevocationsPerMin  int           `env:"LEASEGUARD_MAX_REVOCATIONS_PER_MINUTE" envDefault:"600" desc:"blast-radius limit on automatic revocations; past it commands wait and leaseguard_revocation_throttling rises"`
	RevocationBatch       int           `env:"LEASEGUARD_REVOCATION_BATCH" envDefault:"100" desc:"roles dropped per target transaction"`
	RevocationInFlight    int           `env:"LEASEGUARD_REVOCATION_BATCHES_IN_FLIGHT" envDefault:"2" desc:"batches of revocation commands a revoker carries out at once (1 to 8): a batch waiting on a role another session holds does not hold back the next, and one batch's bookkeeping overlaps another's drops; each holds a state-store and a target connection"`
	RevocationWorkers     int           `env:"LEASEGUARD_REVOCATION_TARGET_WORKERS" envDefault:"8" desc:"target databases the revoker works in at once (1 to 64): a drop waiting on a lock in one target holds no other target's drops; each target has at most one drop transaction at a time"`
	TargetMaxConns        int           `env:"LEASEGUARD_TARGET_MAX_CONNS" envDefault:"4" desc:"connections of each PostgreSQL target's pool (2 to 100), shared by the observer, the rules and the revoker; with N targets leaseguard opens at most N times this to the targets (docs/operations.md#connections)"`
	TargetConnIdleTimeout time.Duration `env:"LEASEGUARD_TARGET_CONN_IDLE_TIMEOUT" envDefault:"1m" desc:"a target connection idle this long is closed (checked every 10s); at least 1s"`
	StatementTimeout      time.Duration `env:"LEASEGUARD_STATEMENT_TIMEOUT" envDefault:"10s" desc:"statement_timeout of drop transactions, and of every connection to a target; a call to a target still unanswered 2 s past it is given up (a silent network)"`
	LockTimeout           time.Duration `env:"LEASEGUARD_LOCK_TIMEOUT" envDefault:"5s" desc:"lock_timeout of drop transactions, and of every connection to a target"`
	RevocationSubject     string        `env:"LEASEGUARD_REVOCATION_SUBJECT" envDefault:"leaseguard.revocations" desc:"work-queue subject of revocation commands (stream LEASEGUARD_REVOCATIONS)"`
	EvidenceSubject       string        `env:"LEASEGUARD_EVIDENCE_SUBJECT" envDefault:"leaseguard.evidence" desc:"subject evidence is relayed to (stream LEASEGUARD_EVIDENCE)"`
	EvidenceSigningKey    string        `env:"LEASEGUARD_EVIDENCE_SIGNING_KEY" secret:"true" desc:"Ed25519 key signing evidence checkpoints, separate from the command key: base64 seed or private key, or file:<path>; empty: generated in DATA_DIR"`
	EvidenceVerifyKeys    string        `env:"LEASEGUARD_EVIDENCE_VERIFY_KEYS" desc:"comma-separated base64 Ed25519 public keys whose checkpoints evidence verify accepts, e.g. earlier evidence keys after a rotation (the signing key's own is always accepted)"`
	CheckpointInterval    time.Duration `env:"LEASEGUARD_EVIDENCE_CHECKPOINT_INTERVAL" envDefault:"1m" desc:"how often the relay appends a signed checkpoint of the evidence chain when events came after the last one (and once when it stops); evidence verify calls a checkpoint overdue after this plus 1m (1s to 1h)"`
	TransportConfig
	AuditSourceConfig
	AdminConfig
	AlertConfig
	ApprovalConfig
	SignalRulesConfig
	VaultConfig
	HealthConfig
	DeadlineConfig

	AllowInsecure bool `env:"LEASEGUARD_ALLOW_INSECURE" envDefault:"false" desc:"accept settings refused outside loopback (admin API without TLS, Kafka SASL without TLS, Vault over http, NATS without TLS or credentials, PostgreSQL with sslmode=disable, a world-writable audit socket), each logged as a warning at start"`

	Instance string `env:"LEASEGUARD_INSTANCE" desc:"name of this installation in evidence (CloudEvents source urn:leaseguard:<instance>); default the host name"`
}

func env(name string) string { return envPrefix + "_" + name }

// requiresApproval says which rules are in approve mode: the revoker
// carries out their commands only if an owner approved them.
func (c Config) requiresApproval() func(ctx context.Context, rule string) (bool, error) {
	modes := c.parsed().modes
	return func(_ context.Context, rule string) (bool, error) {
		return modes.Mode(rule) == schemas.ModeApprove, nil
	}
}

var knownRoles = map[string]bool{"ingest": true, "detectors": true, "revoker": true, "relay": true, "observer": true, "alerts": true}

// Validate checks every setting, each error naming its variable and value,
// and parses those that need it into the typed settings the commands read.
func (c *Config) Validate() error {
	var ps problems
	c.typed, ps = c.parse()
	if len(ps) > 0 {
		return ps
	}
	return nil
}

// badFunc records that a setting (named without its prefix) is wrong.
type badFunc func(name, format string, args ...any)

// parse checks every setting and parses those that need it, once. It
// returns the typed settings (a value that did not parse left zero) and
// what Validate refuses, one problem per finding, each line
// "NAME=\"value\": what is wrong".
func (c Config) parse() (*typedSettings, problems) {
	var ps problems
	bad := func(name, format string, args ...any) {
		full := env(name)
		echo := full
		if s, ok := settingNamed(full); ok {
			echo = s.echo(s.value(c))
		}
		ps = append(ps, problem{name: full, line: echo + ": " + fmt.Sprintf(format, args...)})
	}
	t := &typedSettings{}
	c.typed = t // the checks after a parse read its value
	c.validateStore(t, bad)
	c.validateBasics(t, bad)
	c.validateEnforcement(t, bad)
	c.validateEvidence(t, bad)
	c.TransportConfig.validate(t, bad)
	c.validateNATSListen(bad)
	c.validateAuditSources(t, bad)
	c.AdminConfig.validate(bad)
	c.AlertConfig.validate(bad)
	c.ApprovalConfig.validate(bad)
	c.SignalRulesConfig.validate(t, bad)
	c.VaultConfig.validate(bad)
	c.HealthConfig.validate(bad)
	c.DeadlineConfig.validate(bad)
	c.validatePosture(bad)
	return t, ps
}

// validateEvidence checks the evidence keys and the checkpoint cadence.
func (c Config) validateEvidence(t *typedSettings, bad badFunc) {
	var err error
	if c.EvidenceSigningKey != "" {
		if t.evidenceKey, err = revoker.ParsePrivateKey(c.EvidenceSigningKey); err != nil {
			bad("EVIDENCE_SIGNING_KEY", "%v", err)
		}
	}
	if t.evidenceVerifyKeys, err = revoker.ParsePublicKeys(c.EvidenceVerifyKeys); err != nil {
		bad("EVIDENCE_VERIFY_KEYS", "%v", err)
	}
	if c.CheckpointInterval < time.Second || c.CheckpointInterval > time.Hour {
		bad("EVIDENCE_CHECKPOINT_INTERVAL", "outside 1s..1h")
	}
}

// validateStore checks the state store and the targets. Without
// LEASEGUARD_DATABASE_URL there is no state store (a command that opens it
// says it is required) and, without LEASEGUARD_TARGETS, no target either.
func (c Config) validateStore(t *typedSettings, bad badFunc) {
	var err error
	if c.DatabaseURL != "" {
		if err := (store.Config{URL: c.DatabaseURL, Schema: c.DatabaseSchema}).Validate(); err != nil {
			bad("DATABASE_URL", "%v", err)
		}
	}
	if !regexp.MustCompile(`^[a-z_][a-z0-9_]*$`).MatchString(c.DatabaseSchema) {
		bad("DATABASE_SCHEMA", "not a plain lowercase identifier (letters, digits, _)")
	}
	if c.TargetMaxConns < 2 || c.TargetMaxConns > 100 {
		bad("TARGET_MAX_CONNS", "outside 2..100: the observer and the revoker each need one at a time")
	}
	if c.TargetConnIdleTimeout < time.Second {
		bad("TARGET_CONN_IDLE_TIMEOUT", "below 1s")
	}
	if c.DatabaseURL == "" && strings.TrimSpace(c.Targets) == "" {
		if t.targets.Routes, err = target.ParseRoutes(c.Routes); err != nil {
			bad("ROUTES", "%v", err)
		}
		return
	}
	c.validateTargets(t, bad)
}

// validateTargets parses the target set: the configured one, or the state
// store's database alone, and the routes to it.
func (c Config) validateTargets(t *typedSettings, bad badFunc) {
	ts := []target.Target{{Name: target.DefaultName(c.DatabaseURL), URL: c.DatabaseURL}}
	if strings.TrimSpace(c.Targets) != "" {
		var err error
		if ts, err = target.ParseTargets(c.Targets); err != nil {
			bad("TARGETS", "%v", err)
			return
		}
		names := make([]string, len(ts))
		seen := map[string]bool{}
		for i, t := range ts {
			if seen[t.Name] {
				bad("TARGETS", "target %q configured twice", t.Name)
				return
			}
			seen[t.Name], names[i] = true, t.Name
		}
		if len(ts) > 1 && strings.TrimSpace(c.Routes) == "" {
			bad("ROUTES", "several targets (%s) but no routes: say which Vault mount or role goes to which target, e.g. database/*=%s",
				strings.Join(names, ", "), names[0])
			return
		}
	}
	routes, err := target.ParseRoutes(c.Routes)
	if err != nil {
		bad("ROUTES", "%v", err)
		return
	}
	tc := target.Config{Targets: ts, Routes: routes, Conn: c.targetConn(),
		MaxConns: int32(c.TargetMaxConns), MaxConnIdleTime: c.TargetConnIdleTimeout}
	if err := tc.Validate(); err != nil {
		bad("TARGETS", "%v", err)
		return
	}
	t.targets = tc
}

func (c Config) validateBasics(t *typedSettings, bad badFunc) {
	var err error
	if c.AuditSubject == "" {
		bad("AUDIT_SUBJECT", "must not be empty")
	}
	if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
		bad("METRICS_ADDR", "not host:port, e.g. :9464 or 127.0.0.1:9464")
	}
	if t.logLevel, err = parseLevel(c.LogLevel); err != nil {
		bad("LOG_LEVEL", "%v", err)
	}
	switch c.LogFormat {
	case "auto", "json", "text":
	default:
		bad("LOG_FORMAT", "not auto, json or text")
	}
	if c.DataDir == "" {
		bad("DATA_DIR", "must not be empty")
	}
	if t.roleTTLs, err = parseRoleTTLs(c.RoleTTLs); err != nil {
		bad("ROLE_TTLS", "%v", err)
	}
	if c.DeadletterMaxAge <= 0 {
		bad("DEADLETTER_MAX_AGE", "must be positive")
	}
	switch {
	case c.StreamReplicas < 1 || c.StreamReplicas > 5:
		bad("STREAM_REPLICAS", "outside 1..5 (JetStream's limit)")
	case c.StreamReplicas > 1 && c.NATSURL == "":
		bad("STREAM_REPLICAS", "the embedded JetStream server (LEASEGUARD_NATS_URL empty) is one server: only 1 replica")
	}
	if c.MaxEntryBytes < 1024 {
		bad("MAX_ENTRY_BYTES", "below 1024")
	}
	if c.IngestBatch < 1 || c.IngestBatch > 10000 {
		bad("INGEST_BATCH", "outside 1..10000")
	}
	if c.MaxAckPending < c.IngestBatch {
		bad("MAX_ACK_PENDING", "below LEASEGUARD_INGEST_BATCH %d", c.IngestBatch)
	}
	if t.roles, err = parseRoles(c.Roles); err != nil {
		bad("ROLES", "%v", err)
	}
	if c.RevocationSubject == "" {
		bad("REVOCATION_SUBJECT", "must not be empty")
	}
	if c.EvidenceSubject == "" {
		bad("EVIDENCE_SUBJECT", "must not be empty")
	}
}

// validateEnforcement checks what decides what gets dropped, and when.
func (c Config) validateEnforcement(t *typedSettings, bad badFunc) {
	var err error
	if c.ExpiryGrace < 0 {
		bad("EXPIRY_GRACE", "must not be negative")
	}
	if c.DetectInterval <= 0 {
		bad("DETECT_INTERVAL", "must be positive")
	}
	if c.RevocationInFlight < 1 || c.RevocationInFlight > revoker.MaxInFlight {
		bad("REVOCATION_BATCHES_IN_FLIGHT", fmt.Sprintf("outside 1..%d", revoker.MaxInFlight))
	}
	if c.RevocationWorkers < 1 || c.RevocationWorkers > 64 {
		bad("REVOCATION_TARGET_WORKERS", "outside 1..64")
	}
	if c.ObserveInterval < 100*time.Millisecond {
		bad("OBSERVE_INTERVAL", "must be at least 100ms")
	}
	if c.DetectBatch < 1 {
		bad("DETECT_BATCH", "must be positive")
	}
	if t.modes, err = detectors.ParseModes(c.RuleModes); err != nil {
		bad("RULE_MODES", "%v", err)
	} else {
		for _, r := range []string{detectors.RuleUnauditedIssue, detectors.RuleMassRevocation} {
			if t.modes.Mode(r) != schemas.ModeObserve { // enforce or approve
				bad("RULE_MODES", "rule %s names no database user and can only observe", r)
			}
		}
		if err := detectors.CheckSignalModes(t.modes); err != nil {
			bad("RULE_MODES", "%v", err)
		}
	}
	if t.scope, err = detectors.ParseScope(c.EnforceScope); err != nil {
		bad("ENFORCE_SCOPE", "%v", err)
	}
	if c.ManagedRolePattern == "" {
		bad("MANAGED_ROLE_PATTERN", "must not be empty: it is what keeps leaseguard off roles Vault did not create")
	} else if t.managed, err = regexp.Compile(c.ManagedRolePattern); err != nil {
		bad("MANAGED_ROLE_PATTERN", "not a regular expression: %s", regexpProblem(err))
	}
	if c.CommandSigningKey != "" {
		if t.signingKey, err = revoker.ParsePrivateKey(c.CommandSigningKey); err != nil {
			bad("COMMAND_SIGNING_KEY", "%v", err)
		}
	}
	if t.verifyKeys, err = revoker.ParsePublicKeys(c.CommandVerifyKeys); err != nil {
		bad("COMMAND_VERIFY_KEYS", "%v", err)
	}
	if c.CommandTTL < time.Second || c.CommandTTL > revoker.MaxCommandTTL {
		bad("COMMAND_TTL", "outside 1s..%s", shortDuration(revoker.MaxCommandTTL))
	}
	if c.MaxRevocationsPerMin < 1 {
		bad("MAX_REVOCATIONS_PER_MINUTE", "must be positive")
	}
	if c.RevocationBatch < 1 || c.RevocationBatch > 1000 {
		bad("REVOCATION_BATCH", "outside 1..1000")
	}
	if c.StatementTimeout <= 0 {
		bad("STATEMENT_TIMEOUT", "must be positive")
	}
	if c.LockTimeout <= 0 {
		bad("LOCK_TIMEOUT", "must be positive")
	}
}

// regexpProblem is what is wrong with a regular expression, without the
// parser's "error parsing regexp" preamble.
func regexpProblem(err error) string {
	var se *syntax.Error
	if errors.As(err, &se) {
		return string(se.Code)
	}
	return err.Error()
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
			return nil, fmt.Errorf("%q: want role=duration, e.g. readonly=1h", e)
		}
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("role %s: %q is not a positive duration", k, strings.TrimSpace(v))
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
		return l, errors.New("not debug, info, warn or error")
	}
	return l, nil
}

// newLogger builds a logger at a level named in code ("debug", "error"),
// not by a setting (LEASEGUARD_LOG_LEVEL is parsed once, into the typed
// settings, and goes to newLevelLogger).
func newLogger(w io.Writer, level, format string) *slog.Logger {
	l, err := parseLevel(level)
	if err != nil {
		panic("log level " + strconv.Quote(level) + ": " + err.Error())
	}
	return newLevelLogger(w, l, format)
}

// newLevelLogger builds the process logger: JSON for machines, text for people.
func newLevelLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
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
