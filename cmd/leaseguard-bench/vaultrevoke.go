package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/leaseguard/leaseguard/internal/vaultdev"
)

// prefixRevoke is one sys/leases/revoke-prefix of Vault's, timed from the
// request until the last of its users is gone from the database.
type prefixRevoke struct {
	// revoke sends the request with sync set as given and returns when
	// Vault answered, or the request failed.
	revoke func(ctx context.Context, sync bool) error
	// left counts the users still in the database.
	left func(ctx context.Context) (int, error)
	n    int
	// wait bounds the whole wait (-vault-wait); poll is the interval.
	wait, poll time.Duration
	logf       func(format string, args ...any)
}

// prefixRevoked is what one revoke-prefix measured.
type prefixRevoked struct {
	elapsed  time.Duration // request → last user gone, or the wait spent
	answered time.Duration // request → Vault's answer (0: none)
	left     int           // users still there at the end
	async    bool          // sync=false was sent after the sync request failed
}

// rate is users gone per second.
func (o prefixRevoked) rate(n int) float64 {
	return float64(n-o.left) / o.elapsed.Seconds()
}

// run sends the request, with sync as the CLI's `vault lease revoke
// -prefix` does, and polls the database until the users are gone or the
// wait is over. A sync request Vault has not answered when the client
// gives up (its timeout, a cut connection) or that fails is not the end:
// Vault stops revoking when the request's client goes away (its request
// context ends with the HTTP request's), so the request is sent again
// with sync=false, which hands each remaining lease to Vault's expiration
// manager and returns at once, and the polling goes on. out is what was
// measured also when err says the wait ran out.
func (p prefixRevoke) run(ctx context.Context) (out prefixRevoked, err error) {
	start := time.Now()
	answer := p.send(ctx, true)
	deadline := start.Add(p.wait)
	lastLog := start
	for {
		left, err := p.left(ctx)
		if err != nil {
			return out, err
		}
		out.left, out.elapsed = left, time.Since(start)
		if left == 0 {
			break
		}
		if time.Since(lastLog) >= 10*time.Second {
			lastLog = time.Now()
			p.logf("revoke-prefix: %d of %d users left after %s", left, p.n, out.elapsed.Round(time.Second))
		}
		if time.Now().After(deadline) {
			return out, fmt.Errorf("%d of %d users still there %s after revoke-prefix", left, p.n, p.wait)
		}
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case err := <-answer:
			if answer, err = p.answered(ctx, &out, err, left, start); err != nil {
				return out, err
			}
		case <-time.After(p.poll):
		}
	}
	p.lastAnswer(ctx, &out, answer, start, deadline)
	return out, nil
}

// send sends the request in the background; the channel gets its result.
func (p prefixRevoke) send(ctx context.Context, sync bool) chan error {
	answer := make(chan error, 1)
	go func() { answer <- p.revoke(ctx, sync) }()
	return answer
}

// answered takes Vault's answer: the sync request's success is timed;
// its failure sends the request again with sync=false (once), whose
// channel is returned; a failed sync=false request ends the wait.
func (p prefixRevoke) answered(ctx context.Context, out *prefixRevoked, err error, left int, start time.Time) (chan error, error) {
	switch {
	case err == nil && !out.async:
		out.answered = time.Since(start)
		return nil, nil
	case err == nil:
		return nil, nil
	case out.async:
		return nil, fmt.Errorf("revoke-prefix with sync=false: %w", err)
	}
	p.logf("revoke-prefix: no answer after %s (%s), %d of %d users left: sent again with sync=false, polling on",
		time.Since(start).Round(time.Millisecond), short(err), left, p.n)
	out.async = true
	return p.send(ctx, false), nil
}

// lastAnswer waits, up to the deadline, for an answer still due once the
// users are gone (Vault answers after its own bookkeeping); the figure
// stands without it.
func (p prefixRevoke) lastAnswer(ctx context.Context, out *prefixRevoked, answer chan error, start, deadline time.Time) {
	if answer == nil {
		return
	}
	select {
	case err := <-answer:
		if err != nil {
			p.logf("revoke-prefix: the users are gone; Vault's answer: %s", short(err))
		} else if !out.async {
			out.answered = time.Since(start)
		}
	case <-ctx.Done():
	case <-time.After(time.Until(deadline)):
		p.logf("revoke-prefix: the users are gone; no answer from Vault within the wait")
	}
}

// describe says what was measured, for the log.
func (o prefixRevoked) describe(n int) string {
	how := fmt.Sprintf("answered after %s", o.answered.Round(time.Millisecond))
	switch {
	case o.async:
		how = "the sync request cut short, finished with sync=false"
	case o.answered == 0:
		how = "no answer"
	}
	if o.left > 0 {
		return fmt.Sprintf("revoke-prefix (%s): %d of %d users gone in %s: %.1f users/s (a lower bound)", how, n-o.left, n, o.elapsed.Round(time.Millisecond), o.rate(n))
	}
	return fmt.Sprintf("revoke-prefix (%s), last user gone after %s: %.1f users/s", how, o.elapsed.Round(time.Millisecond), o.rate(n))
}

// prefixRevoke is the revoke-prefix of prefix on v, its n users counted
// by left. The request's client waits -vault-client-timeout (default: the
// whole -vault-wait) for Vault's answer: the API client's own default of
// 60 s is shorter than Vault takes for 2,000 leases on a busy machine.
func (b *Bench) prefixRevoke(v *vaultServer, prefix string, n int, left func(context.Context) (int, error), r int) prefixRevoke {
	timeout := b.opt.vaultClientTimeout
	if timeout <= 0 {
		timeout = b.opt.vaultWait
	}
	return prefixRevoke{
		revoke: func(ctx context.Context, sync bool) error {
			// A client of its own: the server's shared one carries an HTTP
			// timeout, and the timeout is the API client's setting.
			c, err := vaultdev.NewClient(v.addr, v.token, &http.Client{Transport: v.hc.Transport})
			if err != nil {
				return err
			}
			c.SetClientTimeout(timeout)
			_, err = vaultdev.Call(ctx, c, http.MethodPut, "sys/leases/revoke-prefix/"+prefix, map[string]any{"sync": sync})
			return err
		},
		left: left, n: n, wait: b.opt.vaultWait, poll: vaultPoll,
		logf: func(format string, args ...any) { b.logf("vault: run %d: "+format, append([]any{r + 1}, args...)...) },
	}
}
