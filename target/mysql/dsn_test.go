package mysql

import (
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	t.Parallel()
	cfg, err := ParseURL("mysql://lg:p%40ss%3Aw0rd@db.example:3307/app?tls=skip-verify")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.User != "lg" || cfg.Passwd != "p@ss:w0rd" || cfg.Net != "tcp" || cfg.Addr != "db.example:3307" ||
		cfg.DBName != "app" || cfg.TLSConfig != "skip-verify" {
		t.Errorf("config %+v", cfg)
	}
	if !cfg.InterpolateParams || cfg.Timeout != 5*time.Second || cfg.ReadTimeout != 30*time.Second || cfg.WriteTimeout != 30*time.Second {
		t.Errorf("interpolate %v, timeouts %v %v %v; want true, 5s, 30s, 30s", cfg.InterpolateParams, cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout)
	}
	def, err := ParseURL("mysql://root@127.0.0.1/")
	if err != nil || def.Addr != "127.0.0.1:3306" || def.DBName != "" || def.Passwd != "" {
		t.Errorf("default port: %+v, %v", def, err)
	}
	v6, err := ParseURL("mysql://u:p@[::1]/")
	if err != nil || v6.Addr != "[::1]:3306" {
		t.Errorf("ipv6: %+v, %v", v6, err)
	}
	for _, bad := range []string{
		"mysql://db:3306/",                        // no user
		"mysql:///",                               // no host
		"postgres://u@db/",                        // another scheme
		"mysql://u:secret@db/app/extra",           // a path beyond the database
		"mysql://u:secret@db/?parseTime=false",    // only tls is accepted
		"mysql://u:secret@db/?tls=maybe",          // not a tls mode
		"mysql://u:secret@db/?tls=true&tls=false", // twice
	} {
		_, err := ParseURL(bad)
		if err == nil {
			t.Errorf("ParseURL(%q) accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseURL(%q) error repeats the password: %v", bad, err)
		}
	}
}

func TestSuperGrant(t *testing.T) {
	t.Parallel()
	cases := map[string]bool{
		"GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION": true,
		"GRANT SELECT, SUPER ON *.* TO `v-x`@`%`":                             true,
		"GRANT SYSTEM_USER ON *.* TO `v-x`@`%`":                               true,
		"GRANT USAGE ON *.* TO `v-x`@`%` IDENTIFIED BY PASSWORD '*AB'":        false,
		"GRANT ALL PRIVILEGES ON `app`.* TO `v-x`@`%`":                        false,
		"GRANT SELECT, INSERT ON *.* TO `v-super`@`%`":                        false,
		"GRANT `role_all` TO `v-x`@`%`":                                       false,
		"GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION":       false,
	}
	for line, want := range cases {
		if got := superGrant(line); got != want {
			t.Errorf("superGrant(%q) = %v, want %v", line, got, want)
		}
	}
}

func TestHostOnly(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"10.0.0.5:51234": "10.0.0.5", "[::1]:4000": "::1", "localhost": "localhost", "db.example:3306": "db.example"} {
		if got := hostOnly(in); got != want {
			t.Errorf("hostOnly(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSessionsWaitForLocksBriefly: a statement of the revoker that waits
// on a metadata lock (ALTER or DROP USER behind another session) ends on
// the server after lockWaitTimeout, instead of MySQL's default of a year
// after the client has given up on it.
func TestSessionsWaitForLocksBriefly(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	var got int
	if err := r.root.QueryRowContext(r.ctx(), `SELECT @@SESSION.lock_wait_timeout`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != 10 {
		t.Errorf("session lock_wait_timeout = %d s, want 10", got)
	}
}
