package journal

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/internal/syncbuf"
)

// TestRecoverEquivalence: at any moment after a Flush, what the directory
// holds recovers to the table that wrote it, across compactions.
func TestRecoverEquivalence(t *testing.T) {
	dir := t.TempDir()
	src := newTable(t, tableCfg)
	j, _ := open(t, dir, src, Config{CompactMin: 4 << 10, Interval: time.Hour})
	for n := range 3000 {
		step(src, n)
		if n%250 != 249 {
			continue
		}
		if err := j.Flush(); err != nil {
			t.Fatalf("Flush after step %d: %v", n, err)
		}
		got, _ := recovered(t, copyDir(t, dir), expiredAt(0, n))
		if d := diff(entries(src), entries(got)); d != "" {
			t.Fatalf("after step %d, recovered (-table +recovered):\n%s", n, d)
		}
	}
	st := j.Stats()
	if st.Compactions < 3 || st.Records == 0 || st.Lost != 0 || st.WriteErrors != 0 {
		t.Errorf("stats %+v: want several compactions, records written, none lost, no errors", st)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	snaps, segs, _ := generations(dir)
	if len(snaps) != 1 || len(segs) != 1 || snaps[0] != segs[0] {
		t.Errorf("after Close: snapshots %v, segments %v; want one generation", snaps, segs)
	}
	if fi, err := os.Stat(filepath.Join(dir, segName(segs[0]))); err != nil || fi.Size() != int64(headerLen) {
		t.Errorf("segment after Close: %v, %v; want an empty one (%d bytes)", fi.Size(), err, headerLen)
	}
	got, _ := recovered(t, dir, expiredAt(0, 2999))
	if d := diff(entries(src), entries(got)); d != "" {
		t.Errorf("after Close, recovered (-table +recovered):\n%s", d)
	}
}

// TestRecoverExpires: closed connections come back closed, with their
// close time, until their linger ends at the recovering clock; then not
// at all. Keys a live capture filled first keep what it saw.
func TestRecoverExpires(t *testing.T) {
	dir := t.TempDir()
	_, src := journaled(t, dir, 40)
	crash := copyDir(t, dir)
	want := entries(src)
	closedAt := map[correlate.Key]time.Time{}
	for k, e := range want {
		if e.State == correlate.StateClosing {
			closedAt[k] = e.ClosedAt
		}
	}
	if len(closedAt) == 0 {
		t.Fatal("the workload closed nothing")
	}
	now := at(39)
	got, _ := recovered(t, crash, now)
	for k, e := range entries(got) {
		if w := want[k]; e.State != w.State || !e.ClosedAt.Equal(w.ClosedAt) {
			t.Errorf("%v: recovered %v closed at %v, want %v closed at %v", k, e.State, e.ClosedAt, w.State, w.ClosedAt)
		}
	}
	for k, c := range closedAt {
		_, ok := got.Get(k)
		if alive := now.Sub(c) < tableCfg.Linger; ok != alive {
			t.Errorf("%v closed at %v: recovered %v at %v, want %v", k, c, ok, now, alive)
		}
	}

	live := newTable(t, tableCfg)
	k := keyN(7)
	r := syn(k, 99, clientN(7, 5), at(100))
	live.Observe(&r)
	j2, rcv := open(t, copyDir(t, crash), live, Config{})
	defer j2.Close()
	if e, _ := live.Get(k); e.Client != clientN(7, 5) {
		t.Errorf("key the capture filled first: client %v, want the capture's %v", e.Client, clientN(7, 5))
	}
	if rcv.Loaded != len(want)-1 {
		t.Errorf("Loaded %d, want %d (all but the key held)", rcv.Loaded, len(want)-1)
	}
}

// stepState is a segment's length after one step of the workload, and the
// table then.
type stepState struct {
	end  int
	want map[correlate.Key]correlate.Entry
}

// steppedJournal writes a journal of the workload's first steps, flushing
// after each, and returns the directory (holding the generation's
// snapshot), the segment and the state after each step.
func steppedJournal(t *testing.T, steps int) (string, []byte, []stepState) {
	dir := t.TempDir()
	src := newTable(t, tableCfg)
	j, _ := open(t, dir, src, Config{Interval: time.Hour})
	for n := range 10 {
		step(src, n)
	}
	// A generation whose snapshot holds the first steps; the segment
	// holds the rest.
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j, _ = open(t, dir, src, Config{Interval: time.Hour})
	_, segs, _ := generations(dir)
	seg := filepath.Join(dir, segName(segs[len(segs)-1]))
	states := []stepState{{end: headerLen, want: entries(src)}}
	for n := 10; n < 10+steps; n++ {
		step(src, n)
		if err := j.Flush(); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(seg)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, stepState{end: int(fi.Size()), want: entries(src)})
	}
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	if j.Stats().Compactions != 1 {
		t.Fatalf("a compaction ran during the steps: the test needs one segment")
	}
	base := t.TempDir()
	snaps, _, _ := generations(dir)
	snap, err := os.ReadFile(filepath.Join(dir, snapName(snaps[0])))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, snapName(snaps[0])), snap, 0o600); err != nil {
		t.Fatal(err)
	}
	return base, b, states
}

// checkPrefix recovers dir, whose segment was cut or corrupted at byte i,
// and checks that it holds the state after the last step that ended at
// or before intact; between two steps' ends (a step may write several
// records) every entry must be the one of either step.
func checkPrefix(t *testing.T, dir string, intact int, states []stepState, what string) {
	t.Helper()
	got, _ := recoveredInto(t, dir, time.Time{}, smallCfg)
	g := entries(got)
	k := 0
	for k+1 < len(states) && states[k+1].end <= intact {
		k++
	}
	if k+1 == len(states) || intact == states[k].end {
		if d := diff(states[k].want, g); d != "" {
			t.Fatalf("%s: recovered (-state after step %d +recovered):\n%s", what, k, d)
		}
		return
	}
	before, after := states[k].want, states[k+1].want
	same := func(e correlate.Entry, ok bool, w correlate.Entry, wok bool) bool {
		return ok == wok && e == w
	}
	for key := range union(before, after, g) {
		e, ok := g[key]
		b, bok := before[key]
		a, aok := after[key]
		// A step that replaces a key's entry removes it first.
		changed := !same(b, bok, a, aok)
		if !same(e, ok, b, bok) && !same(e, ok, a, aok) && (ok || !changed) {
			t.Fatalf("%s: %v recovered as %+v (held %v), neither the state before (%+v, %v) nor after (%+v, %v) step %d",
				what, key, e, ok, b, bok, a, aok, k+1)
		}
	}
}

func union(ms ...map[correlate.Key]correlate.Entry) map[correlate.Key]bool {
	u := map[correlate.Key]bool{}
	for _, m := range ms {
		for k := range m {
			u[k] = true
		}
	}
	return u
}

// withSegment writes b as the segment of base's snapshot.
func withSegment(t *testing.T, base string, b []byte) string {
	dir := base
	snaps, _, _ := generations(dir)
	if err := os.WriteFile(filepath.Join(dir, segName(snaps[0])), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestSegmentTruncated: a segment cut at any byte recovers the records
// wholly before the cut, counts the rest, and applies nothing of it.
func TestSegmentTruncated(t *testing.T) {
	base, seg, states := steppedJournal(t, 24)
	for i := range len(seg) + 1 {
		dir := withSegment(t, base, seg[:i])
		_, rcv := recoveredInto(t, dir, time.Time{}, smallCfg)
		intact := 0
		if i >= headerLen {
			intact = headerLen + recordsEnd(seg[headerLen:i])
		}
		if want := int64(i - max(intact, headerLen)); i >= headerLen && rcv.TailBytes != want {
			t.Fatalf("cut at %d: TailBytes %d, want %d", i, rcv.TailBytes, want)
		}
		if (rcv.TailErr == nil) != (i == intact || i == 0) && i >= headerLen {
			t.Fatalf("cut at %d (intact to %d): TailErr %v", i, intact, rcv.TailErr)
		}
		checkPrefix(t, dir, max(intact, headerLen), states, "cut at "+strconv.Itoa(i))
	}
}

// TestSegmentCorrupted: a segment with any one byte changed recovers the
// records before the one it hit, and nothing from there on.
func TestSegmentCorrupted(t *testing.T) {
	base, seg, states := steppedJournal(t, 24)
	ends := recordEnds(seg[headerLen:])
	for i := range seg {
		c := bytes.Clone(seg)
		c[i] ^= 0x5a
		dir := withSegment(t, base, c)
		intact := headerLen
		for _, e := range ends {
			if headerLen+e > i {
				break
			}
			intact = headerLen + e
		}
		_, rcv := recoveredInto(t, dir, time.Time{}, smallCfg)
		if rcv.TailErr == nil {
			t.Fatalf("byte %d changed: recovered without an error", i)
		}
		if i < headerLen && rcv.Records != 0 {
			t.Fatalf("header byte %d changed: %d records applied, want 0", i, rcv.Records)
		}
		checkPrefix(t, dir, intact, states, "byte "+strconv.Itoa(i)+" changed")
	}
}

// recordEnds returns the end of each intact record of b, a segment's
// records.
func recordEnds(b []byte) (ends []int) {
	for off := 0; off < len(b); {
		l := firstLen(b[off:])
		if l == 0 {
			break
		}
		off += l
		ends = append(ends, off)
	}
	return ends
}

// firstLen returns the length of the first record of b, CRC included, or
// 0 if it is not intact.
func firstLen(b []byte) int {
	for l := 1; l <= len(b); l++ {
		var im correlate.Image
		if n, recs, _ := im.Apply(b[:l]); recs == 1 {
			return n
		}
	}
	return 0
}

func recordsEnd(b []byte) int {
	var im correlate.Image
	n, _, _ := im.Apply(b)
	return n
}

// TestSnapshotCorrupt: a snapshot that is not intact is moved aside, and
// its segment is not applied to anything: recovery starts empty.
func TestSnapshotCorrupt(t *testing.T) {
	base, seg, _ := steppedJournal(t, 5)
	dir := withSegment(t, base, seg)
	snaps, _, _ := generations(dir)
	name := filepath.Join(dir, snapName(snaps[0]))
	b, _ := os.ReadFile(name)
	b[len(b)/2] ^= 1
	os.WriteFile(name, b, 0o600)
	got, rcv := recovered(t, dir, time.Time{})
	if got.Len() != 0 || rcv.Generation != 0 || len(rcv.Skipped) != 1 {
		t.Errorf("got %d entries, generation %d, skipped %v; want 0, 0, [%s]", got.Len(), rcv.Generation, rcv.Skipped, name)
	}
	if _, err := os.Stat(name + corruptSuffix); err != nil {
		t.Errorf("corrupt snapshot not moved aside: %v", err)
	}
}

// TestOverflow: when the writer falls behind and a shard's buffer fills,
// the changes dropped are counted and a compaction writes the table
// whole: nothing is lost on disk.
func TestOverflow(t *testing.T) {
	dir := t.TempDir()
	src := newTable(t, correlate.Config{Capacity: 1 << 12, Shards: 1, Linger: time.Hour})
	j, _ := open(t, dir, src, Config{Buffer: 4096, Interval: time.Hour})
	for n := range 1000 {
		step(src, n)
	}
	before := j.Stats()
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	st := j.Stats()
	if st.Overflows != 1 || st.Lost == 0 || st.Compactions != before.Compactions+1 {
		t.Errorf("stats %+v: want 1 overflow, changes lost, one more compaction than %d", st, before.Compactions)
	}
	got, _ := recovered(t, copyDir(t, dir), time.Time{})
	if d := diff(entries(src), entries(got)); d != "" {
		t.Errorf("recovered after an overflow (-table +recovered):\n%s", d)
	}
}

// TestConcurrent: capture workers, expiry and flushes at once, under the
// race detector; what is on disk then recovers to the table.
func TestConcurrent(t *testing.T) {
	dir := t.TempDir()
	src := newTable(t, correlate.Config{Capacity: 1 << 16, Linger: time.Hour})
	j, _ := open(t, dir, src, Config{CompactMin: 16 << 10, Interval: time.Millisecond})
	const workers, per = 4, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				n := w*per + i + 1<<16 // IPv4 keys only: steps of a worker never touch another's keys
				k := keyN(n)
				r := syn(k, uint32(n), clientN(n, 0), at(i))
				src.Observe(&r)
				if i%3 == 0 {
					r = fin(keyN(n-1), at(i))
					if i > 0 {
						src.Observe(&r)
					}
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if err := j.Flush(); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	got, _ := recovered(t, copyDir(t, dir), time.Time{})
	if d := diff(entries(src), entries(got)); d != "" {
		t.Errorf("recovered (-table +recovered):\n%s", d)
	}
	if st := j.Stats(); st.Compactions < 2 {
		t.Errorf("Compactions %d, want at least 2 (one at Open, one of the segment's growth)", st.Compactions)
	}
}

// TestFlushAfterClose: Flush after Close says so.
func TestFlushAfterClose(t *testing.T) {
	j, _ := open(t, t.TempDir(), newTable(t, tableCfg), Config{})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Flush(); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close: %v, want ErrClosed", err)
	}
	if err := j.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// logTo returns a logger writing text lines to b.
func logTo(b *syncbuf.Buffer) *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// TestSync: with Config.Sync every group is fsync'd before Flush returns;
// what the directory holds then recovers to the table.
func TestSync(t *testing.T) {
	dir := t.TempDir()
	src := newTable(t, tableCfg)
	j, _ := open(t, dir, src, Config{Sync: true, Interval: time.Hour})
	for n := range 200 {
		step(src, n)
		if n%50 == 49 {
			if err := j.Flush(); err != nil {
				t.Fatalf("Flush after step %d: %v", n, err)
			}
		}
	}
	got, _ := recovered(t, copyDir(t, dir), expiredAt(0, 199))
	if d := diff(entries(src), entries(got)); d != "" {
		t.Errorf("recovered (-table +recovered):\n%s", d)
	}
	if st := j.Stats(); st.Groups < 4 || st.WriteErrors != 0 {
		t.Errorf("stats %+v: want a group per Flush, no errors", st)
	}
}

// TestOpenInUse: a second toad on the same directory is refused while
// the first has it, and gets it once the first has closed.
func TestOpenInUse(t *testing.T) {
	dir := t.TempDir()
	first, _ := open(t, dir, newTable(t, tableCfg), Config{})
	_, _, err := Open(dir, newTable(t, tableCfg), Config{Now: noClock})
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second Open: %v, want ErrInUse naming %s", err, dir)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	open(t, dir, newTable(t, tableCfg), Config{})
}
