package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

// records is a slog.Handler that keeps what it is given.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// take returns the records so far, as "message key=n total=n", and forgets
// them.
func (r *records) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		s := rec.Message
		rec.Attrs(func(a slog.Attr) bool {
			s += " " + a.String()
			return true
		})
		out = append(out, s)
	}
	r.recs = nil
	return out
}

// TestHousekeepWarnings: a counter's growth is warned of at once, then at
// most once a minute with what accumulated meanwhile; closing connections
// expire on the wall clock.
func TestHousekeepWarnings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tab, err := correlate.New(correlate.Config{
			Trusted: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
			Linger:  30 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer tab.Close()
		var drops atomic.Uint64
		rec := &records{}
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			housekeep(stop, time.Second, tab, func() capture.Stats { return capture.Stats{Drops: drops.Load()} },
				nil, false, newWarner(slog.New(rec), time.Minute))
		}()
		untrusted := func(n int) {
			for i := range n {
				r := decode.Record{
					Time: time.Now(), Peer: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.99"), uint16(40000+i)),
					Local: netip.MustParseAddrPort("192.0.2.20:8080"), Flags: decode.SYN,
					TOA: toa.Client{Dialect: toa.Kind200V4, Addr: netip.MustParseAddr("203.0.113.7"), Port: 1, HasPort: true}, TOACount: 1,
				}
				tab.Observe(&r)
			}
		}
		const untrustedMsg = "ignored TOAs from peers outside --trusted-proxies: a client may be forging its address, or a proxy range is missing"
		const dropMsg = "the kernel dropped packets because a capture ring was full: raise --ring-size or --readers"
		step := func(d time.Duration, want ...string) {
			t.Helper()
			time.Sleep(d)
			synctest.Wait()
			got := rec.take()
			if len(got) != len(want) {
				t.Fatalf("after %v: warnings %q, want %q", d, got, want)
			}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("after %v: warning %q, want %q", d, got[i], want[i])
				}
			}
		}

		step(time.Second) // nothing grew
		untrusted(3)
		step(time.Second, untrustedMsg+" segments=3 total=3")
		untrusted(2)
		drops.Store(7)
		step(time.Second, dropMsg+" dropped=7 total=7") // the untrusted warning waits
		untrusted(1)
		step(30 * time.Second)
		step(29*time.Second, untrustedMsg+" segments=3 total=6") // a minute after the first
		drops.Store(9)
		step(time.Second, dropMsg+" dropped=2 total=9")
		step(2 * time.Minute) // quiet counters, quiet log

		// A closing connection expires after its linger, on the clock.
		k := correlate.KeyOf(netip.MustParseAddrPort("198.51.100.10:40001"), netip.MustParseAddrPort("192.0.2.20:8080"))
		for _, f := range []decode.Flags{decode.SYN, decode.FIN | decode.ACK} {
			r := decode.Record{Time: time.Now(), Peer: k.Peer(), Local: k.Local(), Flags: f, Seq: 1000,
				TOA: toa.Client{Dialect: toa.Kind200V4, Addr: netip.MustParseAddr("203.0.113.7"), Port: 1, HasPort: true}, TOACount: 1}
			if f != decode.SYN {
				r.TOA, r.TOACount, r.Seq = toa.Client{}, 0, 1001
			}
			tab.Observe(&r)
		}
		if e, ok := tab.Get(k); !ok || e.State != correlate.StateClosing {
			t.Fatalf("after FIN: %+v, %v; want a closing entry", e, ok)
		}
		time.Sleep(29 * time.Second)
		synctest.Wait()
		if _, ok := tab.Get(k); !ok {
			t.Error("the closing entry expired before its linger")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if _, ok := tab.Get(k); ok {
			t.Error("the closing entry outlived its linger")
		}

		close(stop)
		<-done
	})
}

// TestHousekeepSleepsWhenIdle: with nothing to expire and no warning held
// back, housekeeping stops ticking until the capture's next packet, and
// ticks again after it; a closing connection, an idle timeout with open
// connections, or a held-back warning keep it ticking.
func TestHousekeepSleepsWhenIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tab, err := correlate.New(correlate.Config{Linger: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer tab.Close()
		var (
			looks   atomic.Int64 // calls of captureStats: two per tick that goes to sleep, one otherwise
			packets atomic.Uint64
			drops   atomic.Uint64
			mu      sync.Mutex
			wake    chan struct{}
		)
		stats := func() capture.Stats {
			looks.Add(1)
			return capture.Stats{Packets: packets.Load(), Drops: drops.Load()}
		}
		woken := func() <-chan struct{} {
			mu.Lock()
			defer mu.Unlock()
			if wake == nil {
				wake = make(chan struct{})
			}
			return wake
		}
		packet := func() { // as the capture: count it, then wake the sleeper
			packets.Add(1)
			mu.Lock()
			if wake != nil {
				close(wake)
				wake = nil
			}
			mu.Unlock()
		}
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			housekeep(stop, time.Second, tab, stats, woken, false, newWarner(slog.New(&records{}), time.Minute))
		}()
		ticks := func(d time.Duration) int64 {
			before := looks.Load()
			time.Sleep(d)
			synctest.Wait()
			return looks.Load() - before
		}
		if n := ticks(time.Hour); n != 2 {
			t.Errorf("idle for an hour: captureStats called %d times, want 2 (one tick, then asleep)", n)
		}
		packet()
		if n := ticks(time.Hour); n != 2 {
			t.Errorf("a packet, then idle: captureStats called %d times, want 2 (one tick, then asleep)", n)
		}

		// A closing connection keeps it ticking until it expires.
		k := correlate.KeyOf(netip.MustParseAddrPort("198.51.100.10:40001"), netip.MustParseAddrPort("192.0.2.20:8080"))
		c := toa.Client{Dialect: toa.Kind200V4, Addr: netip.MustParseAddr("203.0.113.7"), Port: 1, HasPort: true}
		for _, r := range []decode.Record{
			{Time: time.Now(), Peer: k.Peer(), Local: k.Local(), Flags: decode.SYN, Seq: 1000, TOA: c, TOACount: 1},
			{Time: time.Now(), Peer: k.Peer(), Local: k.Local(), Flags: decode.FIN | decode.ACK, Seq: 1001},
		} {
			tab.Observe(&r)
		}
		packet()
		if n := ticks(10 * time.Second); n < 10 {
			t.Errorf("closing connection: captureStats called %d times in 10s, want a tick a second", n)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if _, ok := tab.Get(k); ok {
			t.Error("the closing entry outlived its linger")
		}
		if n := ticks(time.Hour); n != 0 {
			t.Errorf("after it expired: captureStats called %d times in an hour, want none (asleep)", n)
		}

		// A warning held back by its quiet period keeps it ticking until
		// it is told.
		drops.Store(1)
		packet()
		if n := ticks(3 * time.Second); n != 2 {
			t.Errorf("first drop, warned of at once: captureStats called %d times, want 2 (one tick, then asleep)", n)
		}
		drops.Store(2)
		packet()
		if n := ticks(30 * time.Second); n < 29 {
			t.Errorf("warning held back: captureStats called %d times in 30s, want a tick a second", n)
		}
		if n := ticks(time.Hour); n > 32 {
			t.Errorf("once told: captureStats called %d times in an hour, want the ticks up to the warning, then none", n)
		}
		close(stop)
		<-done
	})
}
