package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

// options are the command line.
type options struct {
	short        bool
	bin          string
	natsServer   string
	alertmanager string
	dbURL        string
	run          *regexp.Regexp
	workDir      string
	keep         bool
	// users per case and how long a fault holds.
	users int
	fault time.Duration
	// clusterUsers is the burst of the cluster case.
	clusterUsers int
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("leaseguard-chaos", flag.ContinueOnError)
	fs.BoolVar(&o.short, "short", false, "the short form (CI): fewer users, shorter faults, one kill -9")
	fs.StringVar(&o.bin, "leaseguard", "bin/leaseguard", "the leaseguard binary (make build)")
	fs.StringVar(&o.natsServer, "nats-server", "", "nats-server binary (default: what scripts/ensure-nats-server.sh prints)")
	fs.StringVar(&o.alertmanager, "alertmanager", "", "Alertmanager binary (default: prometheus-alertmanager on PATH; a local receiver if none)")
	fs.StringVar(&o.dbURL, "db", "", "PostgreSQL URL (default TEST_DATABASE_URL or the local test database)")
	pattern := fs.String("run", "", "run only the cases whose name matches this regular expression")
	fs.StringVar(&o.workDir, "workdir", "", "where logs and data go (default a temporary directory, removed unless -keep or a case failed)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory and the cases' schemas")
	fs.IntVar(&o.users, "users", 0, "users per case (default 1000, short 200)")
	fs.IntVar(&o.clusterUsers, "cluster-users", 0, "users falling due within 4 s in the cluster case (default 5000, short 300)")
	fs.DurationVar(&o.fault, "fault", 0, "how long a fault holds (default 20s, short 10s)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	re, err := regexp.Compile(*pattern)
	if err != nil {
		return o, fmt.Errorf("-run: %w", err)
	}
	o.run = re
	o.defaults()
	return o, o.findTools()
}

func (o *options) defaults() {
	if o.users == 0 {
		o.users = 1000
		if o.short {
			o.users = 200
		}
	}
	if o.clusterUsers == 0 {
		o.clusterUsers = 5000
		if o.short {
			o.clusterUsers = 300
		}
	}
	if o.fault == 0 {
		o.fault = 20 * time.Second
		if o.short {
			o.fault = 10 * time.Second
		}
	}
	if o.dbURL == "" {
		o.dbURL = os.Getenv("TEST_DATABASE_URL")
	}
	if o.dbURL == "" {
		o.dbURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
}

// findTools resolves the binaries the suite runs.
func (o *options) findTools() error {
	if _, err := os.Stat(o.bin); err != nil {
		return fmt.Errorf("leaseguard binary %s: %w (run make build, or pass -leaseguard)", o.bin, err)
	}
	if o.natsServer == "" {
		out, err := exec.Command("scripts/ensure-nats-server.sh").Output()
		if err != nil {
			return fmt.Errorf("scripts/ensure-nats-server.sh: %w (or pass -nats-server)", err)
		}
		o.natsServer = strings.TrimSpace(string(out))
	}
	if o.alertmanager == "" {
		if p, err := exec.LookPath("prometheus-alertmanager"); err == nil {
			o.alertmanager = p
		}
	}
	return nil
}
