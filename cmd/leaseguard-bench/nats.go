package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leaseguard/leaseguard/bus"
	"github.com/leaseguard/leaseguard/ingest"
	"github.com/leaseguard/leaseguard/store"
)

// natsScenario: end-to-end ingest from an embedded JetStream server (as a
// single-node `leaseguard run` has it) into the ledger.
func (b *Bench) natsScenario(ctx context.Context) error {
	if err := b.e2eScenario(ctx, "nats", func(ctx context.Context, r int, burst, paced *corpus) (e2eRun, error) {
		return b.natsRun(ctx, fmt.Sprintf("nats%d", r+1), burst, paced, benchRoleTTLs(true))
	}); err != nil {
		return err
	}
	return b.unresolvedRun(ctx)
}

// unresolvedRun is one run with the default configuration's handling of
// an untuned mount: its leases (HMAC'd usernames, no LEASEGUARD_ROLE_TTLS)
// never get an expiry; each is attempted once and then only every
// store.ExpiryRetryAfter, so they must not slow ingest. A quarter of the
// entries is enough to see the rate.
func (b *Bench) unresolvedRun(ctx context.Context) error {
	c := generateCorpus(max(b.opt.e2eEntries/4, 1000), 4)
	res, err := b.natsRun(ctx, "natsunres", c, nil, benchRoleTTLs(false))
	if err != nil {
		return fmt.Errorf("run without role TTLs for the HMAC'd mount: %w", err)
	}
	b.logf("nats: without role TTLs for the HMAC'd mount: %s/s (%d ledger transactions of %.1f ms mean; expiry resolver: %d passes, %.1f s, %d leases resolved)",
		thousands(int64(res.rate)), res.batches, res.applyMS, res.resolverPasses, res.resolverSeconds, res.resolverResolved)
	b.results.add(row{figure: "  same, HMAC'd mount without role TTLs", value: res.rate, baseline: nanF, unit: "/s", target: "≥20,000/s", verdict: verdict(res.rate >= 20000)})
	b.results.set("e2e_nats_unresolved_hmac_entries_per_sec", res.rate)
	b.results.note("e2e nats, HMAC'd mount without role TTLs (one run of %d entries): the leases of the mount whose usernames are HMAC'd never get an expiry; "+
		"the resolver (kicked after every ingest batch that issued) attempts each once, then again only after %s or a new event for it", len(c.lines), store.ExpiryRetryAfter)
	return nil
}

const benchAuditSubject = "vault.audit.bench"

func (b *Bench) natsRun(ctx context.Context, name string, burst, paced *corpus, ttls store.RoleTTLs) (e2eRun, error) {
	dir, err := os.MkdirTemp("", "leaseguard-bench-nats-")
	if err != nil {
		return e2eRun{}, err
	}
	defer os.RemoveAll(dir)
	srv, err := startBenchNATS(dir)
	if err != nil {
		return e2eRun{}, err
	}
	defer srv.Shutdown()

	rig, err := b.newIngestRig(ctx, b.schemaName(name), ttls)
	if err != nil {
		return e2eRun{}, err
	}
	defer rig.close(b)

	// The source's connection, in-process as in run; the publisher has its
	// own, over the listener as Vault's shipper would.
	own, err := srv.ConnectOptions()
	if err != nil {
		return e2eRun{}, err
	}
	nc, err := nats.Connect("", append(own, nats.Name("leaseguard"))...)
	if err != nil {
		return e2eRun{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return e2eRun{}, err
	}
	src, err := ingest.NewNATSSource(ingest.DefaultNATSConfig(), js, rig.proc, rig.metrics, slog.New(slog.DiscardHandler))
	if err != nil {
		return e2eRun{}, err
	}
	if _, err := src.EnsureStreams(ctx); err != nil {
		return e2eRun{}, err
	}
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = src.Run(sctx) })
	defer func() {
		cancel()
		wg.Wait()
		if runErr != nil {
			b.logf("nats: source: %v", runErr)
		}
	}()

	pc, err := srv.connectAs(bus.UserShipper, nats.Name("bench-publisher"))
	if err != nil {
		return e2eRun{}, err
	}
	defer pc.Close()
	pjs, err := jetstream.New(pc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return e2eRun{}, err
	}
	publish := func(ctx context.Context, c *corpus, lo, hi int) error {
		const window = 1000
		for i := lo; i < hi; i += window {
			for j := i; j < min(i+window, hi); j++ {
				c.stampTime(j, time.Now())
				if _, err := pjs.PublishAsync(benchAuditSubject, c.lines[j]); err != nil {
					return err
				}
			}
			select {
			case <-pjs.PublishAsyncComplete():
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(30 * time.Second):
				return fmt.Errorf("publish acks pending after 30s")
			}
		}
		return nil
	}
	// Warm up: the consumer has pulled and committed one entry.
	warm := generateCorpus(1, 99)
	if err := publish(ctx, warm, 0, 1); err != nil {
		return e2eRun{}, err
	}
	if _, err := rig.waitProcessed(ctx, 1, 30*time.Second); err != nil {
		return e2eRun{}, fmt.Errorf("warm-up: %w", err)
	}
	return b.e2eRunOnce(ctx, rig, burst, paced, publish)
}

// benchNATS is an embedded JetStream server listening on loopback, as
// `leaseguard run` has it with LEASEGUARD_NATS_LISTEN: every client
// authenticates with an nkey kept in the store's directory.
type benchNATS struct {
	*bus.Embedded
	creds *bus.Credentials
}

func startBenchNATS(dir string) (*benchNATS, error) {
	creds, err := bus.LoadOrCreateCredentials(filepath.Join(dir, "credentials"), bus.UserLeaseguard, bus.UserShipper, bus.UserSIEM)
	if err != nil {
		return nil, err
	}
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: filepath.Join(dir, "store"), Listen: "127.0.0.1:0", Credentials: creds})
	if err != nil {
		return nil, err
	}
	return &benchNATS{Embedded: e, creds: creds}, nil
}

// connectAs connects over the listener as user.
func (s *benchNATS) connectAs(user string, opts ...nats.Option) (*nats.Conn, error) {
	cr, _ := s.creds.User(user)
	auth, err := cr.Option()
	if err != nil {
		return nil, err
	}
	return nats.Connect(s.URL(), append(opts, auth)...)
}

// seedFile is the nkey seed file of user, for a leaseguard child process.
func (s *benchNATS) seedFile(user string) string {
	cr, _ := s.creds.User(user)
	return cr.SeedFile
}
