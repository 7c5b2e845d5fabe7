package detectors

import (
	"fmt"

	"github.com/leaseguard/leaseguard/observer/observed"
)

// engineMySQL is observed.Pass.Engine for MySQL and MariaDB targets.
const engineMySQL = "mysql"

// sessionStartUnknown says why a MySQL session's facts do not tell whether
// it started before or after a lease's end.
const sessionStartUnknown = "unknown: MySQL keeps no connection start; backend_start is the server's start"

// forMySQL restates a verdict of a MySQL or MariaDB pass in the server's
// terms. The rules are the same; what differs is what the server shows: a
// session's backend_start is the server's start (a lower bound of the
// session's), so no session is said to have started before or after a
// lease's end; and a ghost is a processlist connection whose user has no
// account left in mysql.user (the processlist keeps the name).
func forMySQL(v *verdict) {
	if s, ok := v.facts["sessions"].([]map[string]any); ok {
		for _, m := range s {
			if _, judged := m["started"]; judged {
				m["started"] = "unknown"
			}
		}
		v.facts["session_start"] = sessionStartUnknown
	}
	if v.ghost == nil {
		return
	}
	s := v.ghost
	v.facts["session_start"] = sessionStartUnknown
	v.summary = fmt.Sprintf("connection %d of user %s runs on with no account: the user was dropped under it (DROP USER leaves its sessions)",
		s.PID, s.FormerUser)
	if v.corroboration != nil {
		v.corroboration.Detail = fmt.Sprintf("information_schema.PROCESSLIST shows connection %d running as user %q, which no account in mysql.user has",
			s.PID, s.FormerUser)
	}
}

// adaptEngine restates every verdict of the pass for its engine.
func adaptEngine(p *observed.Pass, vs []*verdict) {
	if p.Engine != engineMySQL {
		return
	}
	for _, v := range vs {
		forMySQL(v)
	}
}
