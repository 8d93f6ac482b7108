package preload

import "sync/atomic"

// OnApplied sets a function called after each table event the shared
// table has written.
func (s *SharedTable) OnApplied(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied = fn
}

// StopHeartbeat makes the table look like a crashed toad's: its last
// heartbeat long ago, and none after.
func (s *SharedTable) StopHeartbeat() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noBeat = true
	atomic.StoreUint64(s.u64(hdrHeartbeat), 1)
}
