package vaultdev

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/hashicorp/vault/api"
)

// NewClient returns an API client for the server at addr (http://host:port)
// acting with token; hc carries timeouts and connection limits.
func NewClient(addr, token string, hc *http.Client) (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = addr
	if hc != nil {
		cfg.HttpClient = hc
	}
	// The callers retry what they mean to retry.
	cfg.MaxRetries = 0
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	c.SetToken(token)
	return c, nil
}

// Call sends one request: GET reads, DELETE deletes, any other method
// writes body. The answer is the response as a map (nil when Vault sent
// no body).
func Call(ctx context.Context, c *api.Client, method, path string, body map[string]any) (map[string]any, error) {
	var s *api.Secret
	var err error
	switch method {
	case http.MethodGet:
		s, err = c.Logical().ReadWithContext(ctx, path)
	case http.MethodDelete:
		s, err = c.Logical().DeleteWithContext(ctx, path)
	default:
		s, err = c.Logical().WriteWithContext(ctx, path, body)
	}
	if err != nil {
		return nil, fmt.Errorf("vault %s %s: %w", method, path, err)
	}
	if s == nil {
		return nil, nil
	}
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// StatusCode is the HTTP status of a Vault error answer in err's chain,
// or 0.
func StatusCode(err error) int {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// Errors are the messages of a Vault error answer in err's chain.
func Errors(err error) []string {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.Errors
	}
	return nil
}
