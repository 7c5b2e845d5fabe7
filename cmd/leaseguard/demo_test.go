package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// The demo's MariaDB part on the local MariaDB: two users made as Vault's
// mysql plugin makes them, expired in the ledger, revoked on an operator's
// word (the demo has no Vault to corroborate), every host dropped, the held
// session killed, their evidence in a chain that verifies. Without a
// MariaDB the demo says the part was skipped, and why, and still passes.
func TestDemoMariaDBPart(t *testing.T) {
	t.Setenv("LEASEGUARD_DATABASE_URL", pgtest.URL())
	for _, tc := range []struct {
		name, url string
		want      []string
	}{
		{"played", demoMariaDBURL, []string{
			`(?m)^F reporting@mariadb +issued +expired +gone +dropped \(1 session cut\) +ok$`,
			`(?m)^G reporting@mariadb +issued +expired +gone +dropped +ok$`,
			`revocation dropped for maria/v-approle-reporting-\S+, 1 live session\(s\) terminated`,
			`finding +lease-expired-not-revoked on maria/v-approle-reporting-\S+: unconfirmed`,
			`revoker +F: dropped on the operator's word \(corroboration "operator"\), 1 session\(s\) killed; ` +
				`statements: ALTER USER '(v-approle-reporting-\w{12})'@'%' ACCOUNT LOCK; .*KILL CONNECTION \d+; .*` +
				`DROP USER IF EXISTS '\w[^']*'@'%', '[^']*'@'localhost'`,
			`the client session F held as \S+ was ended by the server`,
			`evidence chain: \d+ events in the outbox verify`,
		}},
		{"skipped", "mysql://root@127.0.0.1:1/", []string{
			`MariaDB part SKIPPED: no MariaDB answers \(.*connection refused\)`,
			`MariaDB part skipped \(see the top\)`,
			`evidence chain: \d+ events in the outbox verify`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := runMainWithin(t, 90*time.Second, "demo", "--mariadb", tc.url)
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
			}
			for _, w := range tc.want {
				if !regexp.MustCompile(w).MatchString(out) {
					t.Errorf("output lacks %s\n%s", w, out)
				}
			}
			if tc.name == "skipped" && strings.Contains(out, "maria/") {
				t.Errorf("skipped, yet MariaDB users in the output:\n%s", out)
			}
		})
	}
}

// The MariaDB part's users follow the mysql plugin's template: within 32
// characters, v-<display 10>-<role 10>-<random>.
func TestDemoMariaDBUsernames(t *testing.T) {
	m, err := openDemoMaria(context.Background(), demoMariaDBURL)
	if err != nil {
		t.Fatalf("local MariaDB: %v", err)
	}
	defer m.db.Close()
	d := &demo{maria: m, sfx: "t"}
	lines, err := d.mariaWorkload(context.Background())
	defer m.cleanup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 4 {
		t.Errorf("%d audit entries, want a request and a response per credential", len(lines))
	}
	for _, l := range m.leases {
		if n := len(l.cred.Username); n != 32 || !regexp.MustCompile(`^v-approle-reporting-\w{12}$`).MatchString(l.cred.Username) {
			t.Errorf("user %q (%d characters), want the mysql plugin's template cut to 32", l.cred.Username, n)
		}
		if hosts, _ := m.left(context.Background(), l.cred.Username); hosts != 2 {
			t.Errorf("%s has %d hosts, want %% and localhost", l.cred.Username, hosts)
		}
	}
}
