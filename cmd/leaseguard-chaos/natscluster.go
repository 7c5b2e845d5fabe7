package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// clusterSize is the number of nats-server processes of a cluster case:
// the smallest JetStream cluster that keeps a quorum (2 of 3) with one
// server down.
const clusterSize = 3

// natsNode is one nats-server of a cluster, on fixed client and route
// ports and its own store directory, so that a restart rejoins with its
// streams.
type natsNode struct {
	name        string
	port, route int
	conf        string
	proc        *proc
}

// natsCluster is the case's JetStream cluster.
type natsCluster struct {
	nodes []*natsNode
}

// urls is every node's client URL, comma-separated, as LEASEGUARD_NATS_URL
// takes them.
func (c *natsCluster) urls() string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, "nats://"+loopback(n.port))
	}
	return strings.Join(out, ",")
}

// node finds a node by its server name.
func (c *natsCluster) node(name string) *natsNode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// startNATSCluster starts clusterSize nats-server processes routed to one
// another, the suite's connection to all of them, and waits until
// JetStream answers (a meta leader is elected).
func (e *caseEnv) startNATSCluster(ctx context.Context) error {
	c := &natsCluster{}
	for i := range clusterSize {
		port, err := freePort()
		if err != nil {
			return err
		}
		route, err := freePort()
		if err != nil {
			return err
		}
		c.nodes = append(c.nodes, &natsNode{name: fmt.Sprintf("n%d", i+1), port: port, route: route})
	}
	e.cluster = c
	e.closers = append(e.closers, func() {
		for _, n := range c.nodes {
			if n.proc != nil {
				n.proc.kill()
			}
		}
	})
	for _, n := range c.nodes {
		if err := e.writeNodeConf(n); err != nil {
			return err
		}
		if err := e.startNode(n); err != nil {
			return err
		}
	}
	opts := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond), nats.Timeout(5 * time.Second)}
	nc, err := nats.Connect(c.urls(), opts...)
	if err != nil {
		return err
	}
	e.nats = &natsServer{nc: nc}
	e.closers = append(e.closers, nc.Close)
	if e.nats.js, err = jetstream.New(nc); err != nil {
		return err
	}
	return poll(ctx, "JetStream cluster answering", time.Minute, func(ctx context.Context) (bool, string, error) {
		_, err := e.nats.js.AccountInfo(ctx)
		return err == nil, "", err
	})
}

// writeNodeConf writes node n's configuration: JetStream on its own store,
// the cluster's routes to every node (a route to itself is ignored).
func (e *caseEnv) writeNodeConf(n *natsNode) error {
	var routes []string
	for _, o := range e.cluster.nodes {
		routes = append(routes, "nats://"+loopback(o.route))
	}
	dir := filepath.Join(e.dir, "nats-"+n.name)
	conf := fmt.Sprintf(`server_name: %s
listen: %q
jetstream { store_dir: %q }
cluster {
  name: chaos
  listen: %q
  routes: [%s]
}
`, n.name, loopback(n.port), dir, loopback(n.route), `"`+strings.Join(routes, `", "`)+`"`)
	n.conf = filepath.Join(e.dir, "nats-"+n.name+".conf")
	return os.WriteFile(n.conf, []byte(conf), 0o600)
}

// startNode starts (or restarts) node n on its configuration.
func (e *caseEnv) startNode(n *natsNode) error {
	p, err := startProc("nats-server "+n.name, e.h.opt.natsServer, []string{"-c", n.conf},
		nil, filepath.Join(e.dir, "nats-server-"+n.name+".log"), "Server is ready", 30*time.Second)
	if err != nil {
		return fmt.Errorf("nats-server %s: %w", n.name, err)
	}
	n.proc = p
	return nil
}

// streamLeader names the server that leads stream's replicas.
func (e *caseEnv) streamLeader(ctx context.Context, stream string) (string, error) {
	s, err := e.nats.js.Stream(ctx, stream)
	if err != nil {
		return "", err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return "", err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", fmt.Errorf("stream %s has no leader", stream)
	}
	return info.Cluster.Leader, nil
}

// replicasCurrent waits until every replica of stream is current again
// (a restarted node has caught up), and says how long that took.
func (e *caseEnv) replicasCurrent(ctx context.Context, stream string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	err := poll(ctx, "stream "+stream+" replicas current", timeout, func(ctx context.Context) (bool, string, error) {
		s, err := e.nats.js.Stream(ctx, stream)
		if err != nil {
			return false, "", err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return false, "", err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return false, "no leader", nil
		}
		current := 1
		for _, r := range info.Cluster.Replicas {
			if r.Current && !r.Offline {
				current++
			}
		}
		return current == clusterSize, fmt.Sprintf("%d of %d current", current, clusterSize), nil
	})
	return time.Since(start), err
}
