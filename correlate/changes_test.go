package correlate_test

import (
	"testing"

	"github.com/toad-project/toad/correlate"
)

// TestRecorderPending: a recorder signals pending changes once a shard
// changes, once until the next drain, not while the table is idle, and a
// drain takes every change whichever shards they fell in.
func TestRecorderPending(t *testing.T) {
	tab := newTable(t, correlate.Config{Capacity: 1 << 12, Shards: 128})
	rec, err := tab.Record(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Stop()
	pending := func() bool {
		select {
		case <-rec.Pending():
			return true
		default:
			return false
		}
	}
	if pending() {
		t.Fatal("pending before any change")
	}
	if _, n, _ := rec.Drain(nil); n != 0 {
		t.Fatalf("an idle table drained %d records, want 0", n)
	}
	const conns = 500 // over all 128 shards, both words of the dirty set
	for n := range conns {
		r := synN(n, t0)
		tab.Observe(&r)
		// Once a drain: the writer, woken by the first change, is not
		// woken again by the other shards' first changes before it
		// drains.
		if got := pending(); got != (n == 0) {
			t.Fatalf("change %d: pending signaled %v, want %v", n, got, n == 0)
		}
	}
	if _, n, lost := rec.Drain(nil); n != conns || lost != 0 {
		t.Fatalf("drained %d records, %d lost; want %d, none lost", n, lost, conns)
	}
	if _, n, _ := rec.Drain(nil); n != 0 {
		t.Fatalf("a second drain took %d records, want 0", n)
	}
	if pending() {
		t.Error("pending after the drain, with no change since")
	}
	r := synN(conns, t0)
	tab.Observe(&r)
	if !pending() {
		t.Error("no pending signal for a change after the drain")
	}
	if _, n, _ := rec.Drain(nil); n != 1 {
		t.Errorf("drained %d records, want 1", n)
	}
}
