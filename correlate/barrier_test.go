package correlate_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

// closingTable returns a table with the barrier on holding keyN(1) as
// closing, its client clientN(1), and a watermark at the bubble's now:
// the source has caught up with everything so far.
func closingTable(t *testing.T, cfg correlate.Config) *correlate.Table {
	t.Helper()
	cfg.Capacity, cfg.Shards = 64, 4
	tab := newTable(t, cfg)
	observe(tab, synN(1, time.Now()), finN(1, time.Now()))
	if e, ok := tab.Get(keyN(1)); !ok || e.State != correlate.StateClosing {
		t.Fatalf("setup: Get = %v, %v; want a closing entry", e.State, ok)
	}
	tab.Advance(time.Now())
	return tab
}

// reuse returns the segments of a new connection on keyN(1) with client c:
// its SYN (carrying c unless inACK) and, with inACK, the handshake's last
// ACK carrying c.
func reuse(c toa.Client, inACK bool) []decode.Record {
	k := keyN(1)
	syn := decode.Record{Time: time.Now(), Peer: k.Peer, Local: k.Local, Flags: decode.SYN, Seq: 777000}
	if !inACK {
		syn.TOA, syn.TOACount = c, 1
		return []decode.Record{syn}
	}
	ack := decode.Record{Time: time.Now(), Peer: k.Peer, Local: k.Local, Flags: decode.ACK, Seq: 777001, TOA: c, TOACount: 1}
	return []decode.Record{syn, ack}
}

// TestBarrier: a waiting lookup that finds a closing entry answers with
// what the key holds once the watermark passes its call, never the
// closing entry's client when a new connection took the key before that.
func TestBarrier(t *testing.T) {
	newClient := clientN(99)
	for _, c := range []struct {
		name string
		// before runs after the lookup started, with the watermark still
		// short of the call, and after once it has passed.
		before, after func(*correlate.Table)
		want          toa.Client // the zero Client for ErrNotFound
		waited        time.Duration
		stats         correlate.Stats // the Lookups* counters
	}{{
		name:   "no new connection: the closing entry",
		after:  func(*correlate.Table) {},
		want:   clientN(1),
		waited: time.Millisecond,
		stats:  correlate.Stats{LookupsOK: 1},
	}, {
		name:   "new connection with the toa in its syn",
		before: func(tab *correlate.Table) { observe(tab, reuse(newClient, false)...) },
		after:  func(*correlate.Table) {},
		want:   newClient,
		waited: time.Millisecond,
		stats:  correlate.Stats{LookupsOK: 1},
	}, {
		name:   "new connection with the toa in the ack, captured before the watermark passes",
		before: func(tab *correlate.Table) { observe(tab, reuse(newClient, true)...) },
		after:  func(*correlate.Table) {},
		want:   newClient,
		waited: time.Millisecond,
		stats:  correlate.Stats{LookupsOK: 1},
	}, {
		name:   "new connection with the toa in the ack, captured after",
		before: func(tab *correlate.Table) { observe(tab, reuse(newClient, true)[0]) },
		after: func(tab *correlate.Table) {
			time.Sleep(time.Millisecond)
			observe(tab, reuse(newClient, true)[1])
		},
		want:   newClient,
		waited: 2 * time.Millisecond,
		stats:  correlate.Stats{LookupsOK: 1},
	}, {
		name:   "new connection that never brings a toa",
		before: func(tab *correlate.Table) { observe(tab, reuse(newClient, true)[0]) },
		after:  func(*correlate.Table) {},
		waited: time.Second,
		stats:  correlate.Stats{LookupsTimedOut: 1},
	}} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tab := closingTable(t, correlate.Config{Barrier: true})
				time.Sleep(time.Millisecond) // the lookup comes after the watermark
				start := time.Now()
				ch, done := lookupAsync(t.Context(), tab, keyN(1), time.Second)
				synctest.Wait()
				if done.Load() {
					t.Fatalf("the lookup answered before the watermark reached its call")
				}
				if c.before != nil {
					c.before(tab)
				}
				synctest.Wait()
				if done.Load() {
					t.Fatalf("the lookup answered before the watermark reached its call")
				}
				time.Sleep(time.Millisecond)
				tab.Advance(time.Now())
				c.after(tab)
				r := <-ch
				switch {
				case c.want.IsZero() && !errors.Is(r.err, correlate.ErrNotFound):
					t.Errorf("got %v, %v; want ErrNotFound", r.e.Client, r.err)
				case !c.want.IsZero() && (r.err != nil || r.e.Client != c.want):
					t.Errorf("got %v, %v; want %v", r.e.Client, r.err, c.want)
				}
				if got := r.at.Sub(start); got != c.waited {
					t.Errorf("answered after %v, want %v", got, c.waited)
				}
				if d := cmp.Diff(c.stats, lookupStats(tab.Stats())); d != "" {
					t.Errorf("lookup counters (-want +got):\n%s", d)
				}
			})
		})
	}
}

func lookupStats(st correlate.Stats) correlate.Stats {
	return correlate.Stats{
		LookupsOK:       st.LookupsOK,
		LookupsNotFound: st.LookupsNotFound,
		LookupsTimedOut: st.LookupsTimedOut,
		LookupsCanceled: st.LookupsCanceled,
		LookupsStale:    st.LookupsStale,
	}
}

// TestBarrierStale: a lookup whose wait runs out before the watermark
// reaches its call answers ErrNotFound, never the closing entry, and is
// counted stale. A watermark short of the call by a nanosecond is short.
func TestBarrierStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tab := closingTable(t, correlate.Config{Barrier: true})
		time.Sleep(time.Second)
		start := time.Now()
		ch, _ := lookupAsync(t.Context(), tab, keyN(1), 50*time.Millisecond)
		synctest.Wait()
		tab.Advance(start.Add(-1))
		r := <-ch
		if !errors.Is(r.err, correlate.ErrNotFound) || r.at.Sub(start) != 50*time.Millisecond {
			t.Errorf("got %v, %v after %v; want ErrNotFound after the wait, 50ms", r.e.Client, r.err, r.at.Sub(start))
		}
		want := correlate.Stats{LookupsTimedOut: 1, LookupsStale: 1}
		if d := cmp.Diff(want, lookupStats(tab.Stats())); d != "" {
			t.Errorf("lookup counters (-want +got):\n%s", d)
		}
		// The watermark reaching the call answers the next lookup at once.
		tab.Advance(time.Now())
		if e, err := tab.Lookup(t.Context(), keyN(1), time.Second); err != nil || e.Client != clientN(1) {
			t.Errorf("after the watermark: got %v, %v; want %v", e.Client, err, clientN(1))
		}
	})
}

// TestBarrierAtOnce: what the barrier leaves alone is answered at once,
// with no watermark at all: lookups without a wait, lookups that find an
// open entry, lookups of absent keys found by the insert they wait for,
// and every lookup of a table without the barrier.
func TestBarrierAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, c := range []struct {
			name    string
			barrier bool
			k       int
			wait    time.Duration
		}{
			{"closing entry, no wait", true, 1, 0},
			{"open entry", true, 2, time.Second},
			{"closing entry, no barrier", false, 1, time.Second},
		} {
			tab := newTable(t, correlate.Config{Capacity: 64, Shards: 4, Barrier: c.barrier})
			observe(tab, synN(1, time.Now()), finN(1, time.Now()), synN(2, time.Now()))
			start := time.Now()
			e, err := tab.Lookup(t.Context(), keyN(c.k), c.wait)
			if err != nil || e.Client != clientN(c.k) || time.Since(start) != 0 {
				t.Errorf("%s: got %v, %v after %v; want %v at once", c.name, e.Client, err, time.Since(start), clientN(c.k))
			}
		}
		tab := newTable(t, correlate.Config{Capacity: 64, Shards: 4, Barrier: true})
		ch, _ := lookupAsync(t.Context(), tab, keyN(3), time.Second)
		synctest.Wait()
		observe(tab, synN(3, time.Now()))
		if r := <-ch; r.err != nil || r.e.Client != clientN(3) {
			t.Errorf("absent key, then inserted: got %v, %v; want %v", r.e.Client, r.err, clientN(3))
		}
	})
}

// TestBarrierMonotonic: Advance never lowers the watermark, and a
// watermark already past the call answers at once.
func TestBarrierMonotonic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tab := closingTable(t, correlate.Config{Barrier: true})
		later := time.Now().Add(time.Second)
		tab.Advance(later)
		tab.Advance(time.Now())  // lower: ignored
		tab.Advance(time.Time{}) // zero: ignored
		time.Sleep(500 * time.Millisecond)
		start := time.Now()
		if e, err := tab.Lookup(t.Context(), keyN(1), time.Hour); err != nil || e.Client != clientN(1) || time.Since(start) != 0 {
			t.Errorf("before the watermark: got %v, %v after %v; want %v at once", e.Client, err, time.Since(start), clientN(1))
		}
		time.Sleep(time.Second)
		ch, done := lookupAsync(t.Context(), tab, keyN(1), time.Hour)
		synctest.Wait()
		if done.Load() {
			t.Fatal("a lookup after the watermark answered at once")
		}
		tab.Advance(time.Now())
		if r := <-ch; r.err != nil || r.e.Client != clientN(1) {
			t.Errorf("got %v, %v; want %v", r.e.Client, r.err, clientN(1))
		}
	})
}

// TestBarrierSeal: Seal releases the waiting lookups and every later one.
func TestBarrierSeal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tab := closingTable(t, correlate.Config{Barrier: true})
		time.Sleep(time.Millisecond)
		var chs []<-chan result
		for range 3 {
			ch, done := lookupAsync(t.Context(), tab, keyN(1), time.Hour)
			synctest.Wait()
			if done.Load() {
				t.Fatal("a lookup after the watermark answered before Seal")
			}
			chs = append(chs, ch)
		}
		tab.Seal()
		for i, ch := range chs {
			if r := <-ch; r.err != nil || r.e.Client != clientN(1) {
				t.Errorf("waiter %d: got %v, %v; want %v", i, r.e.Client, r.err, clientN(1))
			}
		}
		time.Sleep(24 * time.Hour)
		tab.Advance(time.Now()) // a no-op now
		if e, err := tab.Lookup(t.Context(), keyN(1), time.Hour); err != nil || e.Client != clientN(1) {
			t.Errorf("a day after Seal: got %v, %v; want %v", e.Client, err, clientN(1))
		}
	})
}

// TestBarrierCancelClose: a lookup waiting for the watermark ends with its
// context, or with the table.
func TestBarrierCancelClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tab := closingTable(t, correlate.Config{Barrier: true})
		time.Sleep(time.Millisecond)
		ctx, cancel := context.WithCancel(t.Context())
		canceled, _ := lookupAsync(ctx, tab, keyN(1), time.Hour)
		closed, _ := lookupAsync(t.Context(), tab, keyN(1), time.Hour)
		synctest.Wait()
		cancel()
		if r := <-canceled; !errors.Is(r.err, context.Canceled) {
			t.Errorf("canceled: got %v, %v; want context.Canceled", r.e.Client, r.err)
		}
		tab.Close()
		if r := <-closed; !errors.Is(r.err, correlate.ErrNotFound) || !errors.Is(r.err, correlate.ErrClosed) {
			t.Errorf("closed: got %v, %v; want ErrNotFound and ErrClosed", r.e.Client, r.err)
		}
		if _, err := tab.Lookup(t.Context(), keyN(1), time.Hour); !errors.Is(err, correlate.ErrClosed) {
			t.Errorf("waiting lookup on a closed table: got %v, want ErrClosed", err)
		}
		if e, err := tab.Lookup(t.Context(), keyN(1), 0); err != nil || e.Client != clientN(1) {
			t.Errorf("lookup without a wait on a closed table: got %v, %v; want %v", e.Client, err, clientN(1))
		}
		want := correlate.Stats{LookupsOK: 1, LookupsNotFound: 2, LookupsCanceled: 1}
		if d := cmp.Diff(want, lookupStats(tab.Stats())); d != "" {
			t.Errorf("lookup counters (-want +got):\n%s", d)
		}
	})
}

// TestBarrierWakesInOrder: each Advance releases exactly the waiters whose
// call it covers.
func TestBarrierWakesInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tab := closingTable(t, correlate.Config{Barrier: true})
		base := time.Now()
		var chs []<-chan result
		for range 5 {
			time.Sleep(time.Millisecond)
			ch, _ := lookupAsync(t.Context(), tab, keyN(1), time.Hour)
			chs = append(chs, ch)
		}
		synctest.Wait()
		high := 0
		for _, i := range []int{1, 3, 2, 5} {
			// Waiter j called at base+(j+1)ms.
			tab.Advance(base.Add(time.Duration(i) * time.Millisecond))
			high = max(high, i)
			synctest.Wait()
			for j, ch := range chs {
				if ch == nil {
					continue
				}
				select {
				case r := <-ch:
					chs[j] = nil
					if j+1 > high {
						t.Errorf("watermark %dms: waiter %d (called at %dms) answered", i, j, j+1)
					}
					if r.err != nil || r.e.Client != clientN(1) {
						t.Errorf("waiter %d: got %v, %v; want %v", j, r.e.Client, r.err, clientN(1))
					}
				default:
					if j+1 <= high {
						t.Errorf("watermark %dms: waiter %d (called at %dms) still waiting", i, j, j+1)
					}
				}
			}
		}
	})
}

// TestAdvanceConcurrent races Advance from several goroutines with lookups
// waiting for the watermark and segments arriving (under -race in CI):
// every lookup is answered with the closing entry once the highest
// watermark covers it.
func TestAdvanceConcurrent(t *testing.T) {
	tab := newTable(t, correlate.Config{Capacity: 64, Shards: 4, Barrier: true})
	observe(tab, synN(1, t0), finN(1, t0))
	const lookups, advancers, steps = 32, 4, 200
	var wg sync.WaitGroup
	results := make(chan error, lookups)
	for range lookups {
		wg.Go(func() {
			e, err := tab.Lookup(t.Context(), keyN(1), time.Minute)
			if err == nil && e.Client != clientN(1) {
				err = errors.New("wrong client " + e.Client.Addr.String())
			}
			results <- err
		})
	}
	base := time.Now()
	var adv sync.WaitGroup
	for a := range advancers {
		adv.Go(func() {
			for i := range steps {
				tab.Advance(base.Add(time.Duration(i*advancers+a) * time.Microsecond))
				observe(tab, synN(2+a, time.Now()))
			}
		})
	}
	adv.Wait()
	// Past every lookup's call.
	tab.Advance(time.Now().Add(time.Hour))
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Errorf("lookup: %v", err)
		}
	}
	if st := tab.Stats(); st.LookupsOK != lookups {
		t.Errorf("LookupsOK = %d, want %d", st.LookupsOK, lookups)
	}
}

// TestAdvanceAllocs: with no lookup waiting, Advance allocates nothing.
func TestAdvanceAllocs(t *testing.T) {
	tab := newTable(t, correlate.Config{Barrier: true})
	w := time.Now()
	if a := testing.AllocsPerRun(1000, func() {
		w = w.Add(time.Microsecond)
		tab.Advance(w)
	}); a != 0 {
		t.Errorf("Advance: %.1f allocations, want 0", a)
	}
}

// BenchmarkLookupBarrier measures a waiting Lookup (with a wait, answered
// at once) of an open and of a closing entry, without the barrier and with
// it, its watermark already past the call (sealed): what the barrier adds
// when the capture is not behind.
func BenchmarkLookupBarrier(b *testing.B) {
	for _, c := range []struct {
		name    string
		barrier bool
		n       int // 1: closing, 2: open
	}{
		{"open", false, 2},
		{"open/barrier", true, 2},
		{"closing", false, 1},
		{"closing/barrier", true, 1},
	} {
		b.Run(c.name, func(b *testing.B) {
			tab := newTable(b, correlate.Config{Capacity: 64, Shards: 4, Barrier: c.barrier})
			observe(tab, synN(1, t0), finN(1, t0), synN(2, t0))
			tab.Seal()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if e, err := tab.Lookup(ctx, keyN(c.n), time.Second); err != nil || e.Client != clientN(c.n) {
					b.Fatalf("got %v, %v", e.Client, err)
				}
			}
		})
	}
}
