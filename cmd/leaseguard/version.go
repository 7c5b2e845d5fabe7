package main

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
)

// Stamped by the Makefile with -ldflags -X (see `make build`): version from
// git describe, commit and the commit's date, so a rebuild of the same
// commit is the same binary. Empty: read from the Go build information.
var (
	version   string
	commit    string
	buildDate string
)

// buildInfo is what this binary is; version -o json prints it.
type buildInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	BuildDate string `json:"build_date"`
	GoVersion string `json:"go_version"`
}

const unknownBuild = "unknown"

// currentBuild is the stamped build, completed from the Go build
// information (module version, VCS revision and time) where a value was
// not stamped: `go build` and `go install` stamp those themselves.
func currentBuild() buildInfo {
	bi, _ := debug.ReadBuildInfo()
	return resolveBuild(buildInfo{Version: version, Commit: commit, BuildDate: buildDate}, bi)
}

func resolveBuild(b buildInfo, bi *debug.BuildInfo) buildInfo {
	b.GoVersion = runtime.Version()
	if bi != nil {
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && b.Commit == "":
				b.Commit = s.Value[:min(len(s.Value), 7)]
			case s.Key == "vcs.time" && b.BuildDate == "":
				b.BuildDate = s.Value
			}
		}
	}
	for _, v := range []*string{&b.Version, &b.Commit, &b.BuildDate} {
		if *v == "" {
			*v = unknownBuild
		}
	}
	return b
}

func versionText(b buildInfo) string {
	return fmt.Sprintf("leaseguard %s\ncommit %s, built %s with %s\n", b.Version, b.Commit, b.BuildDate, b.GoVersion)
}

func (m *Main) versionCommand() *cobra.Command {
	var out outputFormat
	cmd := &cobra.Command{
		Use:   "version",
		Short: "print the version, commit and build date",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			b := currentBuild()
			if out == outputJSON {
				return writeJSON(m.Stdout, b)
			}
			_, err := fmt.Fprint(m.Stdout, versionText(b))
			return err
		},
	}
	outputFlag(cmd, &out, "")
	return cmd
}

// registerBuildInfo adds leaseguard_build_info (always 1; the labels say
// which build runs) to reg.
func registerBuildInfo(reg prometheus.Registerer) error {
	b := currentBuild()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "leaseguard_build_info",
		Help: "The build of leaseguard that runs: version, commit, build date and Go version (always 1).",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit,
			"build_date": b.BuildDate, "go_version": b.GoVersion},
	})
	g.Set(1)
	if err := reg.Register(g); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
		return err
	}
	return nil
}
