package bus

import "github.com/nats-io/nats-server/v2/server"

// Server exposes the embedded server to the tests, to check its listeners.
func (e *Embedded) Server() *server.Server { return e.srv }
