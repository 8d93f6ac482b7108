package correlate

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Table maps connections to the real clients their proxies named. It is
// safe for concurrent use: Observe may be called from several capture
// workers while lookups run. It has no goroutines of its own: records bring
// its clock, and the owner calls Expire.
type Table struct {
	shards   []shard
	shift    uint // 64 - log2(len(shards))
	seed     seed
	cap      int64
	linger   int64
	idle     int64
	trust    Trust
	n        atomic.Int64 // entries
	nClosing atomic.Int64 // closing entries

	untrusted atomic.Uint64
	closed    atomic.Bool

	barrier  bool
	src      atomic.Pointer[Source]
	closing  context.Context // done once Close starts
	closeCtx context.CancelFunc
	attachState

	subsMu sync.Mutex
	subs   atomic.Pointer[[]*Subscription] // nil when there are none
}

// ErrClosed is returned, together with ErrNotFound, by lookups that were
// waiting when the table closed or that start waiting after it closed.
var ErrClosed = errors.New("table closed")

var errClosedNotFound = fmt.Errorf("%w: %w", ErrNotFound, ErrClosed)

// New returns an empty table configured by cfg. The index of every shard is
// allocated at once (about 11 bytes per entry of capacity); entries are
// allocated as they arrive and their memory is reused, never returned.
func New(cfg Config) (*Table, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = DefaultCapacity
	}
	if cfg.Shards == 0 {
		cfg.Shards = DefaultShards
	}
	if cfg.Linger == 0 {
		cfg.Linger = DefaultLinger
	}
	t := &Table{
		shards:  make([]shard, cfg.Shards),
		shift:   uint(64 - bits.TrailingZeros(uint(cfg.Shards))),
		cap:     int64(cfg.Capacity),
		linger:  int64(cfg.Linger),
		idle:    int64(cfg.IdleTimeout),
		barrier: cfg.Barrier,
	}
	t.attached = make(chan struct{})
	t.closing, t.closeCtx = context.WithCancel(context.Background())
	trust, err := NewTrust(cfg.Trusted)
	if err != nil {
		return nil, fmt.Errorf("invalid Config.Trusted%w", err)
	}
	t.trust = trust
	for i := range t.seed {
		t.seed[i] = rand.Uint64()
	}
	// Each shard may hold an eighth more than its share, so that the
	// unevenness of hashing never makes one evict before the table is full.
	fair := (cfg.Capacity + cfg.Shards - 1) / cfg.Shards
	hard := fair + fair/8 + 64
	for i := range t.shards {
		t.shards[i].init(hard)
	}
	return t, nil
}

func (t *Table) shardOf(h uint64) *shard { return &t.shards[h>>t.shift] }

func (t *Table) trusts(a netip.Addr) bool { return t.trust.Trusts(a) }

// Len returns how many entries the table holds.
func (t *Table) Len() int { return int(t.n.Load()) }

// Close ends every subscription and releases every waiting lookup, which
// returns ErrNotFound and ErrClosed. The table still answers
// Get, Lookup without waiting and Observe afterwards. Close is idempotent.
func (t *Table) Close() {
	if !t.closed.CompareAndSwap(false, true) {
		return
	}
	t.closeCtx()
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, ws := range s.waiters {
			for _, w := range ws {
				close(w.ch)
			}
		}
		s.waiters = nil
		s.mu.Unlock()
	}
	t.subsMu.Lock()
	subs := t.subs.Swap(nil)
	t.subsMu.Unlock()
	if subs != nil {
		for _, sub := range *subs {
			sub.end()
		}
	}
}
