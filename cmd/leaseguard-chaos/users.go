package main

import (
	"context"
	"time"
)

// vaultValidityPad is what Vault's PostgreSQL plugin (and vaultsim) adds
// to a lease's expiry in VALID UNTIL.
const vaultValidityPad = 5 * time.Second

// issue creates n users as Vault would, their rolvaliduntil spread evenly
// from first to last, and returns the audit entries of their issue. Each
// user is due (expected dropped) at its rolvaliduntil plus the grace.
func (e *caseEnv) issue(ctx context.Context, n int, first, last time.Time) ([][]byte, error) {
	var lines [][]byte
	step := time.Duration(0)
	if n > 1 {
		step = last.Sub(first) / time.Duration(n-1)
	}
	for i := range n {
		validUntil := first.Add(time.Duration(i) * step)
		ttl := time.Until(validUntil) - vaultValidityPad
		c, l, err := e.sim.Issue(ctx, "app", ttl)
		if err != nil {
			return nil, err
		}
		e.users[c.Username] = c.Expire.Add(vaultValidityPad + expiryGrace)
		lines = append(lines, l...)
	}
	return lines, nil
}

// issueAndPublish issues n users as issue does and publishes their entries.
func (e *caseEnv) issueAndPublish(ctx context.Context, n int, first, last time.Time) error {
	lines, err := e.issue(ctx, n, first, last)
	if err != nil {
		return err
	}
	return e.publish(ctx, lines)
}

// chunks splits lines into k nearly equal parts (fewer if there are fewer
// lines), keeping each request/response pair together.
func chunks(lines [][]byte, k int) [][][]byte {
	pairs := len(lines) / 2
	if k > pairs {
		k = pairs
	}
	if k < 1 {
		return [][][]byte{lines}
	}
	var out [][][]byte
	for i := range k {
		lo, hi := 2*(i*pairs/k), 2*((i+1)*pairs/k)
		if i == k-1 {
			hi = len(lines)
		}
		out = append(out, lines[lo:hi])
	}
	return out
}
