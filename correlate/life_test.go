package correlate_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

func observe(tab *correlate.Table, rs ...decode.Record) {
	for i := range rs {
		tab.Observe(&rs[i])
	}
}

func finN(n int, at time.Time) decode.Record {
	return decode.Record{Time: at, Peer: peerN(n), Local: server, Flags: decode.FIN | decode.ACK, Seq: uint32(n) + 1}
}

func has(tab *correlate.Table, ns ...int) []int {
	var got []int
	for _, n := range ns {
		if _, ok := tab.Get(keyN(n)); ok {
			got = append(got, n)
		}
	}
	return got
}

func TestEviction(t *testing.T) {
	tab := newTable(t, correlate.Config{Capacity: 3, Shards: 1})
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	observe(tab, synN(0, sec(0)), synN(1, sec(1)), synN(2, sec(2)), finN(1, sec(3)))
	observe(tab, synN(3, sec(4)))
	if got, want := has(tab, 0, 1, 2, 3), []int{0, 2, 3}; !equal(got, want) {
		t.Errorf("after a 4th connection in 3 places: got %v, want %v (the closing one evicted first)", got, want)
	}
	observe(tab, synN(4, sec(5)))
	if got, want := has(tab, 0, 2, 3, 4), []int{2, 3, 4}; !equal(got, want) {
		t.Errorf("after a 5th: got %v, want %v (the oldest evicted)", got, want)
	}
	st := tab.Stats()
	if st.Evictions != 2 || st.EvictionsOpen != 1 || st.Entries != 3 {
		t.Errorf("got Evictions %d, EvictionsOpen %d, Entries %d; want 2, 1, 3", st.Evictions, st.EvictionsOpen, st.Entries)
	}
}

// TestEvictionClosingElsewhere fills a two-shard table: a new connection in
// a shard holding only open entries evicts a closing one from the other.
func TestEvictionClosingElsewhere(t *testing.T) {
	tab := newTable(t, correlate.Config{Capacity: 4, Shards: 2})
	in := [2][]int{}
	for n := 0; len(in[0]) < 2 || len(in[1]) < 3; n++ {
		s := tab.ShardIndex(keyN(n))
		in[s] = append(in[s], n)
	}
	closingOne, opens := in[0][0], []int{in[0][1], in[1][0], in[1][1]}
	observe(tab, synN(closingOne, t0), finN(closingOne, t0))
	for _, n := range opens {
		observe(tab, synN(n, t0.Add(time.Second)))
	}
	observe(tab, synN(in[1][2], t0.Add(2*time.Second)))
	if got, want := has(tab, closingOne, opens[0], opens[1], opens[2], in[1][2]), append(opens, in[1][2]); !equal(got, want) {
		t.Errorf("got %v held, want %v: the closing entry of the other shard evicted", got, want)
	}
	if st := tab.Stats(); st.Evictions != 1 || st.EvictionsOpen != 0 {
		t.Errorf("got Evictions %d, EvictionsOpen %d; want 1, 0", st.Evictions, st.EvictionsOpen)
	}
}

// TestEvictionShardLimit: a shard holds at most an eighth more than its
// share (plus 64), even when the table is not full.
func TestEvictionShardLimit(t *testing.T) {
	tab := newTable(t, correlate.Config{Capacity: 1000, Shards: 2})
	const limit = 500 + 500/8 + 64
	var in0 []int
	for n := 0; len(in0) < limit+1; n++ {
		if tab.ShardIndex(keyN(n)) == 0 {
			in0 = append(in0, n)
		}
	}
	for _, n := range in0 {
		observe(tab, synN(n, t0))
	}
	if st := tab.Stats(); st.Entries != limit || st.Evictions != 1 {
		t.Errorf("after %d connections in one shard: got Entries %d, Evictions %d; want %d, 1", limit+1, st.Entries, st.Evictions, limit)
	}
	if got := has(tab, in0[0], in0[1]); !equal(got, in0[1:2]) {
		t.Errorf("held: got %v, want %v (the oldest evicted)", got, in0[1:2])
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLinger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tab := newTable(t, correlate.Config{Capacity: 16, Shards: 2, Linger: 5 * time.Second})
		observe(tab, synN(1, time.Now()), synN(2, time.Now()), finN(1, time.Now()))
		time.Sleep(5*time.Second - 1)
		if n := tab.Expire(time.Now()); n != 0 {
			t.Errorf("Expire just before the linger ends: got %d removed, want 0", n)
		}
		if e, ok := tab.Get(keyN(1)); !ok || e.State != correlate.StateClosing {
			t.Errorf("Get of a lingering entry: got %v, %v; want closing, true", e.State, ok)
		}
		time.Sleep(1)
		if n := tab.Expire(time.Now()); n != 1 {
			t.Errorf("Expire when the linger ends: got %d removed, want 1", n)
		}
		time.Sleep(72 * time.Hour)
		if n := tab.Expire(time.Now()); n != 0 {
			t.Errorf("Expire of an open connection 3 days on: got %d removed, want 0", n)
		}
		if got, want := has(tab, 1, 2), []int{2}; !equal(got, want) {
			t.Errorf("held: got %v, want %v", got, want)
		}
		if st := tab.Stats(); st.Expired != 1 || st.IdleExpired != 0 || st.Closing != 0 {
			t.Errorf("got Expired %d, IdleExpired %d, Closing %d; want 1, 0, 0", st.Expired, st.IdleExpired, st.Closing)
		}
	})
}

func TestIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tab := newTable(t, correlate.Config{Capacity: 16, Shards: 2, IdleTimeout: time.Minute})
		observe(tab, synN(1, time.Now()), synN(2, time.Now()))
		for range 10 {
			time.Sleep(30 * time.Second)
			k := keyN(1)
			observe(tab, decode.Record{Time: time.Now(), Peer: k.Peer(), Local: k.Local(), Flags: decode.ACK, Seq: 2})
			tab.Expire(time.Now())
		}
		if got, want := has(tab, 1, 2), []int{1}; !equal(got, want) {
			t.Errorf("held after 5 minutes: got %v, want %v (the busy one)", got, want)
		}
		time.Sleep(time.Minute)
		if n := tab.Expire(time.Now()); n != 1 {
			t.Errorf("Expire a minute after the last segment: got %d removed, want 1", n)
		}
		if st := tab.Stats(); st.IdleExpired != 2 || st.Expired != 0 {
			t.Errorf("got IdleExpired %d, Expired %d; want 2, 0", st.IdleExpired, st.Expired)
		}
	})
}

type result struct {
	e   correlate.Entry
	err error
	at  time.Time
}

func lookupAsync(ctx context.Context, tab *correlate.Table, k correlate.Key, wait time.Duration) (<-chan result, *atomic.Bool) {
	ch := make(chan result, 1)
	done := new(atomic.Bool)
	go func() {
		e, err := tab.Lookup(ctx, k, wait)
		done.Store(true)
		ch <- result{e, err, time.Now()}
	}()
	return ch, done
}

// TestLookupWait: an insert wakes the lookups waiting for its key, at once
// (the bubble's clock does not move), and no other.
func TestLookupWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tab := newTable(t, correlate.Config{Capacity: 64, Shards: 1})
		start := time.Now()
		a1, _ := lookupAsync(t.Context(), tab, keyN(1), 10*time.Second)
		a2, _ := lookupAsync(t.Context(), tab, keyN(1), 10*time.Second)
		b, bDone := lookupAsync(t.Context(), tab, keyN(2), 10*time.Second)
		synctest.Wait()
		observe(tab, synN(3, time.Now()), synN(1, time.Now()))
		synctest.Wait()
		for i, ch := range []<-chan result{a1, a2} {
			r := <-ch
			if r.err != nil || r.e.Client != clientN(1) || !r.at.Equal(start) {
				t.Errorf("waiter %d: got %v, %v after %v; want client %v at once", i, r.e.Client, r.err, r.at.Sub(start), clientN(1))
			}
		}
		if bDone.Load() {
			t.Errorf("the waiter for another key returned on this insert")
		}
		time.Sleep(10 * time.Second)
		r := <-b
		if !errors.Is(r.err, correlate.ErrNotFound) || r.at.Sub(start) != 10*time.Second {
			t.Errorf("waiter for an absent key: got %v after %v, want ErrNotFound after 10s", r.err, r.at.Sub(start))
		}
		st := tab.Stats()
		if st.LookupsOK != 2 || st.LookupsTimedOut != 1 || st.LookupsNotFound != 0 {
			t.Errorf("got LookupsOK %d, TimedOut %d, NotFound %d; want 2, 1, 0", st.LookupsOK, st.LookupsTimedOut, st.LookupsNotFound)
		}
	})
}

func TestLookup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tab := newTable(t, correlate.Config{Capacity: 64, Shards: 4})
		observe(tab, synN(1, time.Now()))
		if e, err := tab.Lookup(t.Context(), keyN(1), 0); err != nil || e.Client != clientN(1) {
			t.Errorf("Lookup of a held key: got %v, %v; want %v", e.Client, err, clientN(1))
		}
		if e, err := tab.Lookup(t.Context(), keyN(1), time.Second); err != nil || e.Client != clientN(1) {
			t.Errorf("waiting Lookup of a held key: got %v, %v; want %v", e.Client, err, clientN(1))
		}
		if _, err := tab.Lookup(t.Context(), keyN(2), 0); !errors.Is(err, correlate.ErrNotFound) {
			t.Errorf("Lookup of an absent key: got %v, want ErrNotFound", err)
		}

		ctx, cancel := context.WithCancel(t.Context())
		canceled, _ := lookupAsync(ctx, tab, keyN(2), time.Hour)
		synctest.Wait()
		cancel()
		if r := <-canceled; !errors.Is(r.err, context.Canceled) {
			t.Errorf("canceled Lookup: got %v, want context.Canceled", r.err)
		}

		deadline, cancel2 := context.WithTimeout(t.Context(), time.Second)
		defer cancel2()
		if _, err := tab.Lookup(deadline, keyN(2), time.Hour); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Lookup past its context's deadline: got %v, want context.DeadlineExceeded", err)
		}

		closed, _ := lookupAsync(t.Context(), tab, keyN(3), time.Hour)
		synctest.Wait()
		tab.Close()
		if r := <-closed; !errors.Is(r.err, correlate.ErrNotFound) || !errors.Is(r.err, correlate.ErrClosed) {
			t.Errorf("Lookup waiting when the table closed: got %v, want ErrNotFound and ErrClosed", r.err)
		}
		if _, err := tab.Lookup(t.Context(), keyN(3), time.Hour); !errors.Is(err, correlate.ErrClosed) {
			t.Errorf("waiting Lookup on a closed table: got %v, want ErrClosed", err)
		}
		if e, err := tab.Lookup(t.Context(), keyN(1), 0); err != nil || e.Client != clientN(1) {
			t.Errorf("Lookup on a closed table: got %v, %v; want %v", e.Client, err, clientN(1))
		}

		st := tab.Stats()
		if st.LookupsOK != 3 || st.LookupsNotFound != 3 || st.LookupsCanceled != 2 || st.LookupsTimedOut != 0 {
			t.Errorf("got LookupsOK %d, NotFound %d, Canceled %d, TimedOut %d; want 3, 3, 2, 0",
				st.LookupsOK, st.LookupsNotFound, st.LookupsCanceled, st.LookupsTimedOut)
		}
	})
}

// TestLookupWaitMapped: a lookup by the IPv4-mapped key a dual-stack
// listener reports is woken by the plain IPv4 segment.
func TestLookupWaitMapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tab := newTable(t, correlate.Config{Capacity: 64, Shards: 4})
		k := keyN(5)
		mapped := correlate.KeyOf(mapAP(k.Peer()), mapAP(k.Local()))
		ch, _ := lookupAsync(t.Context(), tab, mapped, time.Minute)
		synctest.Wait()
		observe(tab, decode.Record{Time: time.Now(), Peer: k.Peer(), Local: k.Local(), Flags: decode.ACK, Seq: 6, TOA: clientN(5), TOACount: 1})
		if r := <-ch; r.err != nil || r.e.Key != k {
			t.Errorf("got %v, %v; want key %v", r.e.Key, r.err, k)
		}
	})
}

func TestSubscribe(t *testing.T) {
	tab := newTable(t, correlate.Config{Capacity: 64, Shards: 4})
	fast, slow := tab.Subscribe(16), tab.Subscribe(2)
	type ev struct {
		typ    correlate.EventType
		client toa.Client
		state  correlate.State
	}
	// A follower sees each event before Observe returns.
	var followed []ev
	follower := tab.Follow(func(e *correlate.Event) { followed = append(followed, ev{e.Type, e.Entry.Client, e.Entry.State}) })
	if follower.Events() != nil {
		t.Error("a follower has a channel of events")
	}
	k := keyN(1)
	observe(tab, synN(1, t0))
	if len(followed) != 1 {
		t.Fatalf("the follower had %d events when Observe returned, want 1", len(followed))
	}
	observe(tab,
		decode.Record{Time: t0.Add(time.Second), Peer: k.Peer(), Local: k.Local(), Flags: decode.SYN, Seq: 99, TOA: clientN(2), TOACount: 1},
		finN(1, t0.Add(2*time.Second)),
		synN(3, t0.Add(3*time.Second)),
	)
	follower.Close()
	want := []ev{
		{correlate.EventOpen, clientN(1), correlate.StateOpen},
		{correlate.EventClose, clientN(1), correlate.StateClosing},
		{correlate.EventOpen, clientN(2), correlate.StateOpen},
		{correlate.EventClose, clientN(2), correlate.StateClosing},
		{correlate.EventOpen, clientN(3), correlate.StateOpen},
	}
	fast.Close()
	fast.Close()
	var got []ev
	for e := range fast.Events() {
		got = append(got, ev{e.Type, e.Entry.Client, e.Entry.State})
	}
	if len(got) != len(want) {
		t.Fatalf("got %d events %v, want %v", len(got), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: got %v, want %v", i, got[i], want[i])
		}
	}
	if !slices.Equal(followed, want) {
		t.Errorf("the follower saw %v, want %v", followed, want)
	}
	calls := 0
	other := newTable(t, correlate.Config{Capacity: 64, Shards: 4})
	f := other.Follow(func(*correlate.Event) { calls++ })
	observe(other, synN(1, t0))
	f.Close()
	observe(other, synN(2, t0))
	if calls != 1 {
		t.Errorf("a follower was called %d times for an event before its Close and one after, want 1", calls)
	}
	if fast.Missed() != 0 {
		t.Errorf("fast subscriber: Missed() = %d, want 0", fast.Missed())
	}
	if slow.Missed() != 3 {
		t.Errorf("slow subscriber (buffer 2): Missed() = %d, want 3", slow.Missed())
	}
	tab.Close()
	n := 0
	for range slow.Events() {
		n++
	}
	if n != 2 {
		t.Errorf("slow subscriber got %d events before Close ended it, want 2", n)
	}
	late := tab.Subscribe(1)
	if _, ok := <-late.Events(); ok {
		t.Errorf("subscription to a closed table delivered an event, want its channel closed")
	}
	late.Close()
}
