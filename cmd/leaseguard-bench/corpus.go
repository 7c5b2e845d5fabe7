package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// corpus is a generated audit log shaped like a real Vault cluster's: about
// 80% of entries say nothing about database leases (token lookups, logins,
// KV reads), 20% are database creds issues, renewals, revocations and
// errors, on a mount whose usernames are logged plain (tuned) and on one
// where they are HMAC'd (untuned). Entries are request/response pairs of
// 1–3 KB with Vault 1.21's fields, keys sorted as Vault writes them.
type corpus struct {
	lines [][]byte
	// timeAt is the offset of each entry's top-level time value, a
	// fixed-width RFC 3339 timestamp (timeLayout) that publishers overwrite
	// with the publish time.
	timeAt []int
	// keys are the request ids, for Kafka record keys (a pair shares its
	// partition, in order).
	keys [][]byte
	// pairs counts generated request/response pairs by kind of traffic.
	pairs map[string]int
}

// timeLayout is RFC 3339 with a fixed number of fraction digits, so a
// timestamp can be overwritten in place.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

// stampTime writes t into entry i.
func (c *corpus) stampTime(i int, t time.Time) {
	at := c.timeAt[i]
	t.UTC().AppendFormat(c.lines[i][at:at], timeLayout)
}

// sizes returns the 1st, 50th and 99th percentiles of entry sizes.
func (c *corpus) sizes() (p1, p50, p99 int) {
	s := make([]int, len(c.lines))
	for i, l := range c.lines {
		s[i] = len(l)
	}
	slices.Sort(s)
	return s[len(s)/100], s[len(s)/2], s[len(s)*99/100]
}

func (c *corpus) bytes() int {
	n := 0
	for _, l := range c.lines {
		n += len(l)
	}
	return n
}

// corpusGen produces the entries. It is deterministic for a seed.
type corpusGen struct {
	rng     *rand.Rand
	now     time.Time
	clients []*client
	open    []openLease // issued leases that may be renewed or revoked
	c       *corpus
}

type client struct {
	display, entityID, accessor, token, clientID, remote string
	policies                                             []string
	meta                                                 map[string]any
	// login is the login path, authMount its auth method ("userpass", …).
	login, authMount string
}

type openLease struct {
	id string
	c  *client
}

// Database mounts: usernames on "postgres" are logged plain (the mount is
// tuned with audit_non_hmac_response_keys=username), on "pg-analytics"
// they are HMAC'd.
var dbMounts = []struct {
	mount string
	plain bool
	roles []string
}{
	{"postgres", true, []string{"readonly", "reporting", "app-rw", "etl"}},
	{"pg-analytics", false, []string{"analyst", "dashboards"}},
}

// generateCorpus builds n entries from seed.
func generateCorpus(n int, seed uint64) *corpus {
	g := &corpusGen{
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		now: time.Date(2026, 11, 25, 19, 0, 0, 0, time.UTC),
		c:   &corpus{pairs: map[string]int{}},
	}
	for i := range 200 {
		g.clients = append(g.clients, g.newClient(i))
	}
	for len(g.c.lines) < n {
		g.pair()
	}
	c := g.c
	c.lines, c.timeAt, c.keys = c.lines[:n], c.timeAt[:n], c.keys[:n]
	return c
}

func (g *corpusGen) hmac() string {
	const hexdig = "0123456789abcdef"
	b := make([]byte, 0, 12+64)
	b = append(b, "hmac-sha256:"...)
	for range 4 {
		v := g.rng.Uint64()
		for range 16 {
			b = append(b, hexdig[v&15])
			v >>= 4
		}
	}
	return string(b)
}

func (g *corpusGen) uuid() string {
	a, b := g.rng.Uint64(), g.rng.Uint64()
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", a>>32, (a>>16)&0xffff, a&0xffff, b>>48, b&0xffffffffffff)
}

func (g *corpusGen) base62(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = base62[g.rng.IntN(len(base62))]
	}
	return string(b)
}

var (
	policyNames = []string{"default", "rep", "app-read", "ci-deploy", "kv-team-a", "kv-team-b", "db-readonly", "db-etl", "pki-issue", "transit-use"}
	teams       = []string{"payments", "search", "identity", "billing", "ledger", "growth", "infra", "data"}
	kvKeys      = []string{"api_key", "client_secret", "db_password", "smtp_password", "token", "webhook_secret", "private_key", "access_key_id", "secret_access_key", "signing_key", "encryption_key", "oauth_secret", "license", "dsn", "username", "password", "cert", "ca_bundle", "salt", "pepper"}
)

func (g *corpusGen) newClient(i int) *client {
	c := &client{
		entityID: g.uuid(),
		accessor: g.hmac(),
		token:    g.hmac(),
		remote:   fmt.Sprintf("10.%d.%d.%d", 20+g.rng.IntN(10), g.rng.IntN(256), 1+g.rng.IntN(254)),
	}
	c.clientID = c.entityID
	switch i % 3 {
	case 0:
		user := fmt.Sprintf("%s-%02d", teams[i%len(teams)], i)
		c.display, c.login, c.authMount = "userpass-"+user, "auth/userpass/login/"+user, "userpass"
		c.meta = map[string]any{"username": user}
	case 1:
		c.display, c.login, c.authMount = "approle", "auth/approle/login", "approle"
		c.meta = map[string]any{"role_name": teams[i%len(teams)] + "-svc"}
	default:
		c.display, c.login, c.authMount = "kubernetes-"+teams[i%len(teams)], "auth/kubernetes/login", "kubernetes"
		c.meta = map[string]any{"role": teams[i%len(teams)], "service_account_name": teams[i%len(teams)] + "-sa",
			"service_account_namespace": teams[i%len(teams)], "service_account_uid": g.uuid()}
	}
	c.policies = []string{"default"}
	for range 1 + g.rng.IntN(4) {
		c.policies = append(c.policies, policyNames[1+g.rng.IntN(len(policyNames)-1)])
	}
	return c
}

// pair appends one request/response pair, by the traffic mix.
func (g *corpusGen) pair() {
	g.now = g.now.Add(time.Duration(1+g.rng.IntN(3000)) * time.Microsecond)
	c := g.clients[g.rng.IntN(len(g.clients))]
	switch r := g.rng.IntN(1000); {
	case r < 300:
		g.tokenLookup(c)
	case r < 650:
		g.kvRead(c)
	case r < 800:
		g.login(c)
	case r < 900:
		g.dbIssue(c)
	case r < 950:
		g.dbRenew(c)
	case r < 990:
		g.dbRevoke(c)
	default:
		g.dbError(c)
	}
}

func (g *corpusGen) auth(c *client) map[string]any {
	granting := []any{map[string]any{"type": ""}}
	for _, p := range c.policies[1:] {
		granting = append(granting, map[string]any{"name": p, "namespace_id": "root", "type": "acl"})
	}
	return map[string]any{
		"accessor": c.accessor, "client_token": c.token, "display_name": c.display, "entity_id": c.entityID,
		"metadata": c.meta, "policies": c.policies, "token_policies": c.policies,
		"policy_results":   map[string]any{"allowed": true, "granting_policies": granting},
		"token_issue_time": g.now.Add(-time.Hour).Truncate(time.Second).Format(time.RFC3339),
		"token_ttl":        2764800, "token_type": "service",
	}
}

// headers are the request headers the cluster audits
// (sys/config/auditing/request-headers, logged unhashed), as behind a load
// balancer with tracing.
func (g *corpusGen) headers(c *client) map[string]any {
	return map[string]any{
		"user-agent":      []any{"Go-http-client/1.1"},
		"x-forwarded-for": []any{c.remote},
		"x-request-id":    []any{g.uuid()},
		"traceparent":     []any{fmt.Sprintf("00-%016x%016x-%016x-01", g.rng.Uint64(), g.rng.Uint64(), g.rng.Uint64())},
	}
}

func (g *corpusGen) request(c *client, reqID, op, path, mountPoint, mountType, mountClass, version string, data map[string]any) map[string]any {
	r := map[string]any{
		"client_id": c.clientID, "client_token": g.hmac(), "client_token_accessor": c.accessor,
		"headers": g.headers(c), "id": reqID,
		"mount_accessor": mountType + "_" + fmt.Sprintf("%08x", g.rng.Uint32()&0xffff), "mount_class": mountClass,
		"mount_point": mountPoint, "mount_running_version": version, "mount_type": mountType,
		"namespace": map[string]any{"id": "root"}, "operation": op, "path": path,
		"remote_address": c.remote, "remote_port": 30000 + g.rng.IntN(30000),
	}
	if data != nil {
		r["data"] = data
	}
	return r
}

// emit appends the request and response entries of one pair; auth is
// the top-level auth of both (nil: an unauthenticated request, whose
// response carries respAuth).
func (g *corpusGen) emit(kind string, auth, respAuth map[string]any, req, resp map[string]any) {
	g.c.pairs[kind]++
	id, _ := req["id"].(string)
	if auth == nil {
		// An unauthenticated request (a login) as Vault 1.21 logs it.
		auth = map[string]any{"policy_results": map[string]any{"allowed": true}, "token_type": "default"}
	} else {
		respAuth = auth
	}
	for i, typ := range []string{"request", "response"} {
		e := map[string]any{"auth": auth, "request": req, "type": typ, "time": g.now.Add(time.Duration(i) * 7 * time.Millisecond).Format(timeLayout)}
		if typ == "response" {
			e["auth"], e["response"] = respAuth, resp
		}
		line, err := json.Marshal(e)
		if err != nil {
			panic(err)
		}
		at := bytes.LastIndex(line, []byte(`"time":"`))
		if at < 0 {
			panic("generated entry without time")
		}
		g.c.lines = append(g.c.lines, line)
		g.c.timeAt = append(g.c.timeAt, at+len(`"time":"`))
		g.c.keys = append(g.c.keys, []byte(id))
	}
}

func (g *corpusGen) tokenLookup(c *client) {
	req := g.request(c, g.uuid(), "read", "auth/token/lookup-self", "auth/token/", "token", "auth", "v1.21.0+builtin.vault", nil)
	pol := make([]any, len(c.policies))
	for i := range pol {
		pol[i] = g.hmac()
	}
	resp := map[string]any{
		"mount_accessor": "auth_token_5c4d2a1f", "mount_class": "auth", "mount_point": "auth/token/",
		"mount_running_plugin_version": "v1.21.0+builtin.vault", "mount_type": "token",
		"data": map[string]any{
			"accessor": g.hmac(), "creation_time": g.now.Unix() - 3600, "creation_ttl": 2764800,
			"display_name": g.hmac(), "entity_id": g.hmac(), "expire_time": g.hmac(), "explicit_max_ttl": 0,
			"id": g.hmac(), "issue_time": g.hmac(), "meta": nil, "num_uses": 0, "orphan": true, "path": g.hmac(),
			"policies": pol, "renewable": true, "ttl": 2761200, "type": g.hmac(),
		},
	}
	g.emit("token_lookup", g.auth(c), nil, req, resp)
}

func (g *corpusGen) kvRead(c *client) {
	team := teams[g.rng.IntN(len(teams))]
	path := fmt.Sprintf("secret/data/%s/%s-%d", team, kvKeys[g.rng.IntN(len(kvKeys))], g.rng.IntN(50))
	req := g.request(c, g.uuid(), "read", path, "secret/", "kv", "secret", "v0.25.0+builtin", nil)
	data := map[string]any{}
	for range 1 + g.rng.IntN(9) {
		data[kvKeys[g.rng.IntN(len(kvKeys))]] = g.hmac()
	}
	resp := map[string]any{
		"mount_accessor": "kv_9a3b11e0", "mount_class": "secret", "mount_point": "secret/",
		"mount_running_plugin_version": "v0.25.0+builtin", "mount_type": "kv",
		"data": map[string]any{
			"data": data,
			"metadata": map[string]any{"created_time": g.hmac(), "custom_metadata": nil, "deletion_time": g.hmac(),
				"destroyed": false, "version": 1 + g.rng.IntN(30)},
		},
	}
	g.emit("kv_read", g.auth(c), nil, req, resp)
}

func (g *corpusGen) login(c *client) {
	var data map[string]any
	switch c.authMount {
	case "approle":
		data = map[string]any{"role_id": g.hmac(), "secret_id": g.hmac()}
	case "kubernetes":
		data = map[string]any{"jwt": g.hmac(), "role": g.hmac()}
	default:
		data = map[string]any{"password": g.hmac()}
	}
	mountType, mountPoint := c.authMount, "auth/"+c.authMount+"/"
	req := map[string]any{
		"data": data, "headers": g.headers(c), "id": g.uuid(),
		"mount_accessor": "auth_" + mountType + "_a2d46d80", "mount_class": "auth", "mount_point": mountPoint,
		"mount_running_version": "v1.21.0+builtin.vault", "mount_type": mountType,
		"namespace": map[string]any{"id": "root"}, "operation": "update", "path": c.login,
		"remote_address": c.remote, "remote_port": 30000 + g.rng.IntN(30000),
	}
	a := g.auth(c)
	delete(a, "policy_results")
	delete(a, "token_issue_time")
	a["entity_created"] = false
	resp := map[string]any{
		"auth": a, "mount_accessor": "auth_" + mountType + "_a2d46d80", "mount_class": "auth", "mount_point": mountPoint,
		"mount_running_plugin_version": "v1.21.0+builtin.vault", "mount_type": mountType,
	}
	g.emit("login", nil, a, req, resp)
}

func (g *corpusGen) dbMount() (mount string, plain bool, role string) {
	m := dbMounts[g.rng.IntN(len(dbMounts))]
	return m.mount, m.plain, m.roles[g.rng.IntN(len(m.roles))]
}

func (g *corpusGen) dbIssue(c *client) {
	mount, plain, role := g.dbMount()
	path := mount + "/creds/" + role
	reqID := g.uuid()
	req := g.request(c, reqID, "read", path, mount+"/", "database", "secret", "v1.21.0+builtin.vault", nil)
	leaseID := path + "/" + g.base62(24)
	user := fmt.Sprintf("v-%s-%s-%s-%d", cut(c.display, 8), cut(role, 8), g.base62(20), g.now.Unix())
	if !plain {
		user = g.hmac()
	}
	resp := map[string]any{
		"mount_accessor": "database_0f55551a", "mount_class": "secret", "mount_point": mount + "/",
		"mount_running_plugin_version": "v1.21.0+builtin.vault", "mount_type": "database",
		"data":   map[string]any{"password": g.hmac(), "username": cut(user, 63)},
		"secret": map[string]any{"lease_id": leaseID},
	}
	g.open = append(g.open, openLease{id: leaseID, c: c})
	g.emit("db_issue", g.auth(c), nil, req, resp)
}

// pickOpen returns an issued lease, removing it when take is set; it
// issues one first if none is open.
func (g *corpusGen) pickOpen(take bool) openLease {
	if len(g.open) == 0 {
		g.dbIssue(g.clients[g.rng.IntN(len(g.clients))])
	}
	i := g.rng.IntN(len(g.open))
	l := g.open[i]
	if take {
		g.open[i] = g.open[len(g.open)-1]
		g.open = g.open[:len(g.open)-1]
	}
	return l
}

func (g *corpusGen) dbRenew(c *client) {
	l := g.pickOpen(false)
	data := map[string]any{"increment": g.hmac(), "lease_id": g.hmac()}
	req := g.request(l.c, g.uuid(), "update", "sys/leases/renew", "sys/", "system", "secret", "v1.21.0+builtin.vault", data)
	resp := map[string]any{
		"mount_accessor": "system_304a8fde", "mount_class": "secret", "mount_point": "sys/",
		"mount_running_plugin_version": "v1.21.0+builtin.vault", "mount_type": "system",
		"secret": map[string]any{"lease_id": l.id},
	}
	g.emit("db_renew", g.auth(l.c), nil, req, resp)
}

func (g *corpusGen) dbRevoke(c *client) {
	l := g.pickOpen(true)
	path, data, kind := "sys/leases/revoke/"+l.id, map[string]any{"sync": false}, "db_revoke"
	if g.rng.IntN(5) < 2 {
		// The API form: the lease id is in the body, which the audit
		// device hashes (the sys/ mount cannot be tuned).
		path, data, kind = "sys/leases/revoke", map[string]any{"lease_id": g.hmac(), "sync": false}, "db_revoke_hashed"
	}
	req := g.request(c, g.uuid(), "update", path, "sys/", "system", "secret", "v1.21.0+builtin.vault", data)
	resp := map[string]any{
		"mount_accessor": "system_304a8fde", "mount_class": "secret", "mount_point": "sys/",
		"mount_running_plugin_version": "v1.21.0+builtin.vault", "mount_type": "system",
		"data": map[string]any{"http_content_type": g.hmac(), "http_status_code": 202},
	}
	g.emit(kind, g.auth(c), nil, req, resp)
}

// dbError is a creds read of a role that does not exist: the backend's
// error is a normal response with an HMAC'd response.data.error.
func (g *corpusGen) dbError(c *client) {
	mount, _, _ := g.dbMount()
	path := mount + "/creds/unknown-" + teams[g.rng.IntN(len(teams))]
	req := g.request(c, g.uuid(), "read", path, mount+"/", "database", "secret", "v1.21.0+builtin.vault", nil)
	resp := map[string]any{
		"mount_class": "secret", "mount_point": mount + "/",
		"mount_running_plugin_version": "v1.21.0+builtin.vault", "mount_type": "database",
		"data": map[string]any{"error": g.hmac()},
	}
	g.emit("db_error", g.auth(c), nil, req, resp)
}
