// Package alert turns findings into on-call alerts: Prometheus Alertmanager,
// PagerDuty Events API v2 and Slack-compatible incoming webhooks.
//
// The Dispatcher works from the state store only, on its own goroutines, so
// detection and revocation never wait for a sink:
//
//   - Intake (one process at a time, by the alert_intake_lock row) takes the
//     findings not yet seen (findings.alert_seen_at), in detection order.
//     A finding at or above MinSeverity joins the open alert of its rule,
//     database and user (its dedup key), or a resolved one that saw such a
//     finding within DedupWindow, or else raises a new alert with one
//     pending delivery per configured sink. The same pass resolves alerts:
//     those of RevocationRules when the user was dropped (a revocation with
//     outcome dropped or already_absent, finished no earlier than DedupWindow
//     before the alert's first finding), the others AutoResolve after their
//     last finding.
//   - Delivery runs one goroutine per sink (one process per sink at a time,
//     by its alert_sinks row). A delivery is pending while what the sink
//     acknowledged lags the alert's state; it is retried with exponential
//     backoff and jitter, and kept until it succeeds: a sink that is down
//     receives its backlog when it is back, and holds back no other sink.
package alert
