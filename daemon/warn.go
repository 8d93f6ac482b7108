package daemon

import (
	"log/slog"
	"slices"
	"time"

	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/correlate"
)

// warnEvery is the shortest time between two warnings about one counter.
const warnEvery = time.Minute

// housekeepEvery is how often a live toad expires closing connections and
// looks at its counters.
const housekeepEvery = time.Second

// counterWarning is a counter whose growth an operator should hear of.
type counterWarning struct {
	key  string // the attribute that carries the growth
	msg  string
	read func(*correlate.Stats, *capture.Stats) uint64
}

// counterWarnings are the problems the hot paths count and do not log:
// the counters whose description says to warn, the capture's first.
var counterWarnings = func() []counterWarning {
	var ws []counterWarning
	for _, c := range slices.Concat(capture.Counters, capture.LiveCounters) {
		if c.Warn != "" {
			ws = append(ws, counterWarning{c.WarnAttr, c.Warn, func(_ *correlate.Stats, s *capture.Stats) uint64 { return c.Value(s) }})
		}
	}
	for _, c := range correlate.Counters {
		if c.Warn != "" {
			ws = append(ws, counterWarning{c.WarnAttr, c.Warn, func(t *correlate.Stats, _ *capture.Stats) uint64 { return c.Value(t) }})
		}
	}
	return ws
}()

// warner logs a warning when a watched counter grows: the first time at
// once, then at most once per interval for each counter, saying how much
// it grew since its last warning. A flood costs a line a minute and its
// size is still told.
type warner struct {
	log   *slog.Logger
	every time.Duration
	last  []uint64    // each counter at its last warning
	quiet []time.Time // no warning for the counter before this
	// held reports that a counter grew during its quiet period at the
	// last check: a warning is due once the period ends.
	held bool
}

func newWarner(log *slog.Logger, every time.Duration) *warner {
	return &warner{
		log:   log,
		every: every,
		last:  make([]uint64, len(counterWarnings)),
		quiet: make([]time.Time, len(counterWarnings)),
	}
}

// check warns of the counters that grew, as far as the limit allows.
func (w *warner) check(now time.Time, ts *correlate.Stats, cs *capture.Stats) {
	w.held = false
	for i, cw := range counterWarnings {
		v := cw.read(ts, cs)
		if v <= w.last[i] {
			continue
		}
		if now.Before(w.quiet[i]) {
			w.held = true
			continue
		}
		w.log.Warn(cw.msg, cw.key, v-w.last[i], "total", v)
		w.last[i], w.quiet[i] = v, now.Add(w.every)
	}
}

// housekeep runs every tick until stop is closed: it expires the
// connections whose linger ended, on the wall clock, and warns of the
// counters that grew. Given woken (a live capture's Woken), it stops
// ticking while nothing can happen before the next packet: no closing
// connection to expire, no open one either when an idle timeout may
// expire them, no warning held back; the capture's next packet wakes it.
func housekeep(stop <-chan struct{}, every time.Duration, table *correlate.Table, captureStats func() capture.Stats,
	woken func() <-chan struct{}, idleTimeout bool, w *warner) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			table.Expire(now)
			ts, cs := table.Stats(), captureStats()
			w.check(now, &ts, &cs)
			if woken == nil || ts.Closing > 0 || idleTimeout && ts.Entries > 0 || w.held {
				continue
			}
			ch := woken()
			if captureStats().Packets != cs.Packets {
				continue // packets came meanwhile
			}
			t.Stop()
			select {
			case <-ch:
			case <-stop:
				return
			}
			t.Reset(every)
		case <-stop:
			return
		}
	}
}
