package vaultsim

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Sim is one simulated Vault mount of the database secrets engine.
type Sim struct {
	// Pool reaches the database Vault's plugin would manage.
	Pool *pgxpool.Pool
	// Mount is the secrets engine's path, without slashes ("postgres").
	Mount string
	// DisplayName, EntityID and RemoteAddress describe the client.
	DisplayName   string
	EntityID      string
	RemoteAddress string
	// HashUsernames leaves the mount untuned: usernames in responses are
	// HMAC'd like every other response string.
	HashUsernames bool
	// PlaintextPasswords tunes the mount with
	// audit_non_hmac_response_keys=username,password: the password of an
	// issued credential appears in clear in response.data.password, as a
	// real Vault writes it with that tuning.
	PlaintextPasswords bool
	// Clock defaults to time.Now.
	Clock func() time.Time
	salt  []byte
}

// Cred is an issued credential.
type Cred struct {
	LeaseID  string
	Role     string
	Username string
	Password string
	Expire   time.Time
}

func (s *Sim) now() time.Time {
	if s.Clock != nil {
		return s.Clock()
	}
	return time.Now()
}

// HMAC hashes a value the way an audit device does (per-device salt).
func (s *Sim) HMAC(v string) string {
	if s.salt == nil {
		s.salt = make([]byte, 32)
		_, _ = rand.Read(s.salt)
	}
	m := hmac.New(sha256.New, s.salt)
	m.Write([]byte(v))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func randomString(n int, alphabet string) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		k, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		b.WriteByte(alphabet[k.Int64()])
	}
	return b.String()
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Username follows Vault's default template:
// v-<display name, 8>-<role, 8>-<20 random>-<unix time>, cut to 63.
func Username(display, role string, at time.Time) string {
	u := fmt.Sprintf("v-%s-%s-%s-%d", cut(display, 8), cut(role, 8), randomString(20, base62), at.Unix())
	return cut(u, 63)
}

// Issue creates the user as the plugin would and returns the credential
// and the request and response audit entries of the creds read.
func (s *Sim) Issue(ctx context.Context, role string, ttl time.Duration, grants ...string) (Cred, [][]byte, error) {
	now := s.now()
	c := Cred{
		LeaseID:  fmt.Sprintf("%s/creds/%s/%s", s.Mount, role, randomString(24, base62)),
		Role:     role,
		Username: Username(s.DisplayName, role, now),
		Password: "A1a-" + randomString(20, base62),
		Expire:   now.Add(ttl),
	}
	id := pgx.Identifier{c.Username}.Sanitize()
	// Vault renders '{{password}}' and '{{expiration}}' into the statement
	// text; the demo does the same through a literal, never logging it.
	stmts := []string{fmt.Sprintf("CREATE ROLE %s WITH LOGIN PASSWORD %s VALID UNTIL '%s'", id,
		quoteLiteral(c.Password), c.Expire.Add(5*time.Second).UTC().Format("2006-01-02 15:04:05.999999-07"))}
	for _, g := range grants {
		stmts = append(stmts, strings.ReplaceAll(g, "{{name}}", id))
	}
	if err := pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		for _, q := range stmts {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", strings.SplitN(q, " ", 3)[0], err)
			}
		}
		return nil
	}); err != nil {
		return c, nil, fmt.Errorf("create user for %s: %w", role, err)
	}
	return c, s.issueEntries(now, c), nil
}

// issueEntries are the request and response audit entries of the creds
// read that issued c.
func (s *Sim) issueEntries(now time.Time, c Cred) [][]byte {
	path := s.Mount + "/creds/" + c.Role
	reqID := newUUID()
	username := c.Username
	if s.HashUsernames {
		username = s.HMAC(username)
	}
	password := s.HMAC(c.Password)
	if s.PlaintextPasswords {
		password = c.Password
	}
	req := s.entry("request", now, reqID, "read", path, "database", nil)
	resp := s.entry("response", now.Add(30*time.Millisecond), reqID, "read", path, "database", nil)
	resp["response"] = map[string]any{
		"mount_type": "database", "mount_point": s.Mount + "/", "mount_class": "secret",
		"mount_accessor": "database_0f55551a", "mount_running_plugin_version": "v1.21.0+builtin.vault",
		"data":   map[string]any{"username": username, "password": password},
		"secret": map[string]any{"lease_id": c.LeaseID},
	}
	return [][]byte{mustJSON(req), mustJSON(resp)}
}

// MySQLUsername follows the default template of Vault's mysql plugin:
// v-<display name, 10>-<role, 10>-<20 random>-<unix time>, cut to 32
// characters (the unix time is usually cut off).
func MySQLUsername(display, role string, at time.Time) string {
	return cut(fmt.Sprintf("v-%s-%s-%s-%d", cut(display, 10), cut(role, 10), randomString(20, base62), at.Unix()), 32)
}

// IssueMySQL creates the user on a MySQL or MariaDB server as the mysql
// plugin would with creation statements for two hosts ('u'@'%' and
// 'u'@'localhost', a password, grants with {{name}} for 'u'@'h'), and
// returns the credential and the audit entries of the creds read. The
// plugin sets no expiry: nothing in mysql.user says when the lease ends.
func (s *Sim) IssueMySQL(ctx context.Context, db *sql.DB, role string, ttl time.Duration, grants ...string) (Cred, [][]byte, error) {
	now := s.now()
	c := Cred{
		LeaseID:  fmt.Sprintf("%s/creds/%s/%s", s.Mount, role, randomString(24, base62)),
		Role:     role,
		Username: MySQLUsername(s.DisplayName, role, now),
		Password: "A1a-" + randomString(20, base62),
		Expire:   now.Add(ttl),
	}
	for _, h := range []string{"%", "localhost"} {
		// The driver renders name, host and password as escaped literals.
		if _, err := db.ExecContext(ctx, "CREATE USER ?@? IDENTIFIED BY ?", c.Username, h, c.Password); err != nil {
			return c, nil, fmt.Errorf("create user for %s: %w", role, err)
		}
		for _, g := range grants {
			if _, err := db.ExecContext(ctx, strings.ReplaceAll(g, "{{name}}", "?@?"), c.Username, h); err != nil {
				return c, nil, fmt.Errorf("grant to user for %s: %w", role, err)
			}
		}
	}
	return c, s.issueEntries(now, c), nil
}

// Renew extends the lease as Vault does (ALTER ROLE … VALID UNTIL) and
// returns the audit entries of sys/leases/renew.
func (s *Sim) Renew(ctx context.Context, c *Cred, increment time.Duration) ([][]byte, error) {
	now := s.now()
	c.Expire = now.Add(increment)
	q := fmt.Sprintf("ALTER ROLE %s VALID UNTIL '%s'", pgx.Identifier{c.Username}.Sanitize(),
		c.Expire.Add(5*time.Second).UTC().Format("2006-01-02 15:04:05.999999-07"))
	if _, err := s.Pool.Exec(ctx, q); err != nil {
		return nil, fmt.Errorf("renew %s: %w", c.LeaseID, err)
	}
	reqID := newUUID()
	data := map[string]any{"increment": s.HMAC(fmt.Sprint(int(increment.Seconds()))), "lease_id": s.HMAC(c.LeaseID)}
	req := s.entry("request", now, reqID, "update", "sys/leases/renew", "system", data)
	resp := s.entry("response", now.Add(20*time.Millisecond), reqID, "update", "sys/leases/renew", "system", data)
	resp["response"] = map[string]any{"mount_type": "system", "mount_point": "sys/", "secret": map[string]any{"lease_id": c.LeaseID}}
	return [][]byte{mustJSON(req), mustJSON(resp)}, nil
}

// Revoke revokes the lease as Vault's default revocation does (REVOKE,
// DROP ROLE; live sessions are left running) and returns the audit
// entries of the CLI path sys/leases/revoke/<lease id>.
func (s *Sim) Revoke(ctx context.Context, c Cred) ([][]byte, error) {
	now := s.now()
	id := pgx.Identifier{c.Username}.Sanitize()
	if _, err := s.Pool.Exec(ctx, "DROP OWNED BY "+id+"; DROP ROLE IF EXISTS "+id); err != nil {
		return nil, fmt.Errorf("revoke %s: %w", c.LeaseID, err)
	}
	path := "sys/leases/revoke/" + c.LeaseID
	reqID := newUUID()
	data := map[string]any{"sync": false}
	req := s.entry("request", now, reqID, "update", path, "system", data)
	resp := s.entry("response", now.Add(20*time.Millisecond), reqID, "update", path, "system", data)
	resp["response"] = map[string]any{"mount_type": "system", "mount_point": "sys/",
		"data": map[string]any{"http_content_type": s.HMAC("application/json"), "http_status_code": 202}}
	return [][]byte{mustJSON(req), mustJSON(resp)}, nil
}

// Noise returns a non-lease entry pair (a token lookup) of about 1.5 KB.
func (s *Sim) Noise() [][]byte {
	now := s.now()
	reqID := newUUID()
	req := s.entry("request", now, reqID, "update", "auth/token/lookup-self", "token", nil)
	resp := s.entry("response", now, reqID, "update", "auth/token/lookup-self", "token", nil)
	resp["response"] = map[string]any{"mount_type": "token", "data": map[string]any{
		"accessor": s.HMAC("acc"), "display_name": s.DisplayName, "policies": []any{"default", "rep"},
		"ttl": 2764000, "id": s.HMAC("token")}}
	return [][]byte{mustJSON(req), mustJSON(resp)}
}

func (s *Sim) entry(typ string, at time.Time, reqID, op, path, mountType string, data map[string]any) map[string]any {
	mountPoint := s.Mount + "/"
	if mountType == "system" {
		mountPoint = "sys/"
	} else if mountType == "token" {
		mountPoint = "auth/token/"
	}
	req := map[string]any{
		"id": reqID, "client_id": s.EntityID, "operation": op, "mount_point": mountPoint, "mount_type": mountType,
		"mount_accessor": mountType + "_0f55551a", "mount_class": "secret", "mount_running_version": "v1.21.0+builtin.vault",
		"client_token": s.HMAC("token"), "client_token_accessor": s.HMAC("accessor"),
		"namespace": map[string]any{"id": "root"}, "path": path,
		"remote_address": s.RemoteAddress, "remote_port": 35424,
		"headers": map[string]any{"user-agent": []any{"Go-http-client/1.1"}},
	}
	if data != nil {
		req["data"] = data
	}
	return map[string]any{
		"time": at.UTC().Format(time.RFC3339Nano), "type": typ,
		"auth": map[string]any{
			"accessor": s.HMAC("accessor"), "client_token": s.HMAC("token"), "display_name": s.DisplayName,
			"entity_id": s.EntityID, "metadata": map[string]any{"username": s.DisplayName},
			"policies": []any{"default", "rep"}, "token_policies": []any{"default", "rep"},
			"policy_results": map[string]any{"allowed": true}, "token_type": "service", "token_ttl": 2764800,
		},
		"request": req,
	}
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// RevokePrefixEntries returns the audit entries of a sys/leases/revoke-prefix
// of prefix at s's clock, and does nothing to the database: what a forged
// revocation, or one whose revocation statements failed, looks like on the
// audit stream.
func (s *Sim) RevokePrefixEntries(prefix string) [][]byte {
	now := s.now()
	path := "sys/leases/revoke-prefix/" + strings.TrimSuffix(prefix, "/")
	reqID := newUUID()
	data := map[string]any{"sync": true}
	req := s.entry("request", now, reqID, "update", path, "system", data)
	resp := s.entry("response", now.Add(20*time.Millisecond), reqID, "update", path, "system", data)
	resp["response"] = map[string]any{"mount_type": "system", "mount_point": "sys/",
		"data": map[string]any{"http_content_type": s.HMAC("application/json"), "http_status_code": 204}}
	return [][]byte{mustJSON(req), mustJSON(resp)}
}
