package rollout

import (
	"context"
	"time"

	"github.com/leaseguard/leaseguard/schemas"
)

// RecordView is a policy version as the CLI and the admin API print it.
type RecordView struct {
	Version               int64                   `json:"version"`
	Kind                  string                  `json:"kind"`
	Scope                 string                  `json:"scope"`
	Modes                 map[string]schemas.Mode `json:"modes"`
	Actor                 string                  `json:"actor"`
	Reason                string                  `json:"reason"`
	RestoredVersion       int64                   `json:"restored_version,omitempty"`
	RestoredConfiguration bool                    `json:"restored_configuration,omitempty"`
	ChangedAt             time.Time               `json:"changed_at"`
	EvidenceID            string                  `json:"evidence_id"`
}

// View is r as printed.
func (r Record) View() RecordView {
	return RecordView{Version: r.Version, Kind: string(r.Kind), Scope: r.Scope.String(), Modes: modeMap(r.Modes),
		Actor: r.Actor, Reason: r.Reason, RestoredVersion: r.RestoredVersion, RestoredConfiguration: r.RestoredConfiguration,
		ChangedAt: r.ChangedAt.UTC(), EvidenceID: r.EvidenceID}
}

// SpecView is a policy that is not recorded (the configured one).
type SpecView struct {
	Scope string                  `json:"scope"`
	Modes map[string]schemas.Mode `json:"modes"`
}

// View is s as printed.
func (s Spec) View() SpecView { return SpecView{Scope: s.Scope.String(), Modes: modeMap(s.Modes)} }

// Overview is the policy in force, the configured one, whether they differ,
// and the latest versions.
type Overview struct {
	Current    RecordView   `json:"current"`
	Configured SpecView     `json:"configured"`
	Drift      bool         `json:"drift"`
	History    []RecordView `json:"history"`
}

// Overview reads the overview with the last limit versions.
func (p *Policies) Overview(ctx context.Context, limit int) (Overview, error) {
	hist, err := p.History(ctx, limit)
	if err != nil {
		return Overview{}, err
	}
	if len(hist) == 0 {
		return Overview{}, ErrNoPolicy
	}
	o := Overview{Current: hist[0].View(), Configured: p.configured.View(), Drift: !hist[0].Equal(p.configured),
		History: make([]RecordView, len(hist))}
	for i, r := range hist {
		o.History[i] = r.View()
	}
	return o, nil
}
