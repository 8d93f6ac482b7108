package correlate

import (
	"slices"
	"sync"
	"sync/atomic"
)

// DefaultSubscriptionBuffer is the buffer of a subscription asked for with
// no buffer.
const DefaultSubscriptionBuffer = 1024

// Subscription is a stream of the table's events: EventOpen when a TOA
// creates an entry, EventClose when an entry begins closing (or a new
// connection takes its key). Events are delivered without blocking: when
// the buffer is full the event is dropped for this subscriber and counted
// by Missed. Methods are safe for concurrent use.
type Subscription struct {
	t      *Table
	ch     chan Event   // nil for a follower
	fn     func(*Event) // a follower's function
	mu     sync.RWMutex // held for reading while sending, for writing to close ch
	ended  bool
	missed atomic.Uint64
}

// Subscribe starts a subscription buffering up to buffer events (0 or less
// means DefaultSubscriptionBuffer). On a closed table the subscription is
// already ended.
func (t *Table) Subscribe(buffer int) *Subscription {
	if buffer <= 0 {
		buffer = DefaultSubscriptionBuffer
	}
	return t.add(&Subscription{t: t, ch: make(chan Event, buffer)})
}

// Follow starts a subscription that calls fn with each event rather than
// buffer it: on the goroutine that changes the table, under the lock of
// the event's shard, so that fn misses none and sees each key's events in
// order, and no goroutine is woken to receive them. fn must be quick and
// must not call the table. Once Close has returned, fn is not called
// again. A follower's Events is nil.
func (t *Table) Follow(fn func(*Event)) *Subscription {
	return t.add(&Subscription{t: t, fn: fn})
}

func (t *Table) add(sub *Subscription) *Subscription {
	t.subsMu.Lock()
	defer t.subsMu.Unlock()
	if t.closed.Load() {
		sub.end()
		return sub
	}
	var subs []*Subscription
	if old := t.subs.Load(); old != nil {
		subs = slices.Clone(*old)
	}
	subs = append(subs, sub)
	t.subs.Store(&subs)
	return sub
}

// Events returns the channel of events, closed when the subscription ends.
func (s *Subscription) Events() <-chan Event { return s.ch }

// Missed returns how many events were dropped for this subscriber because
// its buffer was full.
func (s *Subscription) Missed() uint64 { return s.missed.Load() }

// Close ends the subscription and closes its channel. It is idempotent.
func (s *Subscription) Close() {
	t := s.t
	t.subsMu.Lock()
	if old := t.subs.Load(); old != nil {
		subs := slices.DeleteFunc(slices.Clone(*old), func(x *Subscription) bool { return x == s })
		if len(subs) == 0 {
			t.subs.Store(nil)
		} else {
			t.subs.Store(&subs)
		}
	}
	t.subsMu.Unlock()
	s.end()
}

func (s *Subscription) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.ended = true
		if s.ch != nil {
			close(s.ch)
		}
	}
}

func (s *Subscription) send(e *Event) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.ended {
		return
	}
	if s.fn != nil {
		s.fn(e)
		return
	}
	select {
	case s.ch <- *e:
	default:
		s.missed.Add(1)
	}
}

// publish delivers e to every subscriber without blocking.
func (t *Table) publish(e Event) {
	subs := t.subs.Load()
	if subs == nil {
		return
	}
	for _, s := range *subs {
		s.send(&e)
	}
}
