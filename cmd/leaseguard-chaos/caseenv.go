package main

import (
	"context"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/leaseguard/leaseguard/internal/faultproxy"
	"github.com/leaseguard/leaseguard/internal/vaultsim"
)

// targetName is the name leaseguard gives the target database; evidence
// subjects are <targetName>/<user>.
const targetName = "chaos"

// expiryGrace is leaseguard's LEASEGUARD_EXPIRY_GRACE in every case.
const expiryGrace = time.Second

// caseEnv is one case's world: its schema, a proxy in front of each
// dependency leaseguard reaches, a nats-server, the leaseguard processes,
// and the users the case issued.
type caseEnv struct {
	h      *harness
	name   string
	schema string
	dir    string
	// prefix starts every user name of the case (Vault's template with
	// the display name c<sfx><n>), and the managed pattern.
	prefix string

	state, target *faultproxy.Proxy
	nats          *natsServer
	natsProxy     *faultproxy.Proxy
	// cluster, in a cluster case, is the JetStream cluster leaseguard
	// reaches directly (no proxy): nats then only holds the suite's
	// connection.
	cluster      *natsCluster
	procs        []*leaseguard
	metricsPorts map[int]int
	sim          *vaultsim.Sim
	// users: each issued user and when it became due.
	users map[string]time.Time
	// outcome is the revocation outcome every user must get (dropped).
	outcome string
	// fault is how long the case's fault holds (the -fault option unless
	// the case needs its own).
	fault time.Duration
	// settle, when set, replaces settleTimeout (a larger burst).
	settle time.Duration
	ready  *readyWatcher
	// extraEnv is added to every leaseguard of the case.
	extraEnv map[string]string
	closers  []func()
	note     string
	// extra are failures a case found on its way (added to the figures).
	extra []string
}

var caseSeq int

func (h *harness) newCaseEnv(ctx context.Context, c Case) (_ *caseEnv, err error) {
	name := c.Name
	caseSeq++
	// Vault's username template keeps 8 characters of the display name:
	// c, the run's suffix and one character per case.
	display := "c" + h.sfx + strconv.FormatInt(int64(caseSeq%36), 36)
	e := &caseEnv{h: h, name: name, schema: "chaos_" + h.sfx + "_" + strings.ReplaceAll(name, "-", "_"),
		prefix: "v-" + display + "-", metricsPorts: map[int]int{}, users: map[string]time.Time{}, outcome: "dropped", fault: h.opt.fault, extraEnv: map[string]string{}}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.dir, err = h.caseDir(name); err != nil {
		return nil, err
	}
	e.sim = &vaultsim.Sim{Pool: h.admin, Mount: "postgres", DisplayName: display, EntityID: "ent-" + display, RemoteAddress: "127.0.0.1"}
	if e.state, err = faultproxy.Start("127.0.0.1:0", h.dbAddr()); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { _ = e.state.Close() })
	if e.target, err = faultproxy.Start("127.0.0.1:0", h.dbAddr()); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { _ = e.target.Close() })
	start := e.startNATS
	if c.Cluster {
		start = e.startNATSCluster
	}
	if err := start(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// close stops everything the case started and removes its schema and users.
func (e *caseEnv) close() {
	if e.ready != nil {
		e.ready.stop()
	}
	for _, p := range e.procs {
		if p != nil {
			p.kill()
		}
	}
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	e.h.dropUsers(e.prefix)
	if !e.h.opt.keep {
		e.h.dropSchema(e.schema)
	}
}

// leaseguardEnv is the configuration of leaseguard number i of the case.
func (e *caseEnv) leaseguardEnv(i int) ([]string, error) {
	port, ok := e.metricsPorts[i]
	if !ok {
		var err error
		if port, err = freePort(); err != nil {
			return nil, err
		}
		e.metricsPorts[i] = port
	}
	env := map[string]string{
		"LEASEGUARD_DATABASE_URL":    e.h.urlVia(e.state.Addr()),
		"LEASEGUARD_DATABASE_SCHEMA": e.schema,
		"LEASEGUARD_NATS_URL":        e.natsURL(),
		"LEASEGUARD_TARGETS":         targetName + "=" + e.h.urlVia(e.target.Addr()),
		"LEASEGUARD_DATA_DIR":        filepath.Join(e.dir, "lg"+strconv.Itoa(i)),
		"LEASEGUARD_METRICS_ADDR":    loopback(port),
		"LEASEGUARD_LOG_FORMAT":      "json",
		"LEASEGUARD_LOG_LEVEL":       "info",
		"LEASEGUARD_INSTANCE":        "chaos-" + e.name,
		"LEASEGUARD_ROLES":           "ingest,detectors,revoker,relay",
		"LEASEGUARD_ENFORCE_SCOPE":   "*",
		// Only this case's users are leaseguard's to judge and drop.
		"LEASEGUARD_MANAGED_ROLE_PATTERN":       "^" + regexp.QuoteMeta(e.prefix),
		"LEASEGUARD_EXPIRY_GRACE":               expiryGrace.String(),
		"LEASEGUARD_DETECT_INTERVAL":            "250ms",
		"LEASEGUARD_OBSERVE_INTERVAL":           "1s",
		"LEASEGUARD_COMMAND_SIGNING_KEY":        e.h.signingKey,
		"LEASEGUARD_MAX_REVOCATIONS_PER_MINUTE": "100000",
		// A worker with work and no progress for this long makes /readyz
		// fail: well inside a fault, so the suite can see it.
		"LEASEGUARD_STALL_TIMEOUT": "5s",
	}
	for k, v := range e.extraEnv {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for _, k := range sortedKeys(env) {
		out = append(out, k+"="+env[k])
	}
	return out, nil
}

// natsURL is what leaseguard connects to: the proxy in front of the
// case's nats-server, or every node of its cluster.
func (e *caseEnv) natsURL() string {
	if e.cluster != nil {
		return e.cluster.urls()
	}
	return "nats://" + e.natsProxy.Addr()
}

// metricsURL is the base URL of leaseguard i's operations server.
func (e *caseEnv) metricsURL(i int) string {
	return "http://" + loopback(e.metricsPorts[i])
}

// hold keeps a fault in place for d, or until the run is interrupted.
func hold(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
