package ingest

// SetBeforeAck installs a hook that runs after a batch is committed and
// before it is acknowledged; an error simulates a crash at that point.
func (s *NATSSource) SetBeforeAck(f func() error) { s.beforeAck = f }
