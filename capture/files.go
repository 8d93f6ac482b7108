package capture

import (
	"bufio"
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/toad-project/toad/decode"
)

// FilesConfig configures ReplayFiles. The zero value decodes the default
// dialects, passes every record on, and opens files with os.Open ("-"
// being standard input).
type FilesConfig struct {
	// Decoder decodes the frames; nil means decode.New(nil). It is used
	// by several goroutines at once, which a Decoder allows.
	Decoder *decode.Decoder
	// Keep, when set, says which records the sink is given; the others
	// are decoded and counted, and dropped before the merge. A sink that
	// only follows handshakes, TOAs and closes lets the merge carry a
	// twentieth of the records of a typical capture.
	Keep func(*decode.Record) bool
	// Open opens a capture file by name; nil opens files to be read
	// through a buffer, not mapped (see openFile), and os.Stdin for "-".
	// The file is opened twice: once to read the time of its first
	// packet, once to replay it (standard input once only).
	Open func(name string) (io.ReadCloser, error)
	// Done, when set, is called as each file has been read, in the
	// order they finish.
	Done func(File)
}

// File is one capture file of ReplayFiles.
type File struct {
	// Name is the file's name as given.
	Name string
	// Named is its position in the names given.
	Named int
	// SameAs is, for a file named twice, the name it was first given as;
	// such a file is read once, under that name.
	SameAs string
	// Start is the time of its first packet; zero when it holds none or
	// it could not be read ahead.
	Start time.Time
	// First and Last are the earliest and latest capture times of its
	// records; zero when it has none.
	First, Last time.Time
	// Stats are its counters.
	Stats Stats
}

// Records reports whether the file held any record.
func (f *File) Records() bool { return !f.First.IsZero() }

// recordBatch is a batch of records on their way from a file's reader to
// the merge.
type recordBatch struct{ recs []decode.Record }

const (
	batchLen     = 1024
	batchesAhead = 3 // batches in flight per file being read
	peekLen      = 64 << 10
)

// ReplayFiles replays capture files as one capture taken in one go: in
// capture-time order whatever order they are named in, their records
// merged by time where the files overlap, and sink is an Expirer's clock
// kept as Replay keeps it. It returns the files in the order they were
// read: by the time of their first packet, then by name, so that the
// same files give the same order however they are named. Files named
// twice are read once.
//
// Each file is read by Replay in a goroutine of its own, so that decoding
// runs beside the sink; a file is only opened once the merge reaches the
// time of its first packet, so that rotated files are read one after the
// other, as many at once as overlap. Records of the same time go in
// file order, then in their order within the file.
//
// An error reading a file stops the replay and names the file; the files
// read so far are returned with it. ctx cancels it.
func ReplayFiles(ctx context.Context, names []string, cfg FilesConfig, sink Sink) ([]File, error) {
	if cfg.Decoder == nil {
		cfg.Decoder = decode.New(nil)
	}
	if cfg.Open == nil {
		cfg.Open = openFile
	}
	m := &merge{cfg: cfg, sink: sink}
	m.exp, _ = sink.(Expirer)
	files, err := m.plan(names)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m.ctx = ctx
	err = m.run(files)
	cancel()
	m.wg.Wait() // the readers' fields are the merge's from here
	var read, twice []File
	for _, f := range files {
		switch {
		case f.SameAs != "":
			twice = append(twice, f.File)
		case f.started:
			read = append(read, f.File)
		}
	}
	return append(read, twice...), err
}

// openFile opens name, or standard input for "-".
func openFile(name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, errors.Unwrap(err) // the *PathError's path is the name the caller gives
	}
	return streamed{f}, nil
}

// streamed is a file Replay reads as a stream.
type streamed struct{ *os.File }

// mergeFile is a file of the merge and its reader's state.
type mergeFile struct {
	File
	rank    int       // position in capture order
	empty   bool      // it holds no packet
	ahead   io.Reader // for standard input: what was read ahead, then the rest
	started bool
	full    chan *recordBatch // batches read, closed after the last
	free    chan *recordBatch // batches the merge is done with
	cur     *recordBatch
	i       int   // the next record in cur
	err     error // Replay's, once full is closed
}

func (f *mergeFile) head() *decode.Record { return &f.cur.recs[f.i] }

type merge struct {
	ctx  context.Context
	cfg  FilesConfig
	sink Sink
	exp  Expirer
	wg   sync.WaitGroup

	nextExpire, last time.Time
}

// plan reads the time of every file's first packet and returns the files
// in capture order.
func (m *merge) plan(names []string) ([]*mergeFile, error) {
	files := make([]*mergeFile, 0, len(names))
	type named struct {
		fi   os.FileInfo
		name string
	}
	var seen []named // the files stat'ed so far, to tell one named twice
	for i, name := range names {
		f := &mergeFile{File: File{Name: name, Named: i}}
		if fi, err := os.Stat(name); err == nil && name != "-" {
			if j := slices.IndexFunc(seen, func(n named) bool { return os.SameFile(n.fi, fi) }); j >= 0 {
				f.SameAs = seen[j].name
				files = append(files, f)
				continue
			}
			seen = append(seen, named{fi, name})
		}
		rc, err := m.cfg.Open(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		br := bufio.NewReaderSize(rc, peekLen)
		b, _ := br.Peek(peekLen) // a shorter file, or a read error Replay will meet again
		f.Start, f.empty = firstPacketTime(b)
		if name == "-" {
			f.ahead = br // standard input is read once
		} else {
			rc.Close()
		}
		files = append(files, f)
	}
	// Files with no known start go first, so that an unreadable one fails
	// before anything is printed, then the rest by start and name, then
	// those without packets.
	slices.SortStableFunc(files, func(a, b *mergeFile) int {
		return cmp.Or(cmpBool(a.empty, b.empty), a.Start.Compare(b.Start), cmp.Compare(a.Name, b.Name))
	})
	for i, f := range files {
		f.rank = i
	}
	return files, nil
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// firstPacketTime reads the time of the first packet of a capture that
// starts with b: the zero time when b does not hold one whole, and empty
// set when b is a whole capture of no packet.
func firstPacketTime(b []byte) (first time.Time, empty bool) {
	src, err := openSource(bytes.NewReader(b), pcapRecordLen+MaxRecordLen)
	if err != nil {
		return time.Time{}, false
	}
	defer src.close()
	_, ci, err := src.ZeroCopyReadPacketData()
	if err != nil {
		return time.Time{}, err == io.EOF // the readers' own EOF: the capture ends cleanly
	}
	return ci.Timestamp, false
}

// run reads the files and merges their records into the sink.
func (m *merge) run(files []*mergeFile) error {
	pending := files
	var active fileHeap
	for {
		// Every file that may hold a record before the earliest of those
		// being read is opened first.
		for len(pending) > 0 {
			f := pending[0]
			if f.SameAs != "" {
				pending = pending[1:]
				continue
			}
			if len(active) > 0 && f.Start.After(active[0].head().Time) {
				break
			}
			pending = pending[1:]
			if err := m.start(f); err != nil {
				return err
			}
			if ok, err := m.advance(f); err != nil {
				return err
			} else if ok {
				heap.Push(&active, f)
			}
		}
		if len(active) == 0 {
			break
		}
		f := active[0]
		// f goes on until another file, read or not yet, comes first.
		var limit *mergeFile
		if len(active) > 1 {
			limit = active[1]
			if len(active) > 2 && active.less(active[2], limit) {
				limit = active[2]
			}
		}
		var until time.Time // the next file to open starts then
		if len(pending) > 0 {
			until = pending[0].Start
		}
		for {
			r := f.head()
			if limit != nil && !lessRec(r, f, limit.head(), limit) || !until.IsZero() && r.Time.After(until) {
				break
			}
			m.observe(r)
			f.i++
			if f.i < len(f.cur.recs) {
				continue
			}
			ok, err := m.advance(f)
			if err != nil {
				return err
			}
			if !ok {
				heap.Pop(&active)
				f = nil
			}
			break
		}
		if f != nil {
			heap.Fix(&active, 0)
		}
	}
	if m.exp == nil {
		return nil
	}
	// The clock ends at the capture's last record, passed on or not.
	for _, f := range files {
		if f.Last.After(m.last) {
			m.last = f.Last
		}
	}
	if !m.last.IsZero() {
		m.exp.Expire(m.last)
	}
	return nil
}

// observe passes r on, keeping an Expirer's clock as Replay does.
func (m *merge) observe(r *decode.Record) {
	if m.exp != nil && !r.Time.Before(m.nextExpire) {
		if !m.nextExpire.IsZero() {
			m.exp.Expire(r.Time)
		}
		m.nextExpire = r.Time.Add(ExpireEvery)
	}
	if r.Time.After(m.last) {
		m.last = r.Time
	}
	m.sink.Observe(r)
}

// start opens f and starts its reader.
func (m *merge) start(f *mergeFile) error {
	f.started = true
	rd := f.ahead
	var closer io.Closer
	if rd == nil {
		rc, err := m.cfg.Open(f.Name)
		if err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		rd, closer = rc, rc
	}
	f.full = make(chan *recordBatch, batchesAhead)
	f.free = make(chan *recordBatch, batchesAhead)
	for range batchesAhead {
		f.free <- &recordBatch{recs: make([]decode.Record, 0, batchLen)}
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(f.full)
		if closer != nil {
			defer closer.Close()
		}
		f.Stats, f.err = m.read(f, rd)
	}()
	return nil
}

// read replays rd, f's file, into batches for the merge. It runs in f's
// goroutine; the merge reads f's fields it sets once f.full is closed.
func (m *merge) read(f *mergeFile, rd io.Reader) (Stats, error) {
	var b *recordBatch
	ctx := m.ctx
	get := func() bool {
		select {
		case b = <-f.free:
			b.recs = b.recs[:0]
			return true
		case <-ctx.Done():
			return false
		}
	}
	send := func() bool {
		select {
		case f.full <- b:
			b = nil
			return true
		case <-ctx.Done():
			return false
		}
	}
	if !get() {
		return Stats{}, ctx.Err()
	}
	stopped := false
	sink := SinkFunc(func(r *decode.Record) {
		if stopped {
			return
		}
		if f.First.IsZero() || r.Time.Before(f.First) {
			f.First = r.Time
		}
		if r.Time.After(f.Last) {
			f.Last = r.Time
		}
		if m.cfg.Keep != nil && !m.cfg.Keep(r) {
			return
		}
		b.recs = append(b.recs, *r)
		if len(b.recs) == cap(b.recs) && (!send() || !get()) {
			stopped = true // the merge has stopped; Replay notices ctx soon
		}
	})
	st, err := Replay(ctx, rd, m.cfg.Decoder, sink)
	if err == nil && stopped {
		err = ctx.Err()
	}
	if err == nil && b != nil && len(b.recs) > 0 {
		if !send() {
			err = ctx.Err()
		}
	}
	return st, err
}

// advance makes f's next record its head, waiting for its reader, and
// reports whether there is one. When f is done, it calls Done, or returns
// f's error.
func (m *merge) advance(f *mergeFile) (bool, error) {
	if f.cur != nil {
		f.free <- f.cur // never blocks: the reader holds the rest
		f.cur = nil
	}
	for {
		var b *recordBatch
		var ok bool
		select {
		case b, ok = <-f.full:
		case <-m.ctx.Done():
			return false, m.ctx.Err()
		}
		if !ok {
			if f.err != nil {
				return false, fmt.Errorf("%s: %w", f.Name, f.err)
			}
			if m.cfg.Done != nil {
				m.cfg.Done(f.File)
			}
			return false, nil
		}
		if len(b.recs) > 0 {
			f.cur, f.i = b, 0
			return true, nil
		}
		f.free <- b
	}
}

// lessRec orders record a of file fa before record b of file fb: by time,
// then by the files' capture order.
func lessRec(a *decode.Record, fa *mergeFile, b *decode.Record, fb *mergeFile) bool {
	if c := a.Time.Compare(b.Time); c != 0 {
		return c < 0
	}
	return fa.rank < fb.rank
}

// fileHeap is the files being read, by their next record.
type fileHeap []*mergeFile

func (h fileHeap) less(a, b *mergeFile) bool { return lessRec(a.head(), a, b.head(), b) }
func (h fileHeap) Len() int                  { return len(h) }
func (h fileHeap) Less(i, j int) bool        { return h.less(h[i], h[j]) }
func (h fileHeap) Swap(i, j int)             { h[i], h[j] = h[j], h[i] }
func (h *fileHeap) Push(x any)               { *h = append(*h, x.(*mergeFile)) }
func (h *fileHeap) Pop() any {
	old := *h
	f := old[len(old)-1]
	*h = old[:len(old)-1]
	return f
}

// Seam is where one file of a replay meets the next in capture order: a
// gap in the capture, or an overlap whose packets were merged.
type Seam struct {
	// Before is the file that ends, After the file that starts.
	Before, After string
	// End is when the files read before After end (the latest record of
	// any of them), Start when After starts.
	End, Start time.Time
}

// Gap is how long the capture holds nothing between the files: negative
// for an overlap.
func (s Seam) Gap() time.Duration { return s.Start.Sub(s.End) }

// Seams returns the gaps longer than gap and every overlap between files
// in capture order, as ReplayFiles returns them. Files without records
// are passed over.
func Seams(files []File, gap time.Duration) []Seam {
	var out []Seam
	var end time.Time
	before := ""
	for _, f := range files {
		if !f.Records() {
			continue
		}
		if before != "" {
			if d := f.First.Sub(end); d > gap || d < 0 {
				out = append(out, Seam{Before: before, After: f.Name, End: end, Start: f.First})
			}
		}
		if f.Last.After(end) || before == "" {
			end, before = f.Last, f.Name
		}
	}
	return out
}
