// Package bus connects leaseguard to NATS JetStream: to a user's cluster by
// URL, or to a server embedded in the process for a single-node install, the
// demo and the tests. It also declares the streams leaseguard relies on.
package bus

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedConfig configures an in-process NATS server with JetStream.
type EmbeddedConfig struct {
	// StoreDir holds the JetStream store. Required.
	StoreDir string
	// Host and Port to listen on; Port -1 picks a random free port.
	Host string
	Port int
	// StartTimeout bounds how long to wait for the server to accept clients.
	StartTimeout time.Duration
}

// Validate checks the configuration.
func (c EmbeddedConfig) Validate() error {
	if c.StoreDir == "" {
		return errors.New("embedded nats: store dir is required")
	}
	return nil
}

// Embedded is a running in-process NATS server.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts a NATS server with JetStream in this process. It
// listens on loopback unless Host says otherwise.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	host := cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := cfg.Port
	if port == 0 {
		port = -1
	}
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	opts := &server.Options{
		ServerName: "leaseguard-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		// Without this a test binary's flags would be parsed by the server.
		HTTPPort: 0,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(timeout) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after %s", timeout)
	}
	return &Embedded{srv: srv}, nil
}

// URL is the client URL of the embedded server.
func (e *Embedded) URL() string { return e.srv.ClientURL() }

// Shutdown stops the server and waits for it; safe to call twice.
func (e *Embedded) Shutdown() {
	if e == nil || e.srv == nil {
		return
	}
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}
