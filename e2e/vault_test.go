//go:build e2e

package e2e

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/leaseguard/leaseguard/internal/vaultdev"
)

// vaultServer is a `vault server -dev` process owned by one test run.
type vaultServer struct {
	addr  string
	token string
	cmd   *exec.Cmd
	log   string
	hc    *http.Client
	api   *api.Client
}

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func startVault(t *testing.T, bin, dir string) *vaultServer {
	t.Helper()
	listen := freePort(t)
	v := &vaultServer{
		addr: "http://" + listen, token: "e2e-root-" + suffix, log: filepath.Join(dir, "vault.log"),
		hc: &http.Client{Timeout: 60 * time.Second},
	}
	var err error
	if v.api, err = vaultdev.NewClient(v.addr, v.token, v.hc); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(v.log)
	if err != nil {
		t.Fatal(err)
	}
	v.cmd = exec.Command(bin, "server", "-dev", "-dev-listen-address="+listen, "-dev-root-token-id="+v.token, "-dev-no-store-token")
	v.cmd.Stdout, v.cmd.Stderr = logf, logf
	v.cmd.Env = append(os.Environ(), "VAULT_DISABLE_MLOCK=true", "HOME="+dir)
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := v.cmd.Start(); err != nil {
		t.Fatalf("start vault: %v", err)
	}
	t.Cleanup(func() {
		_ = v.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = v.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = v.cmd.Process.Kill()
			<-done
		}
		_ = logf.Close()
		if t.Failed() {
			dumpTail(t, "vault", v.log)
		}
	})
	poll(t, "vault to unseal and answer", 90*time.Second, func() (bool, string) {
		resp, err := v.hc.Get(v.addr + "/v1/sys/health")
		if err != nil {
			return false, err.Error()
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return v
}

// call sends one API request and returns the answer (vaultdev.Call).
func (v *vaultServer) call(ctx context.Context, method, path string, body map[string]any) (map[string]any, error) {
	return vaultdev.Call(ctx, v.api, method, path, body)
}

// must is call that fails the test on an error.
func (v *vaultServer) must(t *testing.T, method, path string, body map[string]any) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := v.call(ctx, method, path, body)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// creds is one set of database credentials issued by Vault.
type creds struct {
	leaseID  string
	username string
	password string
	duration time.Duration
}

func (v *vaultServer) issue(t *testing.T, mount, role string) creds {
	t.Helper()
	out := v.must(t, "GET", mount+"/creds/"+role, nil)
	data, _ := out["data"].(map[string]any)
	c := creds{leaseID: str(out["lease_id"]), username: str(data["username"]), password: str(data["password"])}
	if d, ok := out["lease_duration"].(float64); ok {
		c.duration = time.Duration(d) * time.Second
	}
	if c.leaseID == "" || c.username == "" {
		t.Fatalf("creds from %s/%s: %v", mount, role, out)
	}
	return c
}

// expireTime is the lease's expiry as sys/leases/lookup reports it.
func (v *vaultServer) expireTime(t *testing.T, leaseID string) time.Time {
	t.Helper()
	out := v.must(t, "PUT", "sys/leases/lookup", map[string]any{"lease_id": leaseID})
	data, _ := out["data"].(map[string]any)
	ts, err := time.Parse(time.RFC3339Nano, str(data["expire_time"]))
	if err != nil {
		t.Fatalf("lookup %s: expire_time: %v (%v)", leaseID, err, out)
	}
	return ts
}

// leaseExists reports whether Vault still knows the lease.
func (v *vaultServer) leaseExists(t *testing.T, leaseID string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := v.call(ctx, "PUT", "sys/leases/lookup", map[string]any{"lease_id": leaseID})
	if err == nil {
		return true
	}
	if vaultdev.StatusCode(err) == http.StatusBadRequest {
		return false
	}
	t.Fatalf("lookup %s: %v", leaseID, err)
	return false
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
