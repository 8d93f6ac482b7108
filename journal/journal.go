package journal

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/toad-project/toad/correlate"
)

// Defaults for a zero Config.
const (
	DefaultInterval      = 10 * time.Millisecond
	DefaultBuffer        = 64 << 10
	DefaultCompactRatio  = 4
	DefaultCompactMin    = 1 << 20
	DefaultRetryInterval = time.Second
	DefaultWarnEvery     = time.Minute
)

// Config configures a Journal. Its zero value writes a group every 10ms
// to the page cache, without fsync.
type Config struct {
	// Interval bounds how long a change waits before it is written; 0
	// means DefaultInterval.
	Interval time.Duration
	// Sync makes every group write wait for fsync, so that a change
	// survives a crash of the node, not only of the process.
	Sync bool
	// Buffer is how many bytes of changes each shard of the table holds
	// between writes (about 40 bytes a change); past it changes are
	// dropped, counted, and a compaction writes the table whole. 0 means
	// DefaultBuffer.
	Buffer int
	// CompactRatio and CompactMin bound the segment: a compaction starts
	// when it exceeds CompactRatio times the snapshot, and CompactMin
	// bytes. 0 means DefaultCompactRatio and DefaultCompactMin.
	CompactRatio int
	CompactMin   int64
	// RetryInterval is how often a journal whose disk failed tries to
	// write the table whole again; 0 means DefaultRetryInterval.
	RetryInterval time.Duration
	// WarnEvery bounds how often a failing disk is warned of: at once,
	// then at most once per WarnEvery; 0 means DefaultWarnEvery.
	WarnEvery time.Duration
	// Logger receives the warnings; nil discards them.
	Logger *slog.Logger
	// Now is the clock recovery expires closed connections by; nil means
	// time.Now. A func returning the zero time expires none.
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Buffer <= 0 {
		c.Buffer = DefaultBuffer
	}
	if c.CompactRatio <= 0 {
		c.CompactRatio = DefaultCompactRatio
	}
	if c.CompactMin <= 0 {
		c.CompactMin = DefaultCompactMin
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.WarnEvery <= 0 {
		c.WarnEvery = DefaultWarnEvery
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Stats are a journal's counters.
type Stats struct {
	Records     uint64 // change records written
	Groups      uint64 // group writes
	Bytes       uint64 // bytes written, segments and snapshots
	Compactions uint64 // compactions completed, the ones at Open and Close included
	// Overflows counts the drains that found changes dropped because a
	// shard's buffer was full, and Lost those changes; each overflow is
	// followed by a compaction.
	Overflows uint64
	Lost      uint64
	// Dropped counts change records not written because the disk failed;
	// the compaction that ends the failure writes what they changed.
	Dropped uint64
	// WriteErrors counts the writes, syncs and compactions that failed.
	WriteErrors uint64
	// Failing is true from a failed write until a compaction succeeds:
	// meanwhile a crash loses what changed since the failure.
	Failing bool
	// Size is what the current generation's files hold, in bytes.
	Size int64
}

// ErrFailing is returned, wrapped with the disk's error, by Flush and
// Close while the journal cannot write.
var ErrFailing = errors.New("journal cannot write")

// ErrClosed is returned by Flush after Close.
var ErrClosed = errors.New("journal closed")

// ErrInUse is returned by Open when another process has the directory.
var ErrInUse = errors.New("state directory in use by another toad")

// Journal keeps a table on disk; see the package documentation.
type Journal struct {
	dir  string
	lock *os.File // holds the directory's lock
	t    *correlate.Table
	cfg  Config
	log  *slog.Logger
	rec  *correlate.Recorder

	flushReq  chan chan error
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error

	records, groups, bytes, compactions atomic.Uint64
	overflows, lost, dropped, writeErrs atomic.Uint64
	failing                             atomic.Bool
	size                                atomic.Int64

	// Owned by Open, then by the writer goroutine.
	gen         uint64   // the highest generation in the directory
	cur         *segment // nil until a compaction succeeds
	curBroken   bool     // a write to cur failed: what follows would follow garbage
	next        *segment // the segment of the compaction running
	spoiled     bool     // a write to next failed: the compaction is void
	snapSize    int64
	needCompact bool // changes were lost, or a compaction failed
	again       bool // changes were lost while a compaction ran
	retryAt     time.Time
	lastErr     error
	buf         []byte
	results     chan compaction
	warnAt      time.Time
	failures    int // since the last warning
}

// compaction is the result of writing a generation's snapshot.
type compaction struct {
	gen  uint64
	size int64
	err  error
}

// Open recovers the table's content from dir into t (see Recovery), then
// keeps t on disk until Close. The directory is made (mode 0750) if
// missing. Open fails only when dir cannot be made or read; a disk that
// cannot be written leaves the journal failing (see Stats.Failing) and
// retrying, with t serving from memory.
func Open(dir string, t *correlate.Table, cfg Config) (*Journal, Recovery, error) {
	cfg.defaults()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, Recovery{}, fmt.Errorf("journal: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, Recovery{}, fmt.Errorf("journal: %w", err)
	}
	opened := false
	defer func() {
		if !opened {
			lock.Close()
		}
	}()
	removeTemps(dir)
	start := time.Now()
	im, rcv, err := recoverImage(dir)
	if err != nil {
		return nil, rcv, fmt.Errorf("journal: recover %s: %w", dir, err)
	}
	rcv.Loaded = t.LoadImage(im, cfg.Now())
	rcv.Took = time.Since(start)
	snaps, segs, err := generations(dir)
	if err != nil {
		return nil, rcv, fmt.Errorf("journal: %w", err)
	}
	r, err := t.Record(cfg.Buffer)
	if err != nil {
		return nil, rcv, fmt.Errorf("journal: %w", err)
	}
	j := &Journal{
		dir:      dir,
		lock:     lock,
		t:        t,
		cfg:      cfg,
		log:      cfg.Logger,
		rec:      r,
		flushReq: make(chan chan error),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		results:  make(chan compaction, 1),
	}
	for _, g := range [][]uint64{snaps, segs} {
		if len(g) > 0 {
			j.gen = max(j.gen, g[len(g)-1])
		}
	}
	// This run's first generation: the recovered content and whatever the
	// table held already, whole, with an empty segment after it. Until it
	// is in place the recovered generation stays, untouched.
	j.compactNow()
	go j.run()
	opened = true
	return j, rcv, nil
}

// Flush writes every change made before the call and returns once it is
// written (and synced, with Config.Sync). While the disk fails it first
// tries a compaction, and returns an error wrapping ErrFailing if that
// fails too.
func (j *Journal) Flush() error {
	reply := make(chan error, 1)
	select {
	case j.flushReq <- reply:
		return <-reply
	case <-j.done:
		return ErrClosed
	}
}

// Close writes the changes made before the call, compacts, stops
// recording and waits for the writer to end. It returns an error wrapping
// ErrFailing when the last state could not be written; the directory then
// holds the last generation written in full. Close is idempotent.
func (j *Journal) Close() error {
	j.closeOnce.Do(func() {
		close(j.stop)
		<-j.done
		j.lock.Close()
	})
	return j.closeErr
}

// Stats returns a copy of the journal's counters.
func (j *Journal) Stats() Stats {
	return Stats{
		Records:     j.records.Load(),
		Groups:      j.groups.Load(),
		Bytes:       j.bytes.Load(),
		Compactions: j.compactions.Load(),
		Overflows:   j.overflows.Load(),
		Lost:        j.lost.Load(),
		Dropped:     j.dropped.Load(),
		WriteErrors: j.writeErrs.Load(),
		Failing:     j.failing.Load(),
		Size:        j.size.Load(),
	}
}

func (j *Journal) run() {
	defer close(j.done)
	// The timer runs while changes wait to be written (at most Interval)
	// or a failed disk waits for its retry: an idle journal sleeps.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	armed := false
	arm := func(d time.Duration) {
		if !armed {
			timer.Reset(d)
			armed = true
		}
	}
	for {
		if j.next == nil && (j.needCompact || !j.healthy()) {
			arm(max(time.Until(j.retryAt), 0))
		}
		select {
		case <-j.rec.Pending():
			arm(j.cfg.Interval)
		case <-timer.C:
			armed = false
			j.commit()
			j.maybeCompact()
		case reply := <-j.flushReq:
			reply <- j.flush()
		case c := <-j.results:
			j.finish(c)
			j.maybeCompact()
		case <-j.stop:
			j.closeErr = j.shutdown()
			return
		}
	}
}

// healthy reports whether the current segment takes writes.
func (j *Journal) healthy() bool { return j.cur != nil && !j.curBroken }

// commit drains the table's changes and writes them as one group to the
// current segment and, during a compaction, to the next one.
func (j *Journal) commit() {
	var n int
	var lost uint64
	j.buf, n, lost = j.rec.Drain(j.buf[:0])
	if lost > 0 {
		j.lost.Add(lost)
		j.overflows.Add(1)
		if j.next != nil {
			j.again = true
		} else {
			j.needCompact = true
		}
	}
	if n == 0 {
		return
	}
	written := false
	for _, w := range []struct {
		seg    *segment
		broken *bool
	}{{j.cur, &j.curBroken}, {j.next, &j.spoiled}} {
		if w.seg == nil || *w.broken {
			continue
		}
		err := w.seg.append(j.buf)
		if err == nil && j.cfg.Sync {
			err = w.seg.f.Sync()
		}
		if err != nil {
			*w.broken = true
			j.failed("journal write failed: serving from memory, changes not written until a compaction succeeds", err)
			continue
		}
		j.bytes.Add(uint64(len(j.buf)))
		written = true
	}
	if !written {
		j.dropped.Add(uint64(n))
		return
	}
	j.records.Add(uint64(n))
	j.groups.Add(1)
	if j.cur != nil {
		j.size.Store(j.snapSize + j.cur.size)
	}
}

// failed counts a failure and warns of it, at once the first time, then
// at most once per WarnEvery.
func (j *Journal) failed(msg string, err error) {
	j.writeErrs.Add(1)
	j.lastErr = err
	if !j.healthy() {
		j.failing.Store(true)
	}
	j.failures++
	now := time.Now()
	if !j.warnAt.IsZero() && now.Sub(j.warnAt) < j.cfg.WarnEvery {
		return
	}
	j.log.Warn(msg, "dir", j.dir, "err", err, "failures", j.failures)
	j.warnAt, j.failures = now, 0
}

// maybeCompact starts a compaction when the segment has outgrown the
// snapshot, changes were lost, or the disk failed and a retry is due.
func (j *Journal) maybeCompact() {
	if j.next != nil {
		return
	}
	due := j.needCompact || !j.healthy()
	if j.healthy() && j.cur.size-int64(headerLen) >= max(j.cfg.CompactMin, int64(j.cfg.CompactRatio)*j.snapSize) {
		due = true
	}
	if due && !time.Now().Before(j.retryAt) {
		j.startCompaction()
	}
}

// startCompaction opens the next generation's segment, which takes every
// change drained from now on, and writes the snapshot in the background.
// The snapshot reads each shard after the segment opened, so replaying the
// segment on top of it is exact.
func (j *Journal) startCompaction() {
	gen := j.gen + 1
	seg, err := createSegment(j.dir, gen)
	if err != nil {
		j.compactionFailed(err)
		return
	}
	j.gen = gen
	j.next, j.spoiled, j.needCompact = seg, false, false
	j.bytes.Add(uint64(seg.size))
	go func() {
		size, err := writeSnapshot(j.dir, gen, j.t)
		j.results <- compaction{gen: gen, size: size, err: err}
	}()
}

// finish ends the compaction c reports: on success its generation becomes
// the current one and the older ones are removed.
func (j *Journal) finish(c compaction) {
	next := j.next
	j.next = nil
	if c.err == nil && j.spoiled {
		os.Remove(filepath.Join(j.dir, snapName(c.gen)))
		c.err = j.lastErr
	}
	if c.err != nil {
		next.remove(j.dir)
		j.compactionFailed(c.err)
		return
	}
	j.bytes.Add(uint64(c.size))
	if j.cur != nil {
		j.cur.f.Close()
	}
	j.cur, j.curBroken, j.snapSize = next, false, c.size
	j.size.Store(j.snapSize + j.cur.size)
	j.compactions.Add(1)
	j.removeOlder(c.gen)
	if j.again {
		j.again, j.needCompact = false, true
	}
	if j.failing.Swap(false) {
		j.log.Info("journal writes resumed: the table written whole", "dir", j.dir,
			"dropped", j.dropped.Load(), "write_errors", j.writeErrs.Load())
		j.warnAt, j.failures = time.Time{}, 0
	}
}

func (j *Journal) compactionFailed(err error) {
	j.needCompact = true
	j.retryAt = time.Now().Add(j.cfg.RetryInterval)
	j.failed("journal compaction failed: retrying", err)
}

// removeOlder removes the generations before gen.
func (j *Journal) removeOlder(gen uint64) {
	snaps, segs, err := generations(j.dir)
	if err != nil {
		return
	}
	for _, g := range snaps {
		if g < gen {
			os.Remove(filepath.Join(j.dir, snapName(g)))
		}
	}
	for _, g := range segs {
		if g < gen {
			os.Remove(filepath.Join(j.dir, segName(g)))
		}
	}
	syncDir(j.dir)
}

// compactNow runs a compaction to its end, waiting for the one running
// first; the changes made meanwhile are written after it.
func (j *Journal) compactNow() {
	if j.next != nil {
		j.finish(<-j.results)
	}
	j.startCompaction()
	if j.next != nil {
		j.finish(<-j.results)
	}
	j.commit()
}

// flush serves Flush.
func (j *Journal) flush() error {
	j.commit()
	if !j.healthy() || j.needCompact || j.again {
		j.compactNow()
	}
	j.maybeCompact()
	if !j.healthy() {
		return fmt.Errorf("%w: %w", ErrFailing, j.lastErr)
	}
	return nil
}

// shutdown serves Close.
func (j *Journal) shutdown() error {
	j.commit()
	j.compactNow()
	j.rec.Stop()
	if j.cur != nil {
		j.cur.f.Close()
	}
	if !j.healthy() {
		return fmt.Errorf("%w: %w", ErrFailing, j.lastErr)
	}
	return nil
}
