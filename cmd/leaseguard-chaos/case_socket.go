package main

import (
	"context"
	"fmt"
	"net"
	"time"
)

// vaultSocket is the Vault side of a socket audit device: one TCP
// connection at a time, one JSON entry per line.
type vaultSocket struct {
	addr string
	conn *net.TCPConn
}

func (v *vaultSocket) connect() error {
	c, err := net.DialTimeout("tcp", v.addr, 5*time.Second)
	if err != nil {
		return err
	}
	v.conn = c.(*net.TCPConn)
	return nil
}

// write sends the entries, each followed by a newline.
func (v *vaultSocket) write(lines [][]byte) error {
	if err := v.conn.SetWriteDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return err
	}
	for _, l := range lines {
		if _, err := v.conn.Write(append(append([]byte(nil), l...), '\n')); err != nil {
			return fmt.Errorf("socket write: %w", err)
		}
	}
	return nil
}

// close ends the connection as Vault does when it reconnects (FIN).
func (v *vaultSocket) close() error { return v.conn.Close() }

// reset ends the connection with a TCP reset, as a crashed Vault would.
func (v *vaultSocket) reset() error {
	_ = v.conn.SetLinger(0)
	return v.conn.Close()
}

// runSocket: entries come from the socket audit source. The writer closes
// its connection once the first user is dropped; entries issued while it
// is away are written after it reconnects; once leaseguard has them, the
// writer resets its idle connection and reconnects again with more. Every
// user must be dropped within 10 s of the reconnection that delivered its
// entry (or of its due time, if later).
func runSocket(ctx context.Context, e *caseEnv) (Observation, Goal, error) {
	goal := Goal{Recovery: 10 * time.Second, HeldBack: true}
	port, err := freePort()
	if err != nil {
		return Observation{}, goal, err
	}
	e.extraEnv["LEASEGUARD_AUDIT_SOCKET_ADDR"] = loopback(port)
	if err := e.start(); err != nil {
		return Observation{}, goal, err
	}
	v := &vaultSocket{addr: loopback(port)}
	if err := v.connect(); err != nil {
		return Observation{}, goal, err
	}
	restores := map[string]time.Time{}
	reconnected, err := e.socketGap(ctx, v, restores)
	if err != nil {
		return Observation{}, goal, err
	}
	if err := e.socketReset(ctx, v, restores); err != nil {
		return Observation{}, goal, err
	}
	obs, goal, err := e.settleAndObserve(ctx, time.Time{}, reconnected, goal)
	obs.Restores = restores
	_ = v.close()
	return obs, goal, err
}

// socketGap: a batch written, the connection closed at the first drop,
// users issued while away, written after the reconnection.
func (e *caseEnv) socketGap(ctx context.Context, v *vaultSocket, restores map[string]time.Time) (time.Time, error) {
	n, d := e.h.opt.users, e.h.opt.fault
	first := time.Now().Add(2 * time.Second)
	lines, err := e.issue(ctx, n/2, first, first.Add(d))
	if err != nil {
		return time.Time{}, err
	}
	if err := v.write(lines); err != nil {
		return time.Time{}, err
	}
	if err := e.waitFirstDrop(ctx, time.Minute); err != nil {
		return time.Time{}, err
	}
	if err := v.close(); err != nil {
		return time.Time{}, err
	}
	away := time.Now()
	held, err := e.issue(ctx, n/4, time.Now(), time.Now().Add(d/2))
	if err != nil {
		return time.Time{}, err
	}
	if err := hold(ctx, time.Until(away.Add(d))); err != nil {
		return time.Time{}, err
	}
	if err := v.connect(); err != nil {
		return time.Time{}, err
	}
	back := time.Now()
	for u := range e.users {
		restores[u] = back
	}
	return back, v.write(held)
}

// socketReset: once everything written is dropped, the idle connection is
// reset; the writer reconnects and writes the last batch.
func (e *caseEnv) socketReset(ctx context.Context, v *vaultSocket, restores map[string]time.Time) error {
	if err := e.waitDropped(ctx, len(e.users), settleTimeout); err != nil {
		return err
	}
	if err := v.reset(); err != nil {
		return err
	}
	if err := v.connect(); err != nil {
		return err
	}
	at := time.Now()
	lines, err := e.issue(ctx, e.h.opt.users-len(e.users), at.Add(time.Second), at.Add(3*time.Second))
	if err != nil {
		return err
	}
	for u := range e.users {
		if _, ok := restores[u]; !ok {
			restores[u] = at
		}
	}
	return v.write(lines)
}
