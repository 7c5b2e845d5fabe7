//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// vaultServer is a `vault server -dev` process owned by one test run.
type vaultServer struct {
	addr  string
	token string
	cmd   *exec.Cmd
	log   string
	hc    *http.Client
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

// vaultError is a non-2xx answer.
type vaultError struct {
	status int
	errors []string
}

func (e *vaultError) Error() string {
	return fmt.Sprintf("vault: %d: %s", e.status, strings.Join(e.errors, "; "))
}

// call sends one API request; the answer's JSON body is returned.
func (v *vaultServer) call(ctx context.Context, method, path string, body any) (map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, v.addr+"/v1/"+strings.TrimPrefix(path, "/"), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Vault-Token", v.token)
	resp, err := v.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, fmt.Errorf("vault %s %s: %d: %s", method, path, resp.StatusCode, raw)
		}
	}
	if resp.StatusCode >= 300 {
		ve := &vaultError{status: resp.StatusCode}
		if es, ok := out["errors"].([]any); ok {
			for _, e := range es {
				ve.errors = append(ve.errors, fmt.Sprint(e))
			}
		}
		return out, fmt.Errorf("%s %s: %w", method, path, ve)
	}
	return out, nil
}

// must is call that fails the test on an error.
func (v *vaultServer) must(t *testing.T, method, path string, body any) map[string]any {
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
	if ve := (*vaultError)(nil); asVaultError(err, &ve) && ve.status == http.StatusBadRequest {
		return false
	}
	t.Fatalf("lookup %s: %v", leaseID, err)
	return false
}

func asVaultError(err error, target **vaultError) bool {
	for err != nil {
		if ve, ok := err.(*vaultError); ok {
			*target = ve
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
