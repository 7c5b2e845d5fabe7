package bus

import (
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server exposes the embedded server to the tests, to check its listeners.
func (e *Embedded) Server() *server.Server { return e.srv }

// SetReplicaWait sets how long WaitReplicas waits at most, and returns
// the previous bound.
func SetReplicaWait(d time.Duration) time.Duration {
	old := replicaWait
	replicaWait = d
	return old
}
