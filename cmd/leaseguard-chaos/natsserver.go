package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/internal/faultproxy"
)

// natsServer is a nats-server process with JetStream on a fixed loopback
// port and store directory, so that a restart finds its streams again.
type natsServer struct {
	port int
	dir  string
	proc *proc
	// nc and js are the suite's own connection, straight to the server
	// (not through the proxy): the Vault shipper and the SIEM reader.
	nc *nats.Conn
	js jetstream.JetStream
}

// startNATS starts the case's nats-server, its proxy, and the suite's
// connection to it.
func (e *caseEnv) startNATS(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	e.nats = &natsServer{port: port, dir: filepath.Join(e.dir, "nats")}
	if err := e.restartNATS(); err != nil {
		return err
	}
	if e.natsProxy, err = faultproxy.Start("127.0.0.1:0", loopback(port)); err != nil {
		return err
	}
	e.closers = append(e.closers, func() { _ = e.natsProxy.Close() })
	opts := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond), nats.Timeout(5 * time.Second)}
	if e.nats.nc, err = nats.Connect("nats://"+loopback(port), opts...); err != nil {
		return err
	}
	e.closers = append(e.closers, func() { e.nats.nc.Close() })
	e.nats.js, err = jetstream.New(e.nats.nc)
	return err
}

// restartNATS starts the nats-server process (again, on the same port and
// store). The first start registers its kill at the case's end.
func (e *caseEnv) restartNATS() error {
	n := e.nats
	first := n.proc == nil
	args := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(n.port), "-js", "-sd", n.dir, "--server_name", "chaos"}
	p, err := startProc("nats-server", e.h.opt.natsServer, args, nil, filepath.Join(e.dir, "nats-server.log"), "Server is ready", 30*time.Second)
	if err != nil {
		return fmt.Errorf("nats-server: %w", err)
	}
	n.proc = p
	if first {
		e.closers = append(e.closers, func() { n.proc.kill() })
	}
	return nil
}

// publish stores audit entries in the audit stream, as a shipper would.
func (e *caseEnv) publish(ctx context.Context, lines [][]byte) error {
	for _, l := range lines {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := e.nats.js.Publish(pctx, "vault.audit.chaos", l)
		cancel()
		if err != nil {
			return fmt.Errorf("publish an audit entry: %w", err)
		}
	}
	return nil
}
