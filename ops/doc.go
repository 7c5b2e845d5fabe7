// Package ops serves what operators and orchestrators poll: Prometheus
// metrics on /metrics, liveness on /livez (and /healthz, its older name)
// and readiness on /readyz.
//
// Readiness is the dependency checks plus the workers' progress: a worker
// that has had work without progress for StallTimeout makes /readyz fail,
// naming it. Liveness is the workers alone: one that has held a unit of
// work for WedgeTimeout without progress or a retry is blocked in a call,
// and /livez fails so that an orchestrator restarts the process. A
// dependency that is down makes workers stall, never wedge: restarting
// would not bring it back (see package progress).
package ops
