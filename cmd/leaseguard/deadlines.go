package main

import (
	"time"

	"github.com/nats-io/nats.go"

	"github.com/leaseguard/leaseguard/internal/dbpool"
)

// DeadlineConfig bounds every call leaseguard makes to its dependencies, so
// that a dependency that hangs or goes silent (its connections open,
// nothing forwarded) costs a failed and retried pass, never a stuck part.
// Embedded in Config.
type DeadlineConfig struct {
	PassTimeout           time.Duration `env:"LEASEGUARD_PASS_TIMEOUT" envDefault:"10s" desc:"bound on one pass of a part (expiry detector and resolver, audit rules, observer's state-store work, a ledger commit, an audit file offset save, each state-store step of the revoker, the evidence relay and the alert dispatcher, the approval sweep): a pass that runs out is given up and tried again; also the deadline of any state-store or target call made without one"`
	DBConnectTimeout      time.Duration `env:"LEASEGUARD_DB_CONNECT_TIMEOUT" envDefault:"5s" desc:"one connection attempt to the state store or a target, TLS and authentication included (a connect_timeout in the URL wins)"`
	DBTCPUserTimeout      time.Duration `env:"LEASEGUARD_DB_TCP_USER_TIMEOUT" envDefault:"10s" desc:"a state-store or target connection whose sent data stays unacknowledged this long is closed (TCP_USER_TIMEOUT, Linux); keepalive probes every third of it, so a half-open connection dies within seconds"`
	DBIdleInTxTimeout     time.Duration `env:"LEASEGUARD_DB_IDLE_IN_TRANSACTION_TIMEOUT" envDefault:"20s" desc:"idle_in_transaction_session_timeout of every state-store and target connection: the server ends a session whose client vanished in the middle of a transaction, and frees its locks; at least LEASEGUARD_PASS_TIMEOUT"`
	StateStatementTimeout time.Duration `env:"LEASEGUARD_STATE_STATEMENT_TIMEOUT" envDefault:"30s" desc:"statement_timeout of state-store connections (migrations excepted)"`
	StateLockTimeout      time.Duration `env:"LEASEGUARD_STATE_LOCK_TIMEOUT" envDefault:"10s" desc:"lock_timeout of state-store connections (migrations excepted)"`
	RelayMaxBackoff       time.Duration `env:"LEASEGUARD_EVIDENCE_RELAY_MAX_BACKOFF" envDefault:"5s" desc:"longest wait of the evidence relay after a failed pass; a state store that answers again, or NATS reconnecting, ends the wait at once (1s to 1m)"`
	NATSTimeout           time.Duration `env:"LEASEGUARD_NATS_TIMEOUT" envDefault:"5s" desc:"connecting to a NATS server, and each JetStream request or publish made without a deadline of its own"`
	NATSPingInterval      time.Duration `env:"LEASEGUARD_NATS_PING_INTERVAL" envDefault:"5s" desc:"how often the NATS connection is pinged; after two unanswered pings it is closed and reconnected, so a dead server is noticed within three intervals"`
}

func (d DeadlineConfig) validate(bad func(name, format string, args ...any)) {
	for _, v := range []struct {
		name string
		d    time.Duration
	}{
		{"PASS_TIMEOUT", d.PassTimeout}, {"DB_CONNECT_TIMEOUT", d.DBConnectTimeout}, {"DB_TCP_USER_TIMEOUT", d.DBTCPUserTimeout},
		{"DB_IDLE_IN_TRANSACTION_TIMEOUT", d.DBIdleInTxTimeout}, {"STATE_STATEMENT_TIMEOUT", d.StateStatementTimeout},
		{"STATE_LOCK_TIMEOUT", d.StateLockTimeout}, {"NATS_TIMEOUT", d.NATSTimeout}, {"NATS_PING_INTERVAL", d.NATSPingInterval},
	} {
		if v.d < 100*time.Millisecond {
			bad(v.name, "below 100ms")
		}
	}
	if d.DBIdleInTxTimeout < d.PassTimeout {
		bad("DB_IDLE_IN_TRANSACTION_TIMEOUT", "below LEASEGUARD_PASS_TIMEOUT %s: the server would end leaseguard's own transactions",
			shortDuration(d.PassTimeout))
	}
	if d.RelayMaxBackoff < time.Second || d.RelayMaxBackoff > time.Minute {
		bad("EVIDENCE_RELAY_MAX_BACKOFF", "outside 1s..1m")
	}
}

// stateConn is the connection settings of the state store's pool.
func (c Config) stateConn() dbpool.Settings {
	return dbpool.Settings{
		ConnectTimeout: c.DBConnectTimeout, TCPUserTimeout: c.DBTCPUserTimeout, CallTimeout: c.PassTimeout,
		StatementTimeout: c.StateStatementTimeout, LockTimeout: c.StateLockTimeout, IdleInTransactionTimeout: c.DBIdleInTxTimeout,
	}
}

// targetSilenceSlack is how much longer than its statement_timeout a call
// to a target may wait for an answer before it is taken for silence.
const targetSilenceSlack = 2 * time.Second

// targetConn is the connection settings of the targets' pools: the drop
// transactions' statement and lock timeouts hold for every statement, and
// a call still unanswered once the server would have ended it is given up
// (the revoker's drop transaction has a long bound for its whole chunk,
// which must not hold one silent call).
func (c Config) targetConn() dbpool.Settings {
	return dbpool.Settings{
		ConnectTimeout: c.DBConnectTimeout, TCPUserTimeout: c.DBTCPUserTimeout, CallTimeout: c.PassTimeout,
		StatementTimeout: c.StatementTimeout, LockTimeout: c.LockTimeout, IdleInTransactionTimeout: c.DBIdleInTxTimeout,
		MaxCallTime: c.StatementTimeout + targetSilenceSlack,
	}
}

// natsDeadlines are the connection options that bound NATS: the connect
// timeout, and pings that notice a dead server.
func (d DeadlineConfig) natsDeadlines() []nats.Option {
	return []nats.Option{
		nats.Timeout(d.NATSTimeout),
		nats.PingInterval(d.NATSPingInterval),
		nats.MaxPingsOutstanding(2),
		// A write blocked on a full socket buffer (a server that stopped
		// reading) fails instead of waiting a minute.
		nats.FlusherTimeout(d.NATSTimeout),
	}
}
