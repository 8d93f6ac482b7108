package preload

import "sync/atomic"

// OnApplied sets a function the writer calls after each table event it
// has written.
func (s *SharedTable) OnApplied(fn func()) { s.do <- func() { s.applied = fn } }

// StopHeartbeat makes the table look like a crashed toad's: its last
// heartbeat long ago, and none after.
func (s *SharedTable) StopHeartbeat() {
	s.do <- func() {
		s.noBeat = true
		atomic.StoreUint64(s.u64(hdrHeartbeat), 1)
	}
}
