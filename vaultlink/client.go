package vaultlink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/leaseguard/leaseguard/schemas"
)

// Client calls the few Vault endpoints leaseguard needs. It is safe for
// concurrent use.
type Client struct {
	api     *api.Client
	tokens  *tokenSource
	metrics *Metrics
	logger  *slog.Logger
	now     func() time.Time
}

// Deps are a client's collaborators; all optional.
type Deps struct {
	Metrics *Metrics
	Logger  *slog.Logger
	// Clock (default time.Now) decides when the token file is looked at.
	Clock func() time.Time
}

// New builds a client. Nothing of Vault's own VAULT_* environment is used:
// address, token, namespace, TLS and headers come from cfg only.
func New(cfg Config, d Deps) (*Client, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Metrics == nil {
		d.Metrics = NewMetrics(nil)
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.TLSHandshakeTimeout = cfg.Timeout
	ac := &api.Config{
		Address:    cfg.Addr,
		HttpClient: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		Timeout:    cfg.Timeout,
		// Retries are leaseguard's: the reconciler's durable backoff, the
		// observer's next pass.
		MaxRetries:   0,
		MinRetryWait: 100 * time.Millisecond,
		MaxRetryWait: time.Second,
	}
	c, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	// api.NewClient takes VAULT_TOKEN, VAULT_NAMESPACE and VAULT_HEADERS
	// from the environment: undo all three.
	c.ClearToken()
	c.SetHeaders(http.Header{api.RequestHeaderName: []string{"true"}})
	if cfg.Namespace != "" {
		c.SetNamespace(cfg.Namespace)
	} else {
		c.ClearNamespace()
	}
	return &Client{api: c, tokens: newTokenSource(cfg.Token, cfg.TokenFile, d.Clock), metrics: d.Metrics,
		logger: d.Logger, now: d.Clock}, nil
}

// Metrics returns the client's metrics (shared by the keeper, reconciler and
// resolver built on it).
func (c *Client) Metrics() *Metrics { return c.metrics }

// Error is Vault's answer to a failed call, or the failure to reach it.
type Error struct {
	Op string
	// Status is the HTTP status; 0 when Vault was not reached.
	Status int
	// Errors are Vault's "errors" array.
	Errors []string
	Err    error
}

func (e *Error) Error() string {
	switch {
	case e.Status == 0:
		return fmt.Sprintf("vault %s: unreachable: %v", e.Op, e.Err)
	case len(e.Errors) > 0:
		return fmt.Sprintf("vault %s: %d: %s", e.Op, e.Status, strings.Join(e.Errors, "; "))
	}
	return fmt.Sprintf("vault %s: %d", e.Op, e.Status)
}

func (e *Error) Unwrap() error { return e.Err }

// Unreachable: Vault did not answer, or answered that it cannot serve now
// (5xx: sealed, standby trouble; 429: rate limited). Worth retrying as is.
func (e *Error) Unreachable() bool { return e.Status == 0 || e.Status >= 500 || e.Status == 429 }

// PermissionDenied: the token lacks a capability (or is invalid).
func (e *Error) PermissionDenied() bool { return e.Status == http.StatusForbidden }

// Status returns the HTTP status of a Vault error (0 if unreachable or not a
// Vault error).
func Status(err error) int {
	var ve *Error
	if errors.As(err, &ve) {
		return ve.Status
	}
	return 0
}

// IsUnreachable reports whether err means Vault could not be asked.
func IsUnreachable(err error) bool {
	var ve *Error
	return errors.As(err, &ve) && ve.Unreachable()
}

// do sends one request with the current token and decodes a JSON answer
// into out (when not nil and there is a body). notFound statuses are
// returned as (false, nil).
func (c *Client) do(ctx context.Context, op, method, path string, params map[string]string, body any, out any, notFound ...int) (bool, error) {
	tok, _, err := c.tokens.Token()
	if err != nil {
		c.metrics.requests.WithLabelValues(op, "no_token").Inc()
		return false, &Error{Op: op, Err: err}
	}
	r := c.api.NewRequest(method, "/v1/"+path)
	r.ClientToken = tok
	for k, v := range params {
		r.Params.Set(k, v)
	}
	if body != nil {
		if err := r.SetJSONBody(body); err != nil {
			return false, fmt.Errorf("vault %s: encode body: %w", op, err)
		}
	}
	// Deprecated for callers of Vault's secret engines; the higher-level
	// methods cannot carry a per-request token, params and a body on any
	// method, which every call here needs.
	//lint:ignore SA1019 the one raw call of the client (see above)
	resp, err := c.api.RawRequestWithContext(ctx, r)
	if resp != nil {
		defer resp.Body.Close()
	}
	var re *api.ResponseError
	switch {
	case errors.As(err, &re):
		c.metrics.requests.WithLabelValues(op, strconv.Itoa(re.StatusCode)).Inc()
		for _, s := range notFound {
			if re.StatusCode == s {
				return false, nil
			}
		}
		if re.StatusCode == http.StatusForbidden {
			c.tokens.invalidate()
		}
		return false, &Error{Op: op, Status: re.StatusCode, Errors: re.Errors}
	case err != nil && resp != nil && resp.StatusCode >= 400:
		c.metrics.requests.WithLabelValues(op, strconv.Itoa(resp.StatusCode)).Inc()
		return false, &Error{Op: op, Status: resp.StatusCode, Err: err}
	case err != nil:
		c.metrics.requests.WithLabelValues(op, "unreachable").Inc()
		return false, &Error{Op: op, Err: scrub(err)}
	}
	c.metrics.requests.WithLabelValues(op, strconv.Itoa(resp.StatusCode)).Inc()
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return false, &Error{Op: op, Status: resp.StatusCode, Err: fmt.Errorf("decode answer: %w", err)}
		}
	}
	return true, nil
}

// scrub keeps a transport error's kind and address, nothing of the request.
func scrub(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("timeout: %w", err)
	}
	return err
}

// leaseIDPattern is a dynamic secret's lease id as Vault makes it:
// <mount path>/<backend path>/<24 base62 characters>, and .<namespace id>
// outside the root namespace. Nothing may be under it: revoke-force of it
// is that lease alone.
var leaseIDPattern = regexp.MustCompile(`^([A-Za-z0-9_.\-]+/)+[A-Za-z0-9]{24}(\.[A-Za-z0-9]+)?$`)

// ValidLeaseID reports whether id has the shape of one lease id (never a
// prefix).
func ValidLeaseID(id string) bool {
	if !leaseIDPattern.MatchString(id) {
		return false
	}
	for _, seg := range strings.Split(id, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// Revoke asks Vault to revoke one lease (sys/leases/revoke, synchronous):
// Vault runs the role's revocation statements and forgets the lease. A lease
// Vault does not know is success (Vault answers 204).
func (c *Client) Revoke(ctx context.Context, leaseID string) error {
	if leaseID == "" {
		return errors.New("vault revoke: empty lease id")
	}
	_, err := c.do(ctx, "revoke", http.MethodPut, "sys/leases/revoke", nil, map[string]any{"lease_id": leaseID}, nil)
	return err
}

// RevokeForce revokes exactly one lease ignoring backend errors
// (sys/leases/revoke-force/<lease id>, a sudo path). The id must be a full
// lease id, never a prefix; Vault revokes just that lease when it exists
// (vault/expiration.go revokePrefixCommon), and under <id>/ nothing exists.
func (c *Client) RevokeForce(ctx context.Context, leaseID string) error {
	if !ValidLeaseID(leaseID) {
		return fmt.Errorf("vault revoke-force: %q is not one lease id: refused", leaseID)
	}
	_, err := c.do(ctx, "revoke-force", http.MethodPut, "sys/leases/revoke-force/"+leaseID, nil, nil, nil)
	return err
}

// LeaseInfo is what sys/leases/lookup says of a lease.
type LeaseInfo = schemas.VaultLease

// LookupLease looks one lease up (sys/leases/lookup). found is false when
// Vault does not hold it (it answers 400 "invalid lease").
func (c *Client) LookupLease(ctx context.Context, leaseID string) (info LeaseInfo, found bool, err error) {
	var out struct {
		Data   LeaseInfo `json:"data"`
		Errors []string  `json:"errors"`
	}
	_, err = c.do(ctx, "lookup", http.MethodPut, "sys/leases/lookup", nil, map[string]any{"lease_id": leaseID}, &out)
	var ve *Error
	if errors.As(err, &ve) && ve.Status == http.StatusBadRequest && containsFold(ve.Errors, "invalid lease") {
		return LeaseInfo{}, false, nil
	}
	if err != nil {
		return LeaseInfo{}, false, err
	}
	return out.Data, true, nil
}

func containsFold(ss []string, w string) bool {
	for _, s := range ss {
		if strings.Contains(strings.ToLower(s), w) {
			return true
		}
	}
	return false
}

// ListLeases lists the lease ids Vault holds directly under prefix (LIST
// sys/leases/lookup/<prefix>, a sudo path), as full ids. None: Vault
// answers 404.
func (c *Client) ListLeases(ctx context.Context, prefix string) ([]string, error) {
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	var out struct {
		Data struct {
			Keys []string `json:"keys"`
		} `json:"data"`
	}
	ok, err := c.do(ctx, "list", http.MethodGet, "sys/leases/lookup/"+prefix, map[string]string{"list": "true"}, nil, &out, http.StatusNotFound)
	if err != nil || !ok {
		return nil, err
	}
	ids := make([]string, 0, len(out.Data.Keys))
	for _, k := range out.Data.Keys {
		if strings.HasSuffix(k, "/") {
			continue // a deeper prefix, not a lease
		}
		ids = append(ids, prefix+k)
	}
	return ids, nil
}

// AuditHash returns the HMAC device computes for input
// (sys/audit-hash/<device>), as its audit entries carry it.
func (c *Client) AuditHash(ctx context.Context, device, input string) (string, error) {
	var out struct {
		Data struct {
			Hash string `json:"hash"`
		} `json:"data"`
	}
	if _, err := c.do(ctx, "audit-hash", http.MethodPut, "sys/audit-hash/"+strings.Trim(device, "/"), nil, map[string]any{"input": input}, &out); err != nil {
		return "", err
	}
	if out.Data.Hash == "" {
		return "", &Error{Op: "audit-hash", Status: http.StatusOK, Err: errors.New("no hash in the answer")}
	}
	return out.Data.Hash, nil
}

// TokenInfo is what lookup-self or renew-self tells of leaseguard's token.
// It never holds the token.
type TokenInfo struct {
	Renewable bool
	// TTL left; 0 for a token that never expires.
	TTL time.Duration
	// CreationTTL is the TTL the token was created with (renewals ask for it
	// again).
	CreationTTL time.Duration
	// ExpireTime is zero for a token that never expires.
	ExpireTime time.Time
	Type       string
}

// LookupSelf reads leaseguard's token (auth/token/lookup-self).
func (c *Client) LookupSelf(ctx context.Context) (TokenInfo, error) {
	var out struct {
		Data struct {
			Renewable   bool    `json:"renewable"`
			TTL         int64   `json:"ttl"`
			CreationTTL int64   `json:"creation_ttl"`
			ExpireTime  *string `json:"expire_time"`
			Type        string  `json:"type"`
		} `json:"data"`
	}
	if _, err := c.do(ctx, "lookup-self", http.MethodGet, "auth/token/lookup-self", nil, nil, &out); err != nil {
		return TokenInfo{}, err
	}
	ti := TokenInfo{Renewable: out.Data.Renewable, TTL: time.Duration(out.Data.TTL) * time.Second,
		CreationTTL: time.Duration(out.Data.CreationTTL) * time.Second, Type: out.Data.Type}
	if out.Data.ExpireTime != nil && *out.Data.ExpireTime != "" {
		if t, err := time.Parse(time.RFC3339Nano, *out.Data.ExpireTime); err == nil {
			ti.ExpireTime = t
		}
	}
	if ti.ExpireTime.IsZero() && ti.TTL > 0 {
		ti.ExpireTime = c.now().Add(ti.TTL)
	}
	return ti, nil
}

// RenewSelf renews leaseguard's token (auth/token/renew-self) asking for
// increment, and returns what Vault granted.
func (c *Client) RenewSelf(ctx context.Context, increment time.Duration) (TokenInfo, error) {
	var out struct {
		Auth struct {
			LeaseDuration int64 `json:"lease_duration"`
			Renewable     bool  `json:"renewable"`
		} `json:"auth"`
	}
	body := map[string]any{}
	if increment > 0 {
		body["increment"] = strconv.FormatInt(int64(increment/time.Second), 10) + "s"
	}
	if _, err := c.do(ctx, "renew-self", http.MethodPut, "auth/token/renew-self", nil, body, &out); err != nil {
		return TokenInfo{}, err
	}
	ttl := time.Duration(out.Auth.LeaseDuration) * time.Second
	ti := TokenInfo{Renewable: out.Auth.Renewable, TTL: ttl}
	if ttl > 0 {
		ti.ExpireTime = c.now().Add(ttl)
	}
	return ti, nil
}

// LookupLiveLease is LookupLease for verify-before-destroy: whether Vault
// holds the lease, whether it is live now, and when it was issued.
func (c *Client) LookupLiveLease(ctx context.Context, leaseID string) (found, live bool, issued time.Time, err error) {
	info, found, err := c.LookupLease(ctx, leaseID)
	if err != nil || !found {
		return false, false, time.Time{}, err
	}
	return true, info.Live(c.now()), info.IssueTime, nil
}
