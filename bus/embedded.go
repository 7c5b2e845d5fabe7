package bus

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedConfig configures an in-process NATS server with JetStream.
type EmbeddedConfig struct {
	// StoreDir holds the JetStream store. Required.
	StoreDir string
	// Listen is the host:port where clients outside this process (a
	// shipper, a SIEM reader) connect; port 0 picks a free port. Empty: the
	// server opens no socket at all and only this process reaches it,
	// through InProcessConn.
	Listen string
	// Credentials authenticate every client, in-process ones included:
	// leaseguard's always, the shipper's and the SIEM's when Listen is set.
	// Required.
	Credentials *Credentials
	// Access is what the shipper and the SIEM reach; DefaultAccess when
	// empty. Used only with Listen.
	Access Access
	// StartTimeout bounds how long to wait for the server to accept clients.
	StartTimeout time.Duration
}

// Validate checks the configuration.
func (c EmbeddedConfig) Validate() error {
	if c.StoreDir == "" {
		return errors.New("embedded nats: store dir is required")
	}
	if _, ok := c.Credentials.User(UserLeaseguard); !ok {
		return errors.New("embedded nats: credentials of user leaseguard are required")
	}
	if c.Listen != "" {
		if _, _, err := splitListen(c.Listen); err != nil {
			return err
		}
	}
	return nil
}

// Embedded is a running in-process NATS server.
type Embedded struct {
	srv   *server.Server
	creds *Credentials
}

// StartEmbedded starts a NATS server with JetStream in this process. Every
// client must authenticate with an nkey of creds; without Listen the server
// has no listener and only this process can reach it.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts, err := embeddedOptions(cfg)
	if err != nil {
		return nil, err
	}
	if err := adoptGlobalStore(cfg.StoreDir); err != nil {
		return nil, err
	}
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
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
	return &Embedded{srv: srv, creds: cfg.Credentials}, nil
}

// embeddedOptions builds the server options: accounts and users from the
// credentials, then the listener (or none) and the store.
func embeddedOptions(cfg EmbeddedConfig) (*server.Options, error) {
	access := cfg.Access
	if access.EvidenceStream == "" {
		access = DefaultAccess()
	}
	accounts, err := accountsConfig(cfg.Credentials, access, cfg.Listen != "")
	if err != nil {
		return nil, err
	}
	opts := &server.Options{}
	if err := opts.ProcessConfigString(accounts); err != nil {
		return nil, fmt.Errorf("embedded nats: accounts: %w", err)
	}
	opts.ServerName = "leaseguard-embedded"
	opts.JetStream = true
	opts.StoreDir = cfg.StoreDir
	opts.NoSigs, opts.NoLog = true, true
	opts.HTTPPort = 0 // no monitoring endpoint
	if cfg.Listen == "" {
		opts.DontListen = true
	} else if opts.Host, opts.Port, err = splitListen(cfg.Listen); err != nil {
		return nil, err
	}
	return opts, nil
}

// ValidateListen checks a listen address as EmbeddedConfig.Listen takes it.
func ValidateListen(listen string) error {
	_, _, err := splitListen(listen)
	return err
}

func splitListen(listen string) (string, int, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("embedded nats: listen address %q: %w", listen, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("embedded nats: listen address %q: bad port", listen)
	}
	if host == "" {
		return "", 0, fmt.Errorf("embedded nats: listen address %q: name the host (0.0.0.0 for every interface)", listen)
	}
	if p == 0 {
		p = -1 // the server's "pick a free port"
	}
	return host, p, nil
}

// adoptGlobalStore moves the streams an earlier version kept in the
// server's global account into leaseguard's account, where they are now:
// JetStream keeps each account's streams in a directory of its name.
// Without this an upgrade would start with empty streams and strand, among
// others, pending revocation commands.
func adoptGlobalStore(storeDir string) error {
	old := filepath.Join(storeDir, server.JetStreamStoreDir, "$G")
	next := filepath.Join(storeDir, server.JetStreamStoreDir, AccountLeaseguard)
	if _, err := os.Stat(old); err != nil {
		return nil // nothing to adopt
	}
	if _, err := os.Stat(next); err == nil {
		return nil // already adopted, or both exist: leave them for an operator
	}
	if err := os.Rename(old, next); err != nil {
		return fmt.Errorf("embedded nats: move streams of the global account to %s: %w", AccountLeaseguard, err)
	}
	return nil
}

// InProcessConn opens a connection to the server without a socket; with
// nats.InProcessServer(e) a client connects through it.
func (e *Embedded) InProcessConn() (net.Conn, error) { return e.srv.InProcessConn() }

// ConnectOptions are what leaseguard connects with: in-process, as user
// leaseguard.
func (e *Embedded) ConnectOptions() ([]nats.Option, error) {
	lg, _ := e.creds.User(UserLeaseguard)
	auth, err := lg.Option()
	if err != nil {
		return nil, err
	}
	return []nats.Option{nats.InProcessServer(e), auth}, nil
}

// URL is the client URL of the listener, or "" when the server has none.
func (e *Embedded) URL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// Shutdown stops the server and waits for it; safe to call twice.
func (e *Embedded) Shutdown() {
	if e == nil || e.srv == nil {
		return
	}
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}
