package correlate_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

// source is a correlate.Source the test drives: Sync waits until the test
// catches it up with the call (release), or fails with err.
type source struct {
	mu      sync.Mutex
	caught  chan struct{} // closed by release
	err     error
	calls   atomic.Int64
	waiting atomic.Int64
}

func newSource() *source { return &source{caught: make(chan struct{})} }

func (s *source) Sync(ctx context.Context) error {
	s.calls.Add(1)
	s.mu.Lock()
	ch, err := s.caught, s.err
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release catches the source up with every Sync so far; later ones wait
// again.
func (s *source) release() {
	s.mu.Lock()
	if s.caught == closedCh {
		s.mu.Unlock()
		return
	}
	close(s.caught)
	s.caught = make(chan struct{})
	s.mu.Unlock()
}

// catchUp catches the source up for good: every Sync, now and later,
// returns.
func (s *source) catchUp() {
	s.mu.Lock()
	close(s.caught)
	s.caught = closedCh
	s.mu.Unlock()
}

var closedCh = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// closingTable returns a table with the barrier on holding keyN(1) as
// closing, its client clientN(1), and src attached.
func closingTable(t *testing.T, src correlate.Source) *correlate.Table {
	t.Helper()
	tab := newTable(t, correlate.Config{Capacity: 64, Shards: 4, Barrier: true})
	observe(tab, synN(1, time.Now()), finN(1, time.Now()))
	if e, ok := tab.Get(keyN(1)); !ok || e.State != correlate.StateClosing {
		t.Fatalf("setup: Get = %v, %v; want a closing entry", e.State, ok)
	}
	if src != nil {
		tab.Attach(src)
	}
	return tab
}

// reuse returns the segments of a new connection on keyN(1) with client c:
// its SYN (carrying c unless inACK) and, with inACK, the handshake's last
// ACK carrying c.
func reuse(c toa.Client, inACK bool) []decode.Record {
	k := keyN(1)
	syn := decode.Record{Time: time.Now(), Peer: k.Peer(), Local: k.Local(), Flags: decode.SYN, Seq: 777000}
	if !inACK {
		syn.TOA, syn.TOACount = c, 1
		return []decode.Record{syn}
	}
	ack := decode.Record{Time: time.Now(), Peer: k.Peer(), Local: k.Local(), Flags: decode.ACK, Seq: 777001, TOA: c, TOACount: 1}
	return []decode.Record{syn, ack}
}

// TestBarrier: a waiting lookup that finds a closing entry answers with
// what the key holds once the source has caught up with its call, never
// the closing entry's client when a new connection took the key before
// that; and at once when the source says so.
func TestBarrier(t *testing.T) {
	newClient := clientN(99)
	for _, c := range []struct {
		name string
		// before runs after the lookup started, with the source short of
		// the call; after runs once the source has caught up.
		before, after func(*correlate.Table)
		want          toa.Client // the zero Client for ErrNotFound
		stats         correlate.Stats
	}{{
		name:  "no new connection: the closing entry",
		want:  clientN(1),
		stats: correlate.Stats{LookupsOK: 1},
	}, {
		name:   "new connection with the toa in its syn",
		before: func(tab *correlate.Table) { observe(tab, reuse(newClient, false)...) },
		want:   newClient,
		stats:  correlate.Stats{LookupsOK: 1},
	}, {
		name:   "new connection with the toa in the ack",
		before: func(tab *correlate.Table) { observe(tab, reuse(newClient, true)...) },
		want:   newClient,
		stats:  correlate.Stats{LookupsOK: 1},
	}, {
		name:   "new connection without a toa: not found at once",
		before: func(tab *correlate.Table) { observe(tab, reuse(newClient, true)[0]) },
		stats:  correlate.Stats{LookupsNotFound: 1},
	}, {
		name:   "a toa after the source caught up is not waited for",
		before: func(tab *correlate.Table) { observe(tab, reuse(newClient, true)[0]) },
		after:  func(tab *correlate.Table) { observe(tab, reuse(newClient, true)[1]) },
		stats:  correlate.Stats{LookupsNotFound: 1},
	}} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				src := newSource()
				tab := closingTable(t, src)
				start := time.Now()
				ch, done := lookupAsync(t.Context(), tab, keyN(1), time.Hour)
				synctest.Wait()
				if done.Load() {
					t.Fatal("the lookup answered before the source caught up with its call")
				}
				if c.before != nil {
					c.before(tab)
					synctest.Wait()
					if done.Load() {
						t.Fatal("the lookup answered before the source caught up with its call")
					}
				}
				time.Sleep(time.Millisecond)
				src.release()
				synctest.Wait()
				if c.after != nil {
					c.after(tab)
				}
				r := <-ch
				switch {
				case c.want.IsZero() && !errors.Is(r.err, correlate.ErrNotFound):
					t.Errorf("got %v, %v; want ErrNotFound", r.e.Client, r.err)
				case !c.want.IsZero() && (r.err != nil || r.e.Client != c.want):
					t.Errorf("got %v, %v; want %v", r.e.Client, r.err, c.want)
				}
				if got := r.at.Sub(start); got != time.Millisecond {
					t.Errorf("answered after %v, want 1ms: as soon as the source caught up", got)
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

// TestBarrierStale: a lookup whose wait runs out before the source
// catches up answers ErrNotFound, never the closing entry, and is counted
// stale; an absent key is counted timed out. A source that fails (it
// stopped) answers the same at once.
func TestBarrierStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		tab := closingTable(t, src)
		start := time.Now()
		if e, err := tab.Lookup(t.Context(), keyN(1), 50*time.Millisecond); !errors.Is(err, correlate.ErrNotFound) || time.Since(start) != 50*time.Millisecond {
			t.Errorf("closing: got %v, %v after %v; want ErrNotFound after the wait, 50ms", e.Client, err, time.Since(start))
		}
		start = time.Now()
		if e, err := tab.Lookup(t.Context(), keyN(2), 50*time.Millisecond); !errors.Is(err, correlate.ErrNotFound) || time.Since(start) != 50*time.Millisecond {
			t.Errorf("absent: got %v, %v after %v; want ErrNotFound after the wait, 50ms", e.Client, err, time.Since(start))
		}
		want := correlate.Stats{LookupsTimedOut: 2, LookupsStale: 1}
		if d := cmp.Diff(want, lookupStats(tab.Stats())); d != "" {
			t.Errorf("lookup counters (-want +got):\n%s", d)
		}

		src.mu.Lock()
		src.err = errors.New("capture stopped")
		src.mu.Unlock()
		start = time.Now()
		for _, k := range []int{1, 2} {
			if e, err := tab.Lookup(t.Context(), keyN(k), time.Hour); !errors.Is(err, correlate.ErrNotFound) || time.Since(start) != 0 {
				t.Errorf("key %d, source failed: got %v, %v after %v; want ErrNotFound at once", k, e.Client, err, time.Since(start))
			}
		}
		observe(tab, synN(3, time.Now()))
		if e, err := tab.Lookup(t.Context(), keyN(3), time.Hour); err != nil || e.Client != clientN(3) {
			t.Errorf("open entry, source failed: got %v, %v; want %v", e.Client, err, clientN(3))
		}
		want = correlate.Stats{LookupsOK: 1, LookupsTimedOut: 4, LookupsStale: 2}
		if d := cmp.Diff(want, lookupStats(tab.Stats())); d != "" {
			t.Errorf("lookup counters (-want +got):\n%s", d)
		}
	})
}

// TestBarrierAtOnce: what needs no source is answered at once without
// asking it: lookups without a wait (a closing entry included), lookups
// that find an open entry, and every lookup of a table without the
// barrier that finds its key.
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
			src := newSource()
			tab := newTable(t, correlate.Config{Capacity: 64, Shards: 4, Barrier: c.barrier})
			tab.Attach(src)
			observe(tab, synN(1, time.Now()), finN(1, time.Now()), synN(2, time.Now()))
			start := time.Now()
			e, err := tab.Lookup(t.Context(), keyN(c.k), c.wait)
			if err != nil || e.Client != clientN(c.k) || time.Since(start) != 0 {
				t.Errorf("%s: got %v, %v after %v; want %v at once", c.name, e.Client, err, time.Since(start), clientN(c.k))
			}
			if n := src.calls.Load(); n != 0 {
				t.Errorf("%s: the source was asked %d times, want never", c.name, n)
			}
		}
	})
}

// TestBarrierSealed: a sealed table, whose source will bring nothing more
// (a replay), answers every lookup at once, however long it may wait:
// the key's entry, or not found.
func TestBarrierSealed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tab := closingTable(t, nil)
		tab.Seal()
		start := time.Now()
		if e, err := tab.Lookup(t.Context(), keyN(1), time.Hour); err != nil || e.Client != clientN(1) || time.Since(start) != 0 {
			t.Errorf("closing entry: got %v, %v after %v; want %v at once", e.Client, err, time.Since(start), clientN(1))
		}
		if e, err := tab.Lookup(t.Context(), keyN(2), time.Hour); !errors.Is(err, correlate.ErrNotFound) || time.Since(start) != 0 {
			t.Errorf("absent key: got %v, %v after %v; want ErrNotFound at once", e.Client, err, time.Since(start))
		}
		want := correlate.Stats{LookupsOK: 1, LookupsNotFound: 1}
		if d := cmp.Diff(want, lookupStats(tab.Stats())); d != "" {
			t.Errorf("lookup counters (-want +got):\n%s", d)
		}
	})
}

// TestBarrierBeforeAttach: until a source is attached, a lookup of an
// absent key waits for it, a lookup of a closing entry never answers it,
// and a source attached meanwhile takes over both.
func TestBarrierBeforeAttach(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tab := closingTable(t, nil)
		absent, _ := lookupAsync(t.Context(), tab, keyN(2), time.Hour)
		synctest.Wait()
		observe(tab, synN(2, time.Now()))
		if r := <-absent; r.err != nil || r.e.Client != clientN(2) {
			t.Errorf("absent key, then inserted: got %v, %v; want %v", r.e.Client, r.err, clientN(2))
		}
		start := time.Now()
		if e, err := tab.Lookup(t.Context(), keyN(1), 50*time.Millisecond); !errors.Is(err, correlate.ErrNotFound) || time.Since(start) != 50*time.Millisecond {
			t.Errorf("closing, no source: got %v, %v after %v; want ErrNotFound after the wait", e.Client, err, time.Since(start))
		}

		closing, done1 := lookupAsync(t.Context(), tab, keyN(1), time.Hour)
		missing, done3 := lookupAsync(t.Context(), tab, keyN(3), time.Hour)
		synctest.Wait()
		if done1.Load() || done3.Load() {
			t.Fatal("a lookup answered with no source and nothing inserted")
		}
		src := newSource()
		tab.Attach(src)
		synctest.Wait()
		if done1.Load() || done3.Load() {
			t.Fatal("a lookup answered before the new source caught up")
		}
		src.release()
		if r := <-closing; r.err != nil || r.e.Client != clientN(1) {
			t.Errorf("closing: got %v, %v; want %v once the source caught up", r.e.Client, r.err, clientN(1))
		}
		if r := <-missing; !errors.Is(r.err, correlate.ErrNotFound) {
			t.Errorf("absent: got %v, %v; want ErrNotFound once the source caught up", r.e.Client, r.err)
		}
		want := correlate.Stats{LookupsOK: 2, LookupsNotFound: 1, LookupsTimedOut: 1, LookupsStale: 1}
		if d := cmp.Diff(want, lookupStats(tab.Stats())); d != "" {
			t.Errorf("lookup counters (-want +got):\n%s", d)
		}
	})
}

// TestBarrierCancelClose: a lookup waiting for the source ends with its
// context, or with the table.
func TestBarrierCancelClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tab := closingTable(t, newSource())
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

// TestBarrierConcurrent races lookups of closing, open and absent keys
// with a source catching up and segments arriving (under -race in CI):
// every lookup of the closing key answers its client, every absent one
// not found.
func TestBarrierConcurrent(t *testing.T) {
	src := newSource()
	tab := closingTable(t, src)
	const lookups, rounds = 32, 50
	var wg sync.WaitGroup
	errs := make(chan error, lookups*3)
	for i := range lookups {
		wg.Go(func() {
			e, err := tab.Lookup(t.Context(), keyN(1), time.Minute)
			if err == nil && e.Client != clientN(1) {
				err = errors.New("wrong client " + e.Client.Addr.String())
			}
			errs <- err
			if _, err := tab.Lookup(t.Context(), keyN(1000+i), time.Minute); !errors.Is(err, correlate.ErrNotFound) {
				errs <- errors.New("absent key: got " + errors.Join(err).Error())
			}
		})
	}
	var feed sync.WaitGroup
	feed.Go(func() {
		for i := range rounds {
			observe(tab, synN(2+i, time.Now()))
			src.release()
		}
	})
	feed.Wait()
	src.catchUp() // and the lookups that asked after the last release
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("lookup: %v", err)
		}
	}
	if st := tab.Stats(); st.LookupsOK != lookups || st.LookupsNotFound != lookups {
		t.Errorf("%d answered, %d not found; want %d each", st.LookupsOK, st.LookupsNotFound, lookups)
	}
}

// BenchmarkLookupBarrier measures a waiting Lookup (with a wait, answered
// at once) of an open, a closing and an absent key, without the barrier
// and with it on a sealed table: what asking the source adds when it is
// not behind.
func BenchmarkLookupBarrier(b *testing.B) {
	for _, c := range []struct {
		name    string
		barrier bool
		n       int // 1: closing, 2: open, 3: absent
	}{
		{"open", false, 2},
		{"open/barrier", true, 2},
		{"closing", false, 1},
		{"closing/barrier", true, 1},
		{"absent/barrier", true, 3},
	} {
		b.Run(c.name, func(b *testing.B) {
			tab := newTable(b, correlate.Config{Capacity: 64, Shards: 4, Barrier: c.barrier})
			observe(tab, synN(1, t0), finN(1, t0), synN(2, t0))
			tab.Seal()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				e, err := tab.Lookup(ctx, keyN(c.n), time.Second)
				if c.n == 3 && !errors.Is(err, correlate.ErrNotFound) || c.n != 3 && (err != nil || e.Client != clientN(c.n)) {
					b.Fatalf("got %v, %v", e.Client, err)
				}
			}
		})
	}
}
