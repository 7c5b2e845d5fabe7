package main

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leaseguard/leaseguard/internal/pgtest"
)

// TestAuditSocketSettings: the allow-list and the unix socket's mode are
// parsed, and a typo in either is refused at start (exit 3) naming its
// variable.
func TestAuditSocketSettings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		setting string // "" = accepted
	}{
		{"default allow-list", map[string]string{"LEASEGUARD_AUDIT_SOCKET_ADDR": "127.0.0.1:9090"}, ""},
		{"allow-list with a bare address", map[string]string{"LEASEGUARD_AUDIT_SOCKET_ADDR": ":9090", "LEASEGUARD_AUDIT_SOCKET_ALLOWED_CIDRS": "10.0.0.0/8, 192.168.1.7"}, ""},
		{"allow-list prefix too long", map[string]string{"LEASEGUARD_AUDIT_SOCKET_ADDR": ":9090", "LEASEGUARD_AUDIT_SOCKET_ALLOWED_CIDRS": "10.0.0.0/33"}, "LEASEGUARD_AUDIT_SOCKET_ALLOWED_CIDRS"},
		{"allow-list not an address", map[string]string{"LEASEGUARD_AUDIT_SOCKET_ADDR": ":9090", "LEASEGUARD_AUDIT_SOCKET_ALLOWED_CIDRS": "127.0.0.0/8,vault.example"}, "LEASEGUARD_AUDIT_SOCKET_ALLOWED_CIDRS"},
		{"allow-list empty", map[string]string{"LEASEGUARD_AUDIT_SOCKET_ADDR": ":9090", "LEASEGUARD_AUDIT_SOCKET_ALLOWED_CIDRS": " , "}, "LEASEGUARD_AUDIT_SOCKET_ALLOWED_CIDRS"},
		{"allow-list invalid while the socket is off", map[string]string{"LEASEGUARD_AUDIT_SOCKET_ALLOWED_CIDRS": "10.0.0.0/99"}, "LEASEGUARD_AUDIT_SOCKET_ALLOWED_CIDRS"},
		{"unix socket", map[string]string{"LEASEGUARD_AUDIT_SOCKET_ADDR": "unix:/run/leaseguard/audit.sock"}, ""},
		{"unix socket relative path", map[string]string{"LEASEGUARD_AUDIT_SOCKET_ADDR": "unix:audit.sock"}, "LEASEGUARD_AUDIT_SOCKET_ADDR"},
		{"mode not octal", map[string]string{"LEASEGUARD_AUDIT_SOCKET_ADDR": "unix:/run/leaseguard/audit.sock", "LEASEGUARD_AUDIT_SOCKET_MODE": "0698"}, "LEASEGUARD_AUDIT_SOCKET_MODE"},
		{"mode symbolic", map[string]string{"LEASEGUARD_AUDIT_SOCKET_ADDR": "unix:/run/leaseguard/audit.sock", "LEASEGUARD_AUDIT_SOCKET_MODE": "rw-rw----"}, "LEASEGUARD_AUDIT_SOCKET_MODE"},
		{"mode with setuid", map[string]string{"LEASEGUARD_AUDIT_SOCKET_ADDR": "unix:/run/leaseguard/audit.sock", "LEASEGUARD_AUDIT_SOCKET_MODE": "04660"}, "LEASEGUARD_AUDIT_SOCKET_MODE"},
		{"mode without any write", map[string]string{"LEASEGUARD_AUDIT_SOCKET_ADDR": "unix:/run/leaseguard/audit.sock", "LEASEGUARD_AUDIT_SOCKET_MODE": "0444"}, "LEASEGUARD_AUDIT_SOCKET_MODE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadWith(t, tc.env)
			if tc.setting == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ce configError
			if !errors.As(err, &ce) || !problemAbout(err.Error(), tc.setting) {
				t.Fatalf("error %v, want a configuration error naming %s", err, tc.setting)
			}
			code, _, stderr := runMain(t, "", "config")
			if code != exitConfig || !strings.Contains(stderr, tc.setting) {
				t.Errorf("exit %d, want %d naming %s: %s", code, exitConfig, tc.setting, stderr)
			}
		})
	}
}

func TestAuditSocketConfigFromSettings(t *testing.T) {
	cfg, err := loadWith(t, map[string]string{"LEASEGUARD_AUDIT_SOCKET_ADDR": "0.0.0.0:9090",
		"LEASEGUARD_AUDIT_SOCKET_ALLOWED_CIDRS": "10.1.0.0/16,::ffff:192.168.0.0/112,fd00::1", "LEASEGUARD_AUDIT_SOCKET_MODE": "0640"})
	if err != nil {
		t.Fatal(err)
	}
	sc := cfg.auditSocketConfig()
	var got []string
	for _, p := range sc.AllowedNets {
		got = append(got, p.String())
	}
	if strings.Join(got, ",") != "10.1.0.0/16,192.168.0.0/16,fd00::1/128" {
		t.Fatalf("allowed networks %v", got)
	}
	if sc.Mode != 0o640 {
		t.Errorf("mode %#o, want 0640", sc.Mode)
	}
	if !sc.AllowedNets[0].Contains(netip.MustParseAddr("10.1.2.3")) {
		t.Error("10.1.2.3 is not allowed")
	}
}

// TestRunServesTheAuditSocketOnAUnixSocket: run binds the unix socket with
// the configured mode, stores what arrives on it, and removes the file
// when it stops.
func TestRunServesTheAuditSocketOnAUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.sock")
	cfg, err := loadWith(t, map[string]string{
		"LEASEGUARD_DATABASE_URL": pgtest.URL(), "LEASEGUARD_DATABASE_SCHEMA": pgtest.Schema(t, "lg_unixsock"),
		"LEASEGUARD_DATA_DIR": t.TempDir(), "LEASEGUARD_ROLES": "ingest", "LEASEGUARD_METRICS_ADDR": "127.0.0.1:0",
		"LEASEGUARD_AUDIT_SOCKET_ADDR": "unix:" + path, "LEASEGUARD_AUDIT_SOCKET_MODE": "0600",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	logs := &syncBuffer{}
	p, err := startPipeline(ctx, cfg, newLogger(logs, "info", "json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket file %v (%v), want a socket with mode 0600", fi, err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(`{"type":"request","time":"2026-11-25T19:00:00Z","request":{"id":"unix-1","path":"sys/health"}}` + "\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, 30*time.Second, "the entry to be stored", func() bool {
		return strings.Contains(httpGet(t, "http://"+p.opsSrv.Addr()+"/metrics"), `leaseguard_ingest_audit_source_entries_total{transport="socket"} 1`)
	})
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file after stop: %v", err)
	}
}
