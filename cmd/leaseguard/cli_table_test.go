package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// cliCommands is every command of the operator CLI, written out here (not
// read from the command tree under test): its path, the usage line its help
// must show, and its flags.
var cliCommands = []struct {
	path  []string
	usage string
	flags []string
}{
	{[]string{"run"}, "leaseguard run [flags]", nil},
	{[]string{"migrate"}, "leaseguard migrate [flags]", nil},
	{[]string{"replay"}, "leaseguard replay FILE... [flags]", []string{"--dry-run", "--batch", "-o, --output"}},
	{[]string{"config"}, "leaseguard config [flags]", []string{"--markdown", "-o, --output"}},
	{[]string{"version"}, "leaseguard version [flags]", []string{"-o, --output"}},
	{[]string{"evidence", "verify"}, "leaseguard evidence verify [--file FILE|-] [flags]", []string{"--file", "--evidence-key", "--require-checkpoint", "--checkpoint-interval", "-o, --output"}},
	{[]string{"evidence", "export"}, "leaseguard evidence export [--file FILE|-] [--class --out DIR] [flags]",
		[]string{"--file", "--since", "--until", "--from-seq", "--class", "--out", "--format", "--no-verify"}},
	{[]string{"demo"}, "leaseguard demo [flags]", []string{"--timeout"}},
	{[]string{"revoke"}, "leaseguard revoke (--db-user NAME | --lease-id ID | --prefix P | --entity-id ID | --token-accessor A | --all-managed --database NAME) --reason TEXT [flags]",
		[]string{"--db-user", "--lease-id", "--prefix", "--entity-id", "--token-accessor", "--all-managed", "--database", "--reason",
			"--dry-run", "--emergency", "--request-id", "--actor", "--yes", "-o, --output"}},
	{[]string{"approve"}, "leaseguard approve (ID | --list) [flags]", []string{"--actor", "--as", "--comment", "--list", "--state", "--resume", "-o, --output"}},
	{[]string{"reject"}, "leaseguard reject (ID | --list) [flags]", []string{"--actor", "--as", "--comment", "--list", "--state", "-o, --output"}},
	{[]string{"keys"}, "leaseguard keys [flags]", []string{"--generate", "-o, --output"}},
	{[]string{"scope"}, "leaseguard scope [flags]", []string{"--history", "-o, --output"}},
	{[]string{"scope", "show"}, "leaseguard scope show [flags]", []string{"--history", "-o, --output"}},
	{[]string{"scope", "expand"}, "leaseguard scope expand (--add PATTERNS | --mode RULE=MODE,...) --reason TEXT [flags]",
		[]string{"--add", "--mode", "--reason", "--actor", "--as", "--expect-version", "-o, --output"}},
	{[]string{"scope", "rollback"}, "leaseguard scope rollback [--to VERSION|config] --reason TEXT [flags]",
		[]string{"--to", "--reason", "--actor", "--as", "--expect-version", "-o, --output"}},
	{[]string{"pilot", "report"}, "leaseguard pilot report [flags]", []string{"--since", "--until", "-o, --output"}},
	{[]string{"completion", "bash"}, "leaseguard completion bash", []string{"--no-descriptions"}},
	{[]string{"completion", "zsh"}, "leaseguard completion zsh [flags]", []string{"--no-descriptions"}},
	{[]string{"completion", "fish"}, "leaseguard completion fish [flags]", []string{"--no-descriptions"}},
	{[]string{"completion", "powershell"}, "leaseguard completion powershell [flags]", []string{"--no-descriptions"}},
}

var longFlag = regexp.MustCompile(`--[a-z][a-z-]*`)

// TestHelpOfEveryCommand: `help CMD` and `CMD --help` print that command's
// own usage line and every flag it has, on stdout, exit 0; and every flag
// its usage line names is one of them.
func TestHelpOfEveryCommand(t *testing.T) {
	for _, c := range cliCommands {
		name := strings.Join(c.path, " ")
		t.Run(name, func(t *testing.T) {
			for _, args := range [][]string{append([]string{"help"}, c.path...), append(append([]string{}, c.path...), "--help")} {
				code, out, stderr := runMain(t, "", args...)
				if code != exitOK {
					t.Errorf("%q: exit %d: %s", args, code, stderr)
				}
				if !strings.Contains(out, "Usage:\n  "+c.usage+"\n") {
					t.Errorf("%q does not print the usage line %q:\n%s\nstderr: %s", args, c.usage, out, stderr)
				}
				for _, f := range append([]string{"-h, --help"}, c.flags...) {
					if !strings.Contains(out, "  "+f+" ") {
						t.Errorf("%q does not list flag %s:\n%s", args, f, out)
					}
				}
			}
			for _, f := range longFlag.FindAllString(c.usage, -1) {
				if !containsFlag(c.flags, f) {
					t.Errorf("usage line names %s, which is not a flag of %s", f, name)
				}
			}
		})
	}
}

func containsFlag(flags []string, f string) bool {
	for _, g := range flags {
		if g == f || strings.HasSuffix(g, ", "+f) {
			return true
		}
	}
	return false
}

// TestRootUsage: no arguments prints the usage (every command) on stderr and
// exits 2; --help and help print it on stdout and exit 0.
func TestRootUsage(t *testing.T) {
	names := []string{"run", "migrate", "replay", "config", "version", "evidence", "demo", "revoke", "approve", "reject",
		"keys", "scope", "pilot", "completion", "help"}
	check := func(what, text string) {
		for _, n := range names {
			if !regexp.MustCompile(`(?m)^  ` + n + ` `).MatchString(text) {
				t.Errorf("%s does not list %s:\n%s", what, n, text)
			}
		}
	}
	code, out, stderr := runMain(t, "")
	if code != exitUsage || out != "" {
		t.Errorf("no arguments: exit %d, stdout %q", code, out)
	}
	check("no arguments", stderr)
	for _, args := range [][]string{{"--help"}, {"help"}, {"-h"}} {
		code, out, stderr := runMain(t, "", args...)
		if code != exitOK {
			t.Errorf("%q: exit %d: %s", args, code, stderr)
		}
		check(strings.Join(args, " "), out)
	}
}

// setBuild sets the variables the Makefile stamps, for one test.
func setBuild(t *testing.T, v, c, d string) {
	t.Helper()
	ov, oc, od := version, commit, buildDate
	version, commit, buildDate = v, c, d
	t.Cleanup(func() { version, commit, buildDate = ov, oc, od })
}

func TestVersion(t *testing.T) {
	setBuild(t, "1.2.3-test", "abc1234", "2025-01-02T03:04:05Z")
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, out, stderr := runMain(t, "", args...)
		if code != exitOK {
			t.Fatalf("%q: exit %d: %s", args, code, stderr)
		}
		for _, want := range []string{"leaseguard 1.2.3-test\n", "commit abc1234", "built 2025-01-02T03:04:05Z", runtime.Version()} {
			if !strings.Contains(out, want) {
				t.Errorf("%q prints %q, without %q", args, out, want)
			}
		}
	}
	code, out, stderr := runMain(t, "", "version", "-o", "json")
	if code != exitOK {
		t.Fatalf("version -o json: exit %d: %s", code, stderr)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("version -o json is not JSON: %v: %s", err, out)
	}
	want := map[string]string{"version": "1.2.3-test", "commit": "abc1234", "build_date": "2025-01-02T03:04:05Z", "go_version": runtime.Version()}
	if len(got) != len(want) {
		t.Errorf("version -o json = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("version -o json %s = %q, want %q", k, got[k], v)
		}
	}
}

// TestUnknownFlagAndCommand: exit 2 and a message naming what is wrong, word
// for word, and nothing on stdout.
func TestUnknownFlagAndCommand(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"nope"}, "leaseguard: unknown command \"nope\"\nRun 'leaseguard --help' for usage.\n"},
		{[]string{"revok"}, "leaseguard: unknown command \"revok\"; did you mean \"revoke\"?\nRun 'leaseguard --help' for usage.\n"},
		{[]string{"--nope"}, "leaseguard: unknown flag: --nope\nRun 'leaseguard --help' for usage.\n"},
		{[]string{"replay", "x.log", "--nope"}, "leaseguard replay: unknown flag: --nope\nRun 'leaseguard replay --help' for usage.\n"},
		{[]string{"revoke", "-x"}, "leaseguard revoke: unknown shorthand flag: 'x' in -x\nRun 'leaseguard revoke --help' for usage.\n"},
		{[]string{"replay", "x.log", "-dry-run"}, "leaseguard replay: unknown shorthand flag: 'd' in -dry-run (did you mean --dry-run?)\nRun 'leaseguard replay --help' for usage.\n"},
		{[]string{"revoke", "-actor=alice"}, "leaseguard revoke: unknown shorthand flag: 'a' in -actor=alice (did you mean --actor=alice?)\nRun 'leaseguard revoke --help' for usage.\n"},
		{[]string{"scope", "nope"}, "leaseguard scope: unknown command \"nope\": want show, expand or rollback\nRun 'leaseguard scope --help' for usage.\n"},
		{[]string{"evidence", "check"}, "leaseguard evidence: unknown command \"check\": want verify or export\nRun 'leaseguard evidence --help' for usage.\n"},
		{[]string{"pilot"}, "leaseguard pilot: missing command: want report\nRun 'leaseguard pilot --help' for usage.\n"},
		{[]string{"help", "nope"}, "leaseguard help: unknown command \"nope\"\nRun 'leaseguard --help' for usage.\n"},
		{[]string{"version", "-o", "yaml"}, "leaseguard version: invalid argument \"yaml\" for \"-o, --output\" flag: want table or json\nRun 'leaseguard version --help' for usage.\n"},
		{[]string{"migrate", "extra"}, "leaseguard migrate: unexpected argument \"extra\"\nRun 'leaseguard migrate --help' for usage.\n"},
		{[]string{"replay"}, "leaseguard replay: needs at least one FILE (- for stdin)\nRun 'leaseguard replay --help' for usage.\n"},
		{[]string{"evidence", "verify", "--file"}, "leaseguard evidence verify: flag needs an argument: --file\nRun 'leaseguard evidence verify --help' for usage.\n"},
	} {
		code, out, stderr := runMain(t, "", tt.args...)
		if code != exitUsage || out != "" || stderr != tt.want {
			t.Errorf("%q: exit %d, stdout %q, stderr\n%q\nwant exit 2 and\n%q", tt.args, code, out, stderr, tt.want)
		}
	}
}

// chainFile writes the evidence examples (a chain of three) as a file of
// events, one per line.
func chainFile(t *testing.T) string {
	t.Helper()
	var b bytes.Buffer
	for _, name := range []string{"evidence-finding.json", "evidence-revocation.json", "evidence-policy.json"} {
		raw, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Compact(&b, raw); err != nil {
			t.Fatal(err)
		}
		b.WriteByte('\n')
	}
	path := filepath.Join(t.TempDir(), "chain.jsonl")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFlagsBeforeAndAfterArguments: a flag before an argument (a file, an
// id, a subcommand) means what it means after it.
func TestFlagsBeforeAndAfterArguments(t *testing.T) {
	t.Setenv("LEASEGUARD_DATABASE_URL", pgtest.URL())
	t.Setenv("LEASEGUARD_DATABASE_SCHEMA", pgtest.Schema(t, "lg_cliorder"))
	t.Setenv("LEASEGUARD_TARGETS", "")
	t.Setenv("LEASEGUARD_DATA_DIR", t.TempDir())
	chain := chainFile(t)
	const until = "--until=2025-01-01T00:00:00Z"
	for _, tt := range []struct {
		name          string
		before, after []string
		code          int
	}{
		{"replay --dry-run", []string{"replay", "--dry-run", "-o", "json", fixture}, []string{"replay", fixture, "--dry-run", "-o", "json"}, exitOK},
		{"replay table", []string{"replay", "--batch", "7", "--dry-run", fixture}, []string{"replay", fixture, "--batch", "7", "--dry-run"}, exitOK},
		{"replay stdin", []string{"replay", "--dry-run", "-"}, []string{"replay", "-", "--dry-run"}, exitOK},
		{"evidence verify", []string{"evidence", "-o", "json", "--file", chain, "verify"}, []string{"evidence", "verify", "--file", chain, "-o", "json"}, exitOK},
		{"approve", []string{"approve", "--comment", "c", "-o", "json", "nosuchid"}, []string{"approve", "nosuchid", "--comment", "c", "-o", "json"}, exitFailure},
		{"reject", []string{"reject", "--as", "bob", "nosuchid"}, []string{"reject", "nosuchid", "--as", "bob"}, exitFailure},
		{"approve --list", []string{"approve", "--state", "expired", "--list"}, []string{"approve", "--list", "--state", "expired"}, exitOK},
		{"scope show", []string{"scope", "--history", "1", "-o", "json", "show"}, []string{"scope", "show", "--history", "1", "-o", "json"}, exitOK},
		{"scope rollback", []string{"scope", "--to", "99", "--reason", "r", "rollback"}, []string{"scope", "rollback", "--to", "99", "--reason", "r"}, exitUsage},
		{"pilot report", []string{"pilot", "--since", "1h", until, "-o", "json", "report"}, []string{"pilot", "report", "--since", "1h", until, "-o", "json"}, exitOK},
		{"revoke --dry-run", []string{"revoke", "--dry-run", "--db-user", "v-cliorder-nobody", "--reason", "r", "--actor", "a"},
			[]string{"revoke", "--db-user", "v-cliorder-nobody", "--reason", "r", "--actor", "a", "--dry-run"}, exitOK},
	} {
		fix, err := os.ReadFile(fixture)
		if err != nil {
			t.Fatal(err)
		}
		code1, out1, err1 := runMain(t, string(fix), tt.before...)
		code2, out2, err2 := runMain(t, string(fix), tt.after...)
		if code1 != tt.code || code2 != tt.code {
			t.Errorf("%s: exit %d before, %d after, want %d\n%s\n%s", tt.name, code1, code2, tt.code, err1, err2)
		}
		if out1 != out2 || err1 != err2 {
			t.Errorf("%s: flags before and after differ:\nbefore: %s%s\nafter:  %s%s", tt.name, out1, err1, out2, err2)
		}
	}
}

// TestReplayDryRunTouchesNoDatabase: with --dry-run after the file, nothing
// is opened: the configured schema is not created.
func TestReplayDryRunTouchesNoDatabase(t *testing.T) {
	schema := "lg_dryrun_" + pgtest.Suffix()
	t.Setenv("LEASEGUARD_DATABASE_URL", pgtest.URL())
	t.Setenv("LEASEGUARD_DATABASE_SCHEMA", schema)
	pool := pgtest.Pool(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	code, out, stderr := runMain(t, "", "replay", fixture, "--dry-run")
	if code != exitOK {
		t.Errorf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "dry run") {
		t.Errorf("the summary does not say it was a dry run: %s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, schema).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("replay --dry-run created schema %s", schema)
	}
}

// TestBuildInfo: run exposes leaseguard_build_info with the stamped values,
// and its evidence names the same version in metadata.product.version.
func TestBuildInfo(t *testing.T) {
	setBuild(t, "1.2.3-test", "abc1234", "2025-01-02T03:04:05Z")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	schema := pgtest.Schema(t, "lg_buildinfo")
	t.Setenv("LEASEGUARD_DATABASE_URL", pgtest.URL())
	t.Setenv("LEASEGUARD_DATABASE_SCHEMA", schema)
	t.Setenv("LEASEGUARD_DATA_DIR", t.TempDir())
	t.Setenv("LEASEGUARD_NATS_URL", "")
	t.Setenv("LEASEGUARD_TARGETS", "")
	t.Setenv("LEASEGUARD_METRICS_ADDR", "127.0.0.1:0")
	t.Setenv("LEASEGUARD_ROLES", "ingest,relay")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	p, err := startPipeline(ctx, cfg, newLogger(&syncBuffer{}, "info", "json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	want := `leaseguard_build_info{build_date="2025-01-02T03:04:05Z",commit="abc1234",go_version="` + runtime.Version() + `",version="1.2.3-test"} 1`
	if metrics := httpGet(t, "http://"+p.opsSrv.Addr()+"/metrics"); !strings.Contains(metrics, want+"\n") {
		t.Errorf("/metrics has no %s", want)
	}
	// The first start records the configured policy as version 1: evidence.
	var versions []string
	rows, err := pgtest.Pool(t).Query(ctx, `SELECT coalesce(convert_from(event, 'UTF8')::jsonb #>> '{data,metadata,product,version}', '')
		FROM `+pgx.Identifier{schema, "evidence_outbox"}.Sanitize())
	if err != nil {
		t.Fatal(err)
	}
	if versions, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if len(versions) == 0 {
		t.Fatal("no evidence in the outbox")
	}
	for _, v := range versions {
		if v != "1.2.3-test" {
			t.Errorf("evidence product.version %q, want 1.2.3-test", v)
		}
	}
}

// TestOutputJSON: every command that reads prints JSON with -o json (one
// document, or one per line), and refuses another format as a usage error
// naming the allowed values.
func TestOutputJSON(t *testing.T) {
	t.Setenv("LEASEGUARD_DATABASE_URL", pgtest.URL())
	t.Setenv("LEASEGUARD_DATABASE_SCHEMA", pgtest.Schema(t, "lg_clijson"))
	t.Setenv("LEASEGUARD_TARGETS", "")
	t.Setenv("LEASEGUARD_DATA_DIR", t.TempDir())
	chain := chainFile(t)
	for _, tt := range []struct {
		args  []string
		lines int // JSON documents expected on stdout
	}{
		{[]string{"version"}, 1},
		{[]string{"config"}, 1},
		{[]string{"keys"}, 1},
		{[]string{"evidence", "verify", "--file", chain}, 1},
		{[]string{"replay", "--dry-run", fixture}, 1},
		{[]string{"scope", "show"}, 1},
		{[]string{"scope"}, 1},
		{[]string{"pilot", "report", "--since", "1h"}, 1},
		{[]string{"approve", "--list"}, 0},
		{[]string{"reject", "--list", "--state", "expired"}, 0},
		{[]string{"revoke", "--db-user", "v-clijson-nobody", "--reason", "r", "--dry-run"}, 0},
	} {
		code, out, stderr := runMain(t, "", append(tt.args, "-o", "json")...)
		if code != exitOK {
			t.Errorf("%q -o json: exit %d: %s", tt.args, code, stderr)
			continue
		}
		dec := json.NewDecoder(strings.NewReader(out))
		n := 0
		for dec.More() {
			var v any
			if err := dec.Decode(&v); err != nil {
				t.Errorf("%q -o json: not JSON: %v\n%s", tt.args, err, out)
				break
			}
			n++
		}
		if n != tt.lines {
			t.Errorf("%q -o json: %d documents, want %d:\n%s", tt.args, n, tt.lines, out)
		}
		code, _, stderr = runMain(t, "", append(tt.args, "--output", "yaml")...)
		if code != exitUsage || !strings.Contains(stderr, `invalid argument "yaml" for "-o, --output" flag: want table or json`) {
			t.Errorf("%q --output yaml: exit %d: %s", tt.args, code, stderr)
		}
	}
}

// TestVersionFallsBackToBuildInfo: without the Makefile's values, the
// version comes from Go's build information (go build, go install), never
// a bare placeholder while that knows better.
func TestVersionFallsBackToBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Version: "v1.5.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"},
	}}
	got := resolveBuild(buildInfo{}, bi)
	want := buildInfo{Version: "v1.5.0", Commit: "0123456", BuildDate: "2026-01-02T03:04:05Z", GoVersion: runtime.Version()}
	if got != want {
		t.Errorf("from build info: %+v, want %+v", got, want)
	}
	stamped := buildInfo{Version: "v2.0.0", Commit: "fedcba9", BuildDate: "2026-05-06T07:08:09Z"}
	if got := resolveBuild(stamped, bi); got.Version != "v2.0.0" || got.Commit != "fedcba9" || got.BuildDate != "2026-05-06T07:08:09Z" {
		t.Errorf("stamped values lost: %+v", got)
	}
	got = resolveBuild(buildInfo{}, &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}})
	if got.Version != "unknown" || got.Commit != "unknown" || got.BuildDate != "unknown" {
		t.Errorf("nothing known: %+v", got)
	}
}
