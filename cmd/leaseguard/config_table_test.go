package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// onlyEnv makes env the only LEASEGUARD_ variables of this test (any the
// test process inherited are removed, and restored at cleanup).
func onlyEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(strings.ToUpper(name), "LEASEGUARD_") {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

// runMainWithin runs the program in-process and gives up after d, so that
// a command that should have refused to start cannot hang the test.
func runMainWithin(t *testing.T, d time.Duration, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out, errb bytes.Buffer
	code := NewMain(strings.NewReader(""), &out, &errb).Run(ctx, args)
	return code, out.String(), errb.String()
}

const databaseURLRequired = "LEASEGUARD_DATABASE_URL is required by %s: the PostgreSQL URL of leaseguard's state store, " +
	"e.g. postgres://leaseguard@db.example:5432/leaseguard"

const notADuration = `not a duration; write a number and a unit, e.g. 500ms, 30s, 5m or 1h`

// TestConfigurationErrorsWordForWord checks each refusal's whole message:
// it names the variable, the value (never a secret's) and the expected
// form, and nothing of Go's internals.
func TestConfigurationErrorsWordForWord(t *testing.T) {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string // the whole of stderr
	}{
		{name: "typo with a close name", env: map[string]string{"LEASEGUARD_ENFORCE_SCOPES": "db:staging"},
			want: "leaseguard config: LEASEGUARD_ENFORCE_SCOPES is not a leaseguard setting; did you mean LEASEGUARD_ENFORCE_SCOPE?\n"},
		{name: "typo stops run", env: map[string]string{"LEASEGUARD_ENFORCE_SCOPES": "db:staging"}, args: []string{"run"},
			want: "leaseguard run: LEASEGUARD_ENFORCE_SCOPES is not a leaseguard setting; did you mean LEASEGUARD_ENFORCE_SCOPE?\n"},
		{name: "typo in a word", env: map[string]string{"LEASEGUARD_OBSERV_INTERVAL": "5s"},
			want: "leaseguard config: LEASEGUARD_OBSERV_INTERVAL is not a leaseguard setting; did you mean LEASEGUARD_OBSERVE_INTERVAL?\n"},
		{name: "lower case", env: map[string]string{"leaseguard_enforce_scope": "*"},
			want: "leaseguard config: leaseguard_enforce_scope is not a leaseguard setting; did you mean LEASEGUARD_ENFORCE_SCOPE?\n"},
		{name: "nothing close", env: map[string]string{"LEASEGUARD_FAVOURITE_COLOUR": "green"},
			want: "leaseguard config: LEASEGUARD_FAVOURITE_COLOUR is not a leaseguard setting\n"},
		{name: "duration", env: map[string]string{"LEASEGUARD_OBSERVE_INTERVAL": "banana"},
			want: `leaseguard config: LEASEGUARD_OBSERVE_INTERVAL="banana": ` + notADuration + "\n"},
		{name: "duration without a unit", env: map[string]string{"LEASEGUARD_COMMAND_TTL": "600"},
			want: `leaseguard config: LEASEGUARD_COMMAND_TTL="600": ` + notADuration + "\n"},
		{name: "empty duration", env: map[string]string{"LEASEGUARD_EXPIRY_GRACE": ""},
			want: `leaseguard config: LEASEGUARD_EXPIRY_GRACE="": ` + notADuration + "\n"},
		{name: "duration too short", env: map[string]string{"LEASEGUARD_OBSERVE_INTERVAL": "50ms"},
			want: `leaseguard config: LEASEGUARD_OBSERVE_INTERVAL="50ms": must be at least 100ms` + "\n"},
		{name: "kafka session timeout below the brokers' range", env: map[string]string{"LEASEGUARD_KAFKA_BROKERS": "127.0.0.1:9092", "LEASEGUARD_KAFKA_SESSION_TIMEOUT": "0s"},
			want: `leaseguard config: LEASEGUARD_KAFKA_SESSION_TIMEOUT="0s": outside 1s..30m` + "\n"},
		{name: "int", env: map[string]string{"LEASEGUARD_INGEST_BATCH": "lots"},
			want: `leaseguard config: LEASEGUARD_INGEST_BATCH="lots": not a whole number` + "\n"},
		{name: "int written as a float", env: map[string]string{"LEASEGUARD_MAX_ENTRY_BYTES": "1.5e6"},
			want: `leaseguard config: LEASEGUARD_MAX_ENTRY_BYTES="1.5e6": not a whole number` + "\n"},
		{name: "int64", env: map[string]string{"LEASEGUARD_ADMIN_MAX_BODY_BYTES": "64k"},
			want: `leaseguard config: LEASEGUARD_ADMIN_MAX_BODY_BYTES="64k": not a whole number` + "\n"},
		{name: "int too large", env: map[string]string{"LEASEGUARD_DETECT_BATCH": "99999999999999999999"},
			want: `leaseguard config: LEASEGUARD_DETECT_BATCH="99999999999999999999": a whole number out of range` + "\n"},
		{name: "int out of bounds", env: map[string]string{"LEASEGUARD_INGEST_BATCH": "0"},
			want: `leaseguard config: LEASEGUARD_INGEST_BATCH="0": outside 1..10000` + "\n"},
		{name: "target pool too small", env: map[string]string{"LEASEGUARD_TARGET_MAX_CONNS": "1"},
			want: `leaseguard config: LEASEGUARD_TARGET_MAX_CONNS="1": outside 2..100: the observer and the revoker each need one at a time` + "\n"},
		{name: "target idle timeout too short", env: map[string]string{"LEASEGUARD_TARGET_CONN_IDLE_TIMEOUT": "10ms"},
			want: `leaseguard config: LEASEGUARD_TARGET_CONN_IDLE_TIMEOUT="10ms": below 1s` + "\n"},
		{name: "no revocation workers", env: map[string]string{"LEASEGUARD_REVOCATION_TARGET_WORKERS": "0"},
			want: `leaseguard config: LEASEGUARD_REVOCATION_TARGET_WORKERS="0": outside 1..64` + "\n"},
		{name: "bool", env: map[string]string{"LEASEGUARD_VAULT_REVOKE": "yes"},
			want: `leaseguard config: LEASEGUARD_VAULT_REVOKE="yes": not true or false` + "\n"},
		{name: "float", env: map[string]string{"LEASEGUARD_ISSUANCE_BURST_BASELINE_FACTOR": "ten"},
			want: `leaseguard config: LEASEGUARD_ISSUANCE_BURST_BASELINE_FACTOR="ten": not a number` + "\n"},
		{name: "rule mode", env: map[string]string{"LEASEGUARD_RULE_MODES": "lease-expired-not-revoked=maybe"},
			want: `leaseguard config: LEASEGUARD_RULE_MODES="lease-expired-not-revoked=maybe": rule lease-expired-not-revoked: mode "maybe" is not observe, approve or enforce` + "\n"},
		{name: "rule unknown", env: map[string]string{"LEASEGUARD_RULE_MODES": "ghost=enforce"},
			want: `leaseguard config: LEASEGUARD_RULE_MODES="ghost=enforce": unknown rule "ghost"` + "\n"},
		{name: "rule that only observes", env: map[string]string{"LEASEGUARD_RULE_MODES": "mass-revocation=enforce"},
			want: `leaseguard config: LEASEGUARD_RULE_MODES="mass-revocation=enforce": rule mass-revocation names no database user and can only observe` + "\n"},
		{name: "scope", env: map[string]string{"LEASEGUARD_ENFORCE_SCOPE": "db:staging,staging"},
			want: `leaseguard config: LEASEGUARD_ENFORCE_SCOPE="db:staging,staging": "staging": want *, db:<glob> or role:<glob>` + "\n"},
		{name: "target", env: map[string]string{"LEASEGUARD_TARGETS": "app"},
			want: `leaseguard config: LEASEGUARD_TARGETS="app": target "app=…": want name=url` + "\n"},
		{name: "target password redacted", env: map[string]string{"LEASEGUARD_TARGETS": "app=postgres://lg:t4rget-pw@db.example/app?sslmode=verify-full,app=postgres://lg@db.example/b?sslmode=verify-full"},
			want: `leaseguard config: LEASEGUARD_TARGETS="app=postgres://lg:xxxxx@db.example/app?sslmode=verify-full,app=postgres://lg@db.example/b?sslmode=verify-full": target "app" configured twice` + "\n"},
		{name: "mysql target", env: map[string]string{"LEASEGUARD_TARGETS": "maria=mysql://lg:t4rget-pw@db.example:3306/?tls=maybe"},
			want: `leaseguard config: LEASEGUARD_TARGETS="maria=mysql://lg:xxxxx@db.example:3306/?tls=maybe": target maria: mysql url: tls="maybe": want true, false, skip-verify or preferred` + "\n"},
		{name: "mysql target without user", env: map[string]string{"LEASEGUARD_TARGETS": "maria=mysql://db.example/"},
			want: `leaseguard config: LEASEGUARD_TARGETS="maria=mysql://db.example/": target maria: mysql url: no user name` + "\n"},
		{name: "targets without routes", env: map[string]string{"LEASEGUARD_TARGETS": "a=postgres://db.example/a?sslmode=verify-full,b=postgres://db.example/b?sslmode=verify-full"},
			want: `leaseguard config: LEASEGUARD_ROUTES="": several targets (a, b) but no routes: say which Vault mount or role goes to which target, e.g. database/*=a` + "\n"},
		{name: "pattern", env: map[string]string{"LEASEGUARD_MANAGED_ROLE_PATTERN": "(["},
			want: `leaseguard config: LEASEGUARD_MANAGED_ROLE_PATTERN="([": not a regular expression: missing closing ]` + "\n"},
		{name: "empty pattern", env: map[string]string{"LEASEGUARD_MANAGED_ROLE_PATTERN": ""},
			want: `leaseguard config: LEASEGUARD_MANAGED_ROLE_PATTERN="": must not be empty: it is what keeps leaseguard off roles Vault did not create` + "\n"},
		{name: "role TTLs", env: map[string]string{"LEASEGUARD_ROLE_TTLS": "readonly=1h,reporting=forever"},
			want: `leaseguard config: LEASEGUARD_ROLE_TTLS="readonly=1h,reporting=forever": role reporting: "forever" is not a positive duration` + "\n"},
		{name: "secret never echoed", env: map[string]string{"LEASEGUARD_COMMAND_SIGNING_KEY": "not-base64-s3cr3t!"},
			want: `leaseguard config: LEASEGUARD_COMMAND_SIGNING_KEY=<redacted>: signing key is not standard base64` + "\n"},
		{name: "everything at once, sorted", env: map[string]string{
			"LEASEGUARD_OBSERVE_INTERVAL": "banana", "LEASEGUARD_VAULT_REVOKE": "yes", "LEASEGUARD_ENFORCE_SCOPES": "*",
			"LEASEGUARD_INGEST_BATCH": "0", "LEASEGUARD_COMMAND_SIGNING_KEY": base64.StdEncoding.EncodeToString(seed[:7])},
			want: "leaseguard config: invalid configuration (5 errors):\n" +
				"LEASEGUARD_COMMAND_SIGNING_KEY=<redacted>: signing key is 7 bytes, want 32 (seed) or 64\n" +
				"LEASEGUARD_ENFORCE_SCOPES is not a leaseguard setting; did you mean LEASEGUARD_ENFORCE_SCOPE?\n" +
				`LEASEGUARD_INGEST_BATCH="0": outside 1..10000` + "\n" +
				`LEASEGUARD_OBSERVE_INTERVAL="banana": ` + notADuration + "\n" +
				`LEASEGUARD_VAULT_REVOKE="yes": not true or false` + "\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			onlyEnv(t, c.env)
			t.Setenv("LEASEGUARD_DATA_DIR", t.TempDir())
			args := c.args
			if args == nil {
				args = []string{"config"}
			}
			if args[0] == "run" {
				// Had run started, it would have run on a scratch schema.
				for k, v := range map[string]string{"LEASEGUARD_DATABASE_URL": pgtest.URL(), "LEASEGUARD_DATABASE_SCHEMA": pgtest.Schema(t, "lg_cfgrun"),
					"LEASEGUARD_ROLES": "relay", "LEASEGUARD_METRICS_ADDR": "127.0.0.1:0"} {
					t.Setenv(k, v)
				}
			}
			code, _, stderr := runMainWithin(t, 20*time.Second, args...)
			if code != exitConfig {
				t.Errorf("exit %d, want %d", code, exitConfig)
			}
			if stderr != c.want {
				t.Errorf("stderr:\n%s\nwant:\n%s", stderr, c.want)
			}
			if strings.Contains(stderr, "s3cr3t") || strings.Contains(stderr, "t4rget-pw") {
				t.Errorf("a secret reached the message: %s", stderr)
			}
		})
	}
}

// TestDatabaseURLIsRequired: every command that opens the state store
// refuses to start without LEASEGUARD_DATABASE_URL, instead of falling back
// to a local superuser URL; the others run without it.
func TestDatabaseURLIsRequired(t *testing.T) {
	cases := []struct {
		requiredBy string
		args       []string
	}{
		{"run", []string{"run"}},
		{"migrate", []string{"migrate"}},
		{"replay", []string{"replay", fixture}},
		{"revoke", []string{"revoke", "--db-user", "v-nobody", "--reason", "test", "--yes"}},
		{"approve", []string{"approve", "--list"}},
		{"reject", []string{"reject", "abc"}},
		{"scope", []string{"scope", "show"}},
		{"pilot report", []string{"pilot", "report"}},
		{"evidence verify", []string{"evidence", "verify"}},
	}
	// The error names the command as typed, subcommand included.
	path := map[string]string{"scope": "scope show", "pilot": "pilot report", "evidence": "evidence verify"}
	for _, c := range cases {
		args := c.args
		t.Run(args[0], func(t *testing.T) {
			// Were the old default still there, the command would run
			// against a scratch schema of the test server, not a real one.
			onlyEnv(t, map[string]string{
				"LEASEGUARD_DATABASE_SCHEMA": pgtest.Schema(t, "lg_nodburl"),
				"LEASEGUARD_DATA_DIR":        t.TempDir(),
				"LEASEGUARD_METRICS_ADDR":    "127.0.0.1:0",
				"LEASEGUARD_ROLES":           "relay",
			})
			code, _, stderr := runMainWithin(t, 15*time.Second, args...)
			name := args[0]
			if p, ok := path[name]; ok {
				name = p
			}
			want := "leaseguard " + name + ": " + strings.Replace(databaseURLRequired, "%s", c.requiredBy, 1) + "\n"
			if code != exitConfig || stderr != want {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and:\n%s", code, stderr, exitConfig, want)
			}
		})
	}
	t.Run("not needed", func(t *testing.T) {
		onlyEnv(t, map[string]string{"LEASEGUARD_DATA_DIR": t.TempDir()})
		for _, args := range [][]string{{"replay", "--dry-run", fixture}, {"config"}, {"keys"}} {
			if code, _, stderr := runMainWithin(t, 15*time.Second, args...); code != 0 {
				t.Errorf("%v: exit %d: %s", args, code, stderr)
			}
		}
	})
}

// configSettingNames lists the variables of docs/configuration.md's
// table: what an operator is told exists.
func configSettingNames(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "| variable | default | meaning |\n|---|---|---|\n")
	if !ok {
		t.Fatal("docs/configuration.md has no configuration table")
	}
	var names []string
	for _, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "| `LEASEGUARD_") {
			break
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(line, "| `"), "`")
		names = append(names, name)
	}
	if len(names) < 140 {
		t.Fatalf("docs/configuration.md's table lists %d variables; it had 142 when this test was written", len(names))
	}
	return names
}

type wantRow struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Source string `json:"source"`
}

// TestConfigPrintsEverySettingRedacted: `config` shows every setting of
// docs/configuration.md's table with its effective value and where it came from, plus
// the parsed rule modes, scope and targets, in a table and as JSON, and no
// secret in either.
func TestConfigPrintsEverySettingRedacted(t *testing.T) {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(100 + i)
	}
	signingKey := base64.StdEncoding.EncodeToString(seed)
	seed[0]++
	evidenceKey := base64.StdEncoding.EncodeToString(seed)
	secrets := []string{"s3cr3t-pw", "hvs.V4ultT0kenS3cret", signingKey, evidenceKey, "t4rget-pw", "n4ts-pw", "am-s3cret"}
	onlyEnv(t, map[string]string{
		"LEASEGUARD_DATABASE_URL":                   "postgres://lg:s3cr3t-pw@db.example:5432/state?sslmode=verify-full",
		"LEASEGUARD_TARGETS":                        "app=postgres://revoker:t4rget-pw@db.example:5432/app?sslmode=verify-full",
		"LEASEGUARD_NATS_URL":                       "tls://lg:n4ts-pw@nats.example:4222",
		"LEASEGUARD_ALERTMANAGER_URLS":              "https://am:am-s3cret@alertmanager.example:9093",
		"LEASEGUARD_VAULT_ADDR":                     "https://vault.example:8200",
		"LEASEGUARD_VAULT_TOKEN":                    "hvs.V4ultT0kenS3cret",
		"LEASEGUARD_COMMAND_SIGNING_KEY":            signingKey,
		"LEASEGUARD_EVIDENCE_SIGNING_KEY":           evidenceKey,
		"LEASEGUARD_OBSERVE_INTERVAL":               "7s",
		"LEASEGUARD_COMMAND_TTL":                    "90m",
		"LEASEGUARD_VAULT_REVOKE":                   "false",
		"LEASEGUARD_ISSUANCE_BURST_BASELINE_FACTOR": "2.5",
		"LEASEGUARD_LEASE_SUBJECT":                  "",
		"LEASEGUARD_RULE_MODES":                     "orphan-role=approve,ghost-session=observe",
		"LEASEGUARD_ENFORCE_SCOPE":                  "db:staging-*",
		"LEASEGUARD_ALLOW_INSECURE":                 "true",
	})
	want := map[string]wantRow{}
	for _, n := range configSettingNames(t) {
		want[n] = wantRow{Name: n, Source: "*"} // any value, any source
	}
	for _, r := range []wantRow{
		{"LEASEGUARD_DATABASE_URL", "postgres://lg:xxxxx@db.example:5432/state?sslmode=verify-full", "env"},
		{"LEASEGUARD_TARGETS", "app=postgres://revoker:xxxxx@db.example:5432/app?sslmode=verify-full", "env"},
		{"LEASEGUARD_NATS_URL", "tls://lg:xxxxx@nats.example:4222", "env"},
		{"LEASEGUARD_ALERTMANAGER_URLS", "https://am:xxxxx@alertmanager.example:9093", "env"},
		{"LEASEGUARD_VAULT_TOKEN", "<redacted>", "env"},
		{"LEASEGUARD_COMMAND_SIGNING_KEY", "<redacted>", "env"},
		{"LEASEGUARD_OBSERVE_INTERVAL", "7s", "env"},
		{"LEASEGUARD_COMMAND_TTL", "1h30m", "env"},
		{"LEASEGUARD_VAULT_REVOKE", "false", "env"},
		{"LEASEGUARD_VAULT_FORCE", "true", "default"},
		{"LEASEGUARD_ISSUANCE_BURST_BASELINE_FACTOR", "2.5", "env"},
		{"LEASEGUARD_ISSUANCE_BURST_THRESHOLD", "50", "default"},
		{"LEASEGUARD_LEASE_SUBJECT", "", "env"}, // set empty: off, not the default
		{"LEASEGUARD_AUDIT_SUBJECT", "vault.audit.>", "default"},
		{"LEASEGUARD_DATA_DIR", "/var/lib/leaseguard", "default"},
		{"LEASEGUARD_DETECT_INTERVAL", "1s", "default"},
		{"LEASEGUARD_DEFAULT_MAX_TTL", "768h", "default"},
		{"LEASEGUARD_ADMIN_ADDR", "", "unset"},
		{"LEASEGUARD_MANAGED_ROLE_PATTERN", "^v-", "default"},
		{"LEASEGUARD_ENFORCE_SCOPE", "db:staging-*", "env"},
		{"LEASEGUARD_RULE_MODES", "orphan-role=approve,ghost-session=observe", "env"},
		// Parsed: every rule's mode, the scope, the targets.
		{"rule mode lease-expired-not-revoked", "enforce", "default"},
		{"rule mode ghost-session", "observe", "env"},
		{"rule mode credential-reuse-after-revoke", "enforce", "default"},
		{"rule mode credential-reuse-unknown-lease", "observe", "default"},
		{"rule mode orphan-role", "approve", "env"},
		{"rule mode unaudited-issue", "observe", "default"},
		{"rule mode mass-revocation", "observe", "default"},
		{"rule mode credential-foreign-address", "observe", "default"},
		{"rule mode renewal-past-max-ttl", "observe", "default"},
		{"rule mode issuance-burst", "observe", "default"},
		{"rule mode permission-denied-burst", "observe", "default"},
		{"rule mode root-token-use", "observe", "default"},
		{"rule mode audit-device-disabled", "observe", "default"},
		{"rule mode audit-silence", "observe", "default"},
		{"enforce scope", "db:staging-*", "env"},
		{"target app", "postgres://revoker:xxxxx@db.example:5432/app?sslmode=verify-full", "env"},
	} {
		want[r.Name] = r
	}

	code, table, stderr := runMain(t, "", "config")
	if code != 0 {
		t.Fatalf("config: exit %d: %s", code, stderr)
	}
	for _, flag := range []string{"--output", "-o"} {
		code, out, stderr := runMain(t, "", "config", flag, "json")
		if code != 0 {
			t.Fatalf("config %s json: exit %d: %s", flag, code, stderr)
		}
		var rows []wantRow
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("config %s json is not a JSON array of rows: %v\n%s", flag, err, out)
		}
		got := map[string]wantRow{}
		for _, r := range rows {
			if _, dup := got[r.Name]; dup {
				t.Errorf("json: %s listed twice", r.Name)
			}
			got[r.Name] = r
		}
		for name, w := range want {
			g, ok := got[name]
			switch {
			case !ok:
				t.Errorf("json: %s missing", name)
			case w.Source == "*":
				if g.Source != "env" && g.Source != "default" && g.Source != "unset" {
					t.Errorf("json: %s has source %q", name, g.Source)
				}
			case g != w:
				t.Errorf("json: %+v, want %+v", g, w)
			}
		}
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("config %s json prints the secret %q", flag, s)
			}
		}
	}

	lines := strings.Split(table, "\n")
	for name, w := range want {
		var line string
		for _, l := range lines {
			if strings.HasPrefix(l, name+"  ") {
				line = l
			}
		}
		if line == "" {
			t.Errorf("table: no row for %s", name)
			continue
		}
		if w.Source == "*" {
			continue
		}
		fields := strings.Fields(line)
		value := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, name), w.Source))
		if w.Value == "" {
			w.Value = `""`
		}
		if fields[len(fields)-1] != w.Source || value != w.Value {
			t.Errorf("table row %q, want value %q and source %s", line, w.Value, w.Source)
		}
	}
	for _, s := range secrets {
		if strings.Contains(table, s) {
			t.Errorf("config table prints the secret %q", s)
		}
	}
}

// TestConfigWithoutEnvironment: with nothing set, config works, and shows
// the state store as unset (there is no default database any more).
func TestConfigWithoutEnvironment(t *testing.T) {
	onlyEnv(t, nil)
	code, out, stderr := runMain(t, "", "config", "--output", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rows []wantRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, r := range rows {
		if r.Name == "LEASEGUARD_DATABASE_URL" {
			if r != (wantRow{Name: "LEASEGUARD_DATABASE_URL", Value: "", Source: "unset"}) {
				t.Errorf("%+v, want it unset", r)
			}
			return
		}
	}
	t.Errorf("no LEASEGUARD_DATABASE_URL row: %s", out)
}

// TestRedactURL: passwords in URLs and connection strings are hidden, also
// in lists of URLs and when they hold '@', '/' or ','.
func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://lg:p@ss/w,rd@db.example:5432/state":  "postgres://lg:xxxxx@db.example:5432/state",
		"a=postgres://db:5432/a,b=postgres://u:pw@db2/b": "a=postgres://db:5432/a,b=postgres://u:xxxxx@db2/b",
		"nats://nats-1:4222,nats://u:p@nats-2:4222":      "nats://nats-1:4222,nats://u:xxxxx@nats-2:4222",
		// NATS reads a user with no password as a token.
		"nats://s3cretToken@nats-1:4222,tls://t0k@nats-2:4222": "nats://xxxxx@nats-1:4222,tls://xxxxx@nats-2:4222",
		"host=db user=lg password=s3cret dbname=state":         "host=db user=lg password=xxxxx dbname=state",
		"postgres://lg@db/state?sslmode=verify-full":           "postgres://lg@db/state?sslmode=verify-full",
		"https://alertmanager.example:9093":                    "https://alertmanager.example:9093",
		"":                                                     "",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// problemAbout reports whether a line of msg is a problem with the setting
// name: it starts with NAME="value": or NAME=<redacted>:.
func problemAbout(msg, name string) bool {
	for _, line := range strings.Split(msg, "\n") {
		if strings.HasPrefix(line, name+"=") {
			return true
		}
	}
	return false
}
