package daemon

import "fmt"

// Bounds on the connections each listener holds at once. Every connection
// takes a descriptor, and a process has a fixed number: the budget keeps
// the health and metrics listeners, which may face the network, from
// taking those the lookups need, and leaves the rest of the process
// (capture sockets, files, the runtime's own) its share.
const (
	reservedFDs     = 64   // for everything but the listeners' connections
	minConnFDs      = 32   // below this, toad refuses to start
	maxHealthConns  = 64   // probes dial anew each time: a few at once
	maxMetricsConns = 16   // scrapers
	maxAPIConns     = 1024 // per API listener: local clients and watchers
)

// ConnBudget is how many connections each listener may hold at once.
type ConnBudget struct {
	API     int // each API listener's
	Health  int
	Metrics int
}

// NewConnBudget splits limit descriptors (RLIMIT_NOFILE) between the
// listeners, after what the process needs besides: the capture's readers
// and reservedFDs. The health and metrics listeners get an eighth and a
// sixteenth of what is left, within their bounds; the API listeners share
// the rest.
func NewConnBudget(limit uint64, readers, apiListeners int) (ConnBudget, error) {
	reserved := reservedFDs + readers
	spare := int(min(limit, 1<<30)) - reserved
	if spare < minConnFDs {
		return ConnBudget{}, fmt.Errorf("the descriptor limit (RLIMIT_NOFILE) is %d: toad needs %d for itself and at least %d for connections; raise it (ulimit -n, systemd's LimitNOFILE=, the container runtime's nofile)", limit, reserved, minConnFDs)
	}
	b := ConnBudget{
		Health:  min(max(spare/8, 2), maxHealthConns),
		Metrics: min(max(spare/16, 2), maxMetricsConns),
	}
	b.API = min((spare-b.Health-b.Metrics)/max(apiListeners, 1), maxAPIConns)
	return b, nil
}
