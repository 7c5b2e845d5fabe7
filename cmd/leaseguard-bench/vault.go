package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/leaseguard/leaseguard/internal/vaultdev"
)

// vaultBinEnv names the Vault binary of the vault scenario; make bench
// sets it from scripts/ensure-vault.sh.
const vaultBinEnv = "BENCH_VAULT_BIN"

// vaultBinary returns the Vault binary to run, or why there is none: the
// -vault flag, else BENCH_VAULT_BIN, else the binary
// scripts/ensure-vault.sh caches for the version pinned in
// tools/vault/go.mod (when the harness runs from the repository root).
func (m *Main) vaultBinary(flagValue string) (path, why string) {
	cands := []string{flagValue, m.Getenv(vaultBinEnv)}
	if v := pinnedVaultVersion(filepath.Join("tools", "vault", "go.mod")); v != "" {
		cache := m.Getenv("VAULT_BUILD_CACHE")
		if cache == "" {
			base := m.Getenv("XDG_CACHE_HOME")
			if base == "" {
				if home := m.Getenv("HOME"); home != "" {
					base = filepath.Join(home, ".cache")
				}
			}
			if base != "" {
				cache = filepath.Join(base, "leaseguard-vault")
			}
		}
		if cache != "" {
			cands = append(cands, filepath.Join(cache, "vault-"+v))
		}
	}
	for _, c := range cands {
		if c == "" {
			continue
		}
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return c, ""
		}
		if c == flagValue || c == m.Getenv(vaultBinEnv) {
			return "", fmt.Sprintf("%s is not an executable file", c)
		}
	}
	return "", "no Vault binary (set -vault or " + vaultBinEnv + "; make bench takes it from scripts/ensure-vault.sh)"
}

// pinnedVaultVersion reads the Vault version required by a go.mod ("" if
// unreadable).
func pinnedVaultVersion(gomod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 3 && fs[0] == "require" && fs[1] == "github.com/hashicorp/vault" {
			return fs[2]
		}
		if len(fs) >= 2 && fs[0] == "github.com/hashicorp/vault" {
			return fs[1]
		}
	}
	return ""
}

// vaultServer is a `vault server -dev` child of this harness (in-memory
// storage, a root token of ours, a loopback port of its own).
type vaultServer struct {
	addr  string
	token string
	dir   string
	cmd   *exec.Cmd
	logf  *os.File
	hc    *http.Client
	api   *api.Client
	done  chan struct{}
}

// startVault starts a dev server and waits until it answers unsealed.
func (b *Bench) startVault(ctx context.Context, bin string) (*vaultServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	listen := ln.Addr().String()
	_ = ln.Close()
	dir, err := os.MkdirTemp("", "leaseguard-bench-vault-")
	if err != nil {
		return nil, err
	}
	v := &vaultServer{
		addr: "http://" + listen, token: "bench-root-" + randomString(16), dir: dir, done: make(chan struct{}),
		hc: &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 32}},
	}
	if v.api, err = vaultdev.NewClient(v.addr, v.token, v.hc); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if v.logf, err = os.Create(filepath.Join(dir, "vault.log")); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	v.cmd = exec.Command(bin, "server", "-dev", "-dev-listen-address="+listen, "-dev-root-token-id="+v.token, "-dev-no-store-token")
	v.cmd.Stdout, v.cmd.Stderr = v.logf, v.logf
	v.cmd.Env = append(os.Environ(), "VAULT_DISABLE_MLOCK=true", "HOME="+dir)
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := v.cmd.Start(); err != nil {
		_ = v.logf.Close()
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start vault: %w", err)
	}
	go func() { _ = v.cmd.Wait(); close(v.done) }()
	b.undo.add("stop vault", func(context.Context) error { v.stop(); return nil })
	deadline := time.Now().Add(90 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, v.addr+"/v1/sys/health", nil)
		resp, err := v.hc.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return v, nil
			}
		}
		select {
		case <-v.done:
			return nil, fmt.Errorf("vault exited before answering: %s", v.lastLines())
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("vault did not answer within 90 s: %s", v.lastLines())
		}
	}
}

// stop ends the server (SIGTERM, then SIGKILL after 20 s) and removes its
// directory; safe to call more than once.
func (v *vaultServer) stop() {
	if v == nil || v.cmd == nil {
		return
	}
	select {
	case <-v.done:
	default:
		_ = v.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-v.done:
		case <-time.After(20 * time.Second):
			_ = v.cmd.Process.Kill()
			<-v.done
		}
	}
	_ = v.logf.Close()
	_ = os.RemoveAll(v.dir)
}

// lastLines is the tail of the server's log, for error messages.
func (v *vaultServer) lastLines() string {
	raw, err := os.ReadFile(filepath.Join(v.dir, "vault.log"))
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	return strings.Join(lines[max(0, len(lines)-8):], " | ")
}

// call sends one API request and returns the answer (vaultdev.Call).
func (v *vaultServer) call(ctx context.Context, method, path string, body map[string]any) (map[string]any, error) {
	return vaultdev.Call(ctx, v.api, method, path, body)
}

// vaultLease is one set of credentials Vault issued (the password is
// dropped on receipt).
type vaultLease struct {
	id       string
	username string
}

// issue reads <mount>/creds/<role> once. Concurrent creation statements
// granting on the same tables can fail in PostgreSQL with "tuple
// concurrently updated" (the plugin rolls the user back); those calls are
// retried.
func (v *vaultServer) issue(ctx context.Context, mount, role string) (vaultLease, int, error) {
	retries := 0
	for {
		out, err := v.call(ctx, http.MethodGet, mount+"/creds/"+role, nil)
		if err != nil && retries < 20 && strings.Contains(strings.Join(vaultdev.Errors(err), " "), "concurrently") {
			retries++
			continue
		}
		if err != nil {
			return vaultLease{}, retries, err
		}
		data, _ := out["data"].(map[string]any)
		l := vaultLease{id: str(out["lease_id"]), username: str(data["username"])}
		if l.id == "" || l.username == "" {
			return vaultLease{}, retries, fmt.Errorf("creds from %s/%s without a lease or username", mount, role)
		}
		return l, retries, nil
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
