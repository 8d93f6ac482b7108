package correlate

import (
	"container/heap"
	"context"
	"errors"
	"math"
	"time"
)

// Advance raises the table's watermark to w: the source declares that it
// has passed to Observe every segment the kernel received before w. A w
// not after the current watermark changes nothing, and so does the zero
// time. It wakes the lookups waiting for the watermark (see
// Config.Barrier) whose call time w now covers; with none waiting it costs
// a few atomic operations. w is compared with the wall clock of lookup
// calls: a clock stepped back lets lookups pass for as long as the step.
// Advance is safe for concurrent use, and is a no-op after Seal.
func (t *Table) Advance(w time.Time) {
	if w.IsZero() {
		return
	}
	t.raise(w.UnixNano())
}

// Seal declares the source complete, as after a replay: every wait for the
// watermark passes, now and from then on, and Advance changes nothing.
func (t *Table) Seal() { t.raise(math.MaxInt64) }

// raise sets the watermark to ns if that is higher and releases the
// waiters it covers.
func (t *Table) raise(ns int64) {
	for {
		cur := t.mark.Load()
		if ns <= cur {
			return
		}
		if t.mark.CompareAndSwap(cur, ns) {
			break
		}
	}
	// A waiter counts itself before it reads the watermark, and this reads
	// the count after raising it: one of the two sees the other.
	if t.nMarkW.Load() == 0 {
		return
	}
	t.markMu.Lock()
	m := t.mark.Load()
	for len(t.markW) > 0 && t.markW[0].at <= m {
		w := heap.Pop(&t.markW).(*markWaiter)
		close(w.ch)
		t.nMarkW.Add(-1)
	}
	t.markMu.Unlock()
}

// errStale is awaitMark's answer when the wait ran out first.
var errStale = errors.New("watermark not reached")

// awaitMark waits until the watermark reaches at (Unix nanoseconds). It
// returns nil once it has, errStale when expired fires first, ctx.Err()
// when ctx ends first, and errClosedNotFound when the table is or gets
// closed.
func (t *Table) awaitMark(ctx context.Context, at int64, expired <-chan time.Time) error {
	if t.mark.Load() >= at {
		return nil
	}
	w := &markWaiter{at: at, ch: make(chan struct{})}
	t.markMu.Lock()
	if t.closed.Load() {
		t.markMu.Unlock()
		return errClosedNotFound
	}
	t.nMarkW.Add(1)
	heap.Push(&t.markW, w)
	if t.mark.Load() >= at {
		t.dropMarkWaiter(w)
		t.markMu.Unlock()
		return nil
	}
	t.markMu.Unlock()

	select {
	case <-w.ch:
		if t.mark.Load() >= at {
			return nil
		}
		return errClosedNotFound
	case <-expired:
	case <-ctx.Done():
	}
	t.markMu.Lock()
	t.dropMarkWaiter(w)
	t.markMu.Unlock()
	switch {
	case t.mark.Load() >= at:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return errStale
}

// dropMarkWaiter removes w if it is still waiting. t.markMu is held.
func (t *Table) dropMarkWaiter(w *markWaiter) {
	if w.i >= 0 {
		heap.Remove(&t.markW, w.i)
		t.nMarkW.Add(-1)
	}
}

// releaseMarkWaiters wakes every lookup waiting for the watermark, for
// Close.
func (t *Table) releaseMarkWaiters() {
	t.markMu.Lock()
	for _, w := range t.markW {
		w.i = -1
		close(w.ch)
	}
	t.nMarkW.Add(-int64(len(t.markW)))
	t.markW = nil
	t.markMu.Unlock()
}

// markWaiter is a lookup waiting for the watermark to reach at; ch is
// closed when it does or the table closes.
type markWaiter struct {
	at int64
	ch chan struct{}
	i  int // index in the heap, -1 once out of it
}

// markHeap is a min-heap of waiters by at (container/heap).
type markHeap []*markWaiter

func (h markHeap) Len() int           { return len(h) }
func (h markHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h markHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].i, h[j].i = i, j
}

func (h *markHeap) Push(x any) {
	w := x.(*markWaiter)
	w.i = len(*h)
	*h = append(*h, w)
}

func (h *markHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	w.i = -1
	if len(*h) == 0 {
		*h = nil // a burst of waiters leaves no array behind
	}
	return w
}
