// Package operator carries out the revocations a person or an automation
// asks for — a leaked credential, an incident, break-glass — as opposed to
// those the detectors raise. It is shared by the `leaseguard revoke` CLI
// and the admin API: both turn a Request into a Plan (which users, why,
// whether a guard will refuse them), show or confirm it, and Execute it.
//
// Execute signs one command per planned user and runs them through
// revoker.Executor directly against the target databases, the path the
// JetStream consumer uses too: the same signature check, claim, guards,
// blast-radius limit (bypassed only by Emergency) and recording of outcome
// and evidence in one state-store transaction. Nothing here needs NATS:
// evidence goes to the outbox, and the relay publishes it when it can.
package operator
