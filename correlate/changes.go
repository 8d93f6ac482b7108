package correlate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	mbits "math/bits"
	"sync/atomic"
	"time"
)

// A change record is one change to the table as a journal keeps it, all
// integers big-endian:
//
//	op byte   bits 7-6 the operation, bits 5-0 the snapshot entry flags
//	          (only wKey6 for the operations on a key)
//	put       the rest of a snapshot entry: the entry as it now is, in
//	          place of any the key held
//	close     key, closed at int64 (Unix ns): the key's entry began closing
//	remove    key: the key's entry is gone (evicted, expired as idle,
//	          replaced). A closing entry whose linger ends is not
//	          recorded: its close time and the linger say when it goes.
//	          (So a table recovered with a longer Linger than the one
//	          that wrote the records holds, closing, entries the other
//	          had already dropped, until the longer linger ends.)
//	syn       key, syn uint32: a SYN confirmed the entry's initial
//	          sequence number
//	crc       CRC-32C of the record's bytes before it
//
// A key is peer address (4 or 16 bytes), peer port, local address, local
// port, as in a snapshot entry. Every record but close sets what it names
// whole, and a close needs only the entry it closes, so replaying records
// on top of a snapshot taken after they were made leaves each key as the
// last record says: a journal may overlap the snapshot it follows.
const (
	opPut    = 0 << 6
	opClose  = 1 << 6
	opRemove = 2 << 6
	opSyn    = 3 << 6
	opMask   = 3 << 6

	crcLen = 4
)

// ErrBadRecord is returned, wrapped, by Image.Apply for bytes that are not
// an intact change record: a torn or corrupt tail.
var ErrBadRecord = errors.New("bad change record")

// shardLog is a shard's changes not yet drained, written under the shard's
// lock.
type shardLog struct {
	buf  []byte
	max  int    // bytes buf may hold; past it changes are dropped
	lost uint64 // changes dropped since the last drain

	// The first change after a drain sets the shard's bit in the
	// recorder's dirty set, so that a drain visits only the shards that
	// changed, and the first of any shard signals pending, so that a
	// writer with nothing to write sleeps and is woken once a drain.
	dirty    *atomic.Uint64
	bit      uint64
	signaled *atomic.Bool
	pending  chan struct{}
}

// mark notes that the shard has changes to drain, before the first one
// since the last drain is appended.
func (l *shardLog) mark() {
	if len(l.buf) == 0 && l.lost == 0 {
		l.dirty.Or(l.bit)
		if !l.signaled.Load() && l.signaled.CompareAndSwap(false, true) {
			select {
			case l.pending <- struct{}{}:
			default:
			}
		}
	}
}

// wireFlags maps a slot's flags to a snapshot entry's.
var wireFlags = func() (m [32]uint8) {
	for f := range m {
		for _, x := range [...]struct{ f, w uint8 }{
			{fClient6, wClient6}, {fHasPort, wHasPort}, {fClosing, wClosing},
			{fHasSyn, wHasSyn}, {fSynInferred, wSynInferred},
		} {
			if uint8(f)&x.f != 0 {
				m[f] |= x.w
			}
		}
	}
	return m
}()

// logPut, logClose, logRemove and logSyn record a change to ref's entry in
// the shard's log, when the table is recording. The shard is locked.
func (s *shard) logPut(ref uint32) {
	if s.log != nil {
		s.log.put(s, ref)
	}
}

func (s *shard) logClose(ref uint32) {
	if s.log != nil {
		s.log.keyed(s, ref, opClose)
	}
}

func (s *shard) logRemove(ref uint32) {
	if s.log != nil {
		s.log.keyed(s, ref, opRemove)
	}
}

func (s *shard) logSyn(ref uint32) {
	if s.log != nil {
		s.log.keyed(s, ref, opSyn)
	}
}

// maxChange is the longest change record, without its CRC.
const maxChange = 1 + 3*(16+2) + 2 + 8 + 8 + 4

func (l *shardLog) room() bool {
	if len(l.buf)+maxChange > l.max {
		l.lost++
		return false
	}
	return true
}

func (l *shardLog) put(s *shard, ref uint32) {
	l.mark()
	if !l.room() {
		return
	}
	v, f := s.hdr(ref)
	b := appendKey(l.buf, s, ref, opPut|wireFlags[*f&31])
	if *f&fClient6 != 0 {
		b = append(b, v.client[:]...)
	} else {
		b = append(b, v.client[:4]...)
	}
	be := binary.BigEndian
	b = be.AppendUint16(b, v.cport)
	b = append(b, v.dkind, v.dlen)
	b = be.AppendUint64(b, uint64(v.first))
	b = be.AppendUint64(b, uint64(v.stamp))
	l.buf = be.AppendUint32(b, v.syn)
}

func (l *shardLog) keyed(s *shard, ref uint32, op uint8) {
	l.mark()
	if !l.room() {
		return
	}
	b := appendKey(l.buf, s, ref, op)
	switch op {
	case opClose:
		b = binary.BigEndian.AppendUint64(b, uint64(s.val(ref).stamp))
	case opSyn:
		b = binary.BigEndian.AppendUint32(b, s.val(ref).syn)
	}
	l.buf = b
}

// appendKey appends the op byte op (wKey6 added for an IPv6 key) and ref's
// key.
func appendKey(b []byte, s *shard, ref uint32, op uint8) []byte {
	be := binary.BigEndian
	if ref&ref6 != 0 {
		k := &s.a6.at(ref&refSlot - 1).k
		b = append(b, op|wKey6)
		b = append(b, k.peer[:]...)
		b = be.AppendUint16(b, k.pport)
		b = append(b, k.local[:]...)
		return be.AppendUint16(b, k.lport)
	}
	k := &s.a4.at(ref&refSlot - 1).k
	b = append(b, op)
	b = be.AppendUint32(b, k.peer)
	b = be.AppendUint16(b, k.pport)
	b = be.AppendUint32(b, k.local)
	return be.AppendUint16(b, k.lport)
}

// changeLen returns the length of the change record starting with op byte
// c, without its CRC, or 0 for a byte no record starts with.
func changeLen(c uint8) int {
	key := 12
	if c&wKey6 != 0 {
		key = 36
	}
	switch c & opMask {
	case opPut:
		if c&^opMask&^wKnown != 0 {
			return 0
		}
		return 1 + recordLen(c&^opMask)
	case opClose:
		if c&^opMask&^wKey6 != 0 {
			return 0
		}
		return 1 + key + 8
	case opRemove:
		if c&^opMask&^wKey6 != 0 {
			return 0
		}
		return 1 + key
	}
	if c&^opMask&^wKey6 != 0 {
		return 0
	}
	return 1 + key + 4
}

// Recorder collects the table's changes, for a journal to write: every
// entry the table takes in (a TOA, a snapshot loaded), every close, every
// removal (eviction, idle expiry, a new connection on the key; not the
// end of a closed connection's linger, which its close implies) and every
// initial sequence number a SYN confirms. Each shard appends its changes,
// under its own lock, to a buffer of its own, so recording never blocks
// and costs a few tens of nanoseconds a change. A full buffer drops the
// change and counts it: Drain reports it, and the journal must then write
// the table whole. Drain and Stop are for one goroutine at a time.
type Recorder struct {
	t        *Table
	logs     []*shardLog     // each shard's
	spare    [][]byte        // each shard's other buffer
	dirty    []atomic.Uint64 // the shards with changes, a bit each
	signaled atomic.Bool     // pending was signaled since the last drain
	pending  chan struct{}
}

// ErrRecording is returned by Record when the table is already recording.
var ErrRecording = errors.New("table already recording its changes")

// Record starts recording the table's changes, each shard buffering up to
// perShard bytes of them between drains (at least 4096). A table has one
// recorder at a time.
func (t *Table) Record(perShard int) (*Recorder, error) {
	perShard = max(perShard, 4096)
	// Shard 0's lock, held throughout, makes Record and Stop atomic.
	s0 := &t.shards[0]
	s0.mu.Lock()
	defer s0.mu.Unlock()
	if s0.log != nil {
		return nil, ErrRecording
	}
	r := &Recorder{t: t, spare: make([][]byte, len(t.shards)), logs: make([]*shardLog, len(t.shards)),
		dirty: make([]atomic.Uint64, (len(t.shards)+63)/64), pending: make(chan struct{}, 1)}
	for i := range t.shards {
		r.logs[i] = &shardLog{buf: make([]byte, 0, min(perShard, 16<<10)), max: perShard,
			dirty: &r.dirty[i/64], bit: 1 << (i % 64), signaled: &r.signaled, pending: r.pending}
		r.spare[i] = make([]byte, 0, min(perShard, 16<<10))
	}
	for i := len(t.shards) - 1; i > 0; i-- {
		s := &t.shards[i]
		s.mu.Lock()
		s.log = r.logs[i]
		s.mu.Unlock()
	}
	s0.log = r.logs[0]
	return r, nil
}

// Pending receives a value when changes were recorded since the last
// drain: a writer waits on it rather than polling an idle table. A value
// may come for changes a drain has already taken.
func (r *Recorder) Pending() <-chan struct{} { return r.pending }

// Drain appends to dst the changes recorded since the last drain, each
// record followed by its CRC-32C, shard by shard: the changes to any one
// key stay in order. It returns how many records it appended and how many
// changes were dropped meanwhile because a shard's buffer was full. It
// visits only the shards that changed.
func (r *Recorder) Drain(dst []byte) (out []byte, records int, lost uint64) {
	// Cleared before the dirty bits are taken: a change marked after
	// that signals again.
	r.signaled.Store(false)
	for w := range r.dirty {
		for bits := r.dirty[w].Swap(0); bits != 0; bits &= bits - 1 {
			i := w*64 + mbits.TrailingZeros64(bits)
			var n int
			var l uint64
			dst, n, l = r.drainShard(dst, i)
			records += n
			lost += l
		}
	}
	return dst, records, lost
}

// drainShard appends shard i's changes to dst.
func (r *Recorder) drainShard(dst []byte, i int) (out []byte, records int, lost uint64) {
	l, s := r.logs[i], &r.t.shards[i]
	s.mu.Lock()
	if s.log != l || len(l.buf) == 0 && l.lost == 0 {
		s.mu.Unlock()
		return dst, 0, 0
	}
	full := l.buf
	l.buf = r.spare[i][:0]
	lost, l.lost = l.lost, 0
	s.mu.Unlock()
	for b := full; len(b) > 0; {
		n := changeLen(b[0])
		dst = append(dst, b[:n]...)
		dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(b[:n], castagnoli))
		b = b[n:]
		records++
	}
	r.spare[i] = full[:0]
	return dst, records, lost
}

// Stop ends the recording; changes not drained are discarded. Stop is
// idempotent.
func (r *Recorder) Stop() {
	s0 := &r.t.shards[0]
	s0.mu.Lock()
	defer s0.mu.Unlock()
	if s0.log != r.logs[0] {
		return
	}
	for i := len(r.t.shards) - 1; i > 0; i-- {
		s := &r.t.shards[i]
		s.mu.Lock()
		s.log = nil
		s.mu.Unlock()
	}
	s0.log = nil
}

// Image is a table's content rebuilt outside any table from a snapshot and
// the change records that followed it, for a journal's recovery. Its zero
// value is empty and ready to use; it is not safe for concurrent use.
type Image struct {
	recs []srec
	idx  map[key6]int32 // the live records of recs
}

// ReadSnapshot replaces the image's content with the snapshot r holds,
// which must be intact (see Table.ReadSnapshot); on error the image is left
// as it was.
func (im *Image) ReadSnapshot(r io.Reader) error {
	recs, err := readSnapshot(r)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	idx := make(map[key6]int32, len(recs))
	for i := range recs {
		idx[recs[i].k] = int32(i)
	}
	im.recs, im.idx = recs, idx
	return nil
}

// Len returns how many entries the image holds.
func (im *Image) Len() int { return len(im.idx) }

// Apply applies the change records at the start of b in order, each whole
// or not at all, and returns how many bytes and records it applied. It
// stops at the end of b, or at the first record that is incomplete or
// fails its check, and then returns an error wrapping ErrBadRecord: what
// follows a bad record is never applied, since a record lost could make a
// later one wrong.
func (im *Image) Apply(b []byte) (n, records int, err error) {
	if im.idx == nil {
		im.idx = make(map[key6]int32)
	}
	for n < len(b) {
		rest := b[n:]
		l := changeLen(rest[0])
		switch {
		case l == 0:
			return n, records, fmt.Errorf("%w: record %d at offset %d: unknown operation byte %#x", ErrBadRecord, records, n, rest[0])
		case len(rest) < l+crcLen:
			return n, records, fmt.Errorf("%w: record %d at offset %d: truncated after %d of %d bytes", ErrBadRecord, records, n, len(rest), l+crcLen)
		}
		if got, want := binary.BigEndian.Uint32(rest[l:]), crc32.Checksum(rest[:l], castagnoli); got != want {
			return n, records, fmt.Errorf("%w: record %d at offset %d: checksum %#08x, want %#08x", ErrBadRecord, records, n, got, want)
		}
		if err := im.apply(rest[:l]); err != nil {
			return n, records, fmt.Errorf("%w: record %d at offset %d: %w", ErrBadRecord, records, n, err)
		}
		n += l + crcLen
		records++
	}
	return n, records, nil
}

func (im *Image) apply(b []byte) error {
	c := b[0]
	if c&opMask == opPut {
		var r srec
		r.decode(c&^opMask, b[1:])
		if r.v.dkind == 0 {
			return errors.New("entry has no TOA dialect")
		}
		if i, ok := im.idx[r.k]; ok {
			im.recs[i] = r
			return nil
		}
		im.idx[r.k] = int32(len(im.recs))
		im.recs = append(im.recs, r)
		return nil
	}
	k, rest := decodeKey(c&wKey6 != 0, b[1:])
	i, ok := im.idx[k]
	switch c & opMask {
	case opRemove:
		delete(im.idx, k)
	case opClose:
		if ok {
			r := &im.recs[i]
			r.f |= fClosing
			r.v.stamp = int64(binary.BigEndian.Uint64(rest))
		}
	case opSyn:
		if ok {
			r := &im.recs[i]
			r.f = r.f&^fSynInferred | fHasSyn
			r.v.syn = binary.BigEndian.Uint32(rest)
		}
	}
	return nil
}

func decodeKey(wide bool, b []byte) (k key6, rest []byte) {
	be := binary.BigEndian
	addr := func(a *[16]byte) {
		if wide {
			copy(a[:], b)
			b = b[16:]
		} else {
			*a = mapped(be.Uint32(b))
			b = b[4:]
		}
	}
	addr(&k.peer)
	k.pport, b = be.Uint16(b), b[2:]
	addr(&k.local)
	k.lport, b = be.Uint16(b), b[2:]
	return k, b
}

// LoadImage adds the entries of im to the table, as ReadSnapshot adds a
// snapshot's, and returns how many it added: closing entries whose linger
// ended by now are skipped (a zero now skips none), as are untrusted peers
// and keys the table already holds (a live capture's). Open entries are
// never skipped as idle, since a journal keeps no record of their
// segments: with an IdleTimeout, each starts a fresh idle period at now.
func (t *Table) LoadImage(im *Image, now time.Time) int {
	recs := make([]srec, 0, len(im.idx))
	for _, i := range im.idx {
		recs = append(recs, im.recs[i])
	}
	return t.load(recs, now, false)
}
