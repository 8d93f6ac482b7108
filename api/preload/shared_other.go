//go:build !linux

package preload

import (
	"errors"

	"github.com/toad-project/toad/correlate"
)

// Source is what a SharedTable mirrors: *correlate.Table is one.
type Source interface {
	Subscribe(buffer int) *correlate.Subscription
	Range(fn func(correlate.Entry) bool)
}

// SharedTable needs Linux (memfd); elsewhere NewSharedTable fails and
// libraries ask over the socket.
type SharedTable struct{}

// NewSharedTable fails: shared tables need Linux.
func NewSharedTable(Source, int) (*SharedTable, error) {
	return nil, errors.New("preload: shared tables need Linux")
}

func (s *SharedTable) withRights(func(oob []byte)) bool { return false }
func (s *SharedTable) Size() int                        { return 0 }

// SharedStats are a SharedTable's counters.
type SharedStats struct{ Entries, Published, Removed, Full uint64 }

func (s *SharedTable) Stats() SharedStats { return SharedStats{} }
func (s *SharedTable) Close() error       { return nil }
