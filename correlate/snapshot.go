package correlate

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"time"
)

// A snapshot is, all integers big-endian:
//
//	header   "TOADCTBL", version uint16 (1), reserved uint16 (0)
//	entries  each: flags byte, then
//	           peer addr (4 or 16 bytes), peer port uint16,
//	           local addr (4 or 16), local port uint16,
//	           client addr (4 or 16), client port uint16,
//	           dialect kind byte, dialect length byte,
//	           first seen int64, stamp int64 (Unix ns), syn uint32
//	trailer  0xFF, entry count uint64, CRC-32C of all the bytes before it
//
// Flags say which addresses are 16 bytes long and carry the entry's state;
// the stamp is when a closing entry began closing, or when an open one was
// last seen. The count sits in the trailer so that a live table can be
// written shard by shard without buffering it whole.

const (
	snapMagic   = "TOADCTBL"
	snapVersion = 1
	snapEnd     = 0xFF
	maxRecord   = 1 + 3*(16+2) + 2 + 8 + 8 + 4
)

// Wire flags of a snapshot entry.
const (
	wKey6 = 1 << iota
	wClient6
	wHasPort
	wClosing
	wHasSyn
	wSynInferred
	wKnown = 1<<iota - 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadSnapshot is returned, wrapped, by ReadSnapshot for input that is
// not a complete, intact snapshot this version of toad reads. Nothing of
// such input is loaded.
var ErrBadSnapshot = errors.New("bad snapshot")

// srec is one entry as a snapshot carries it.
type srec struct {
	k key6 // IPv4 addresses IPv4-mapped
	f uint8
	v val
}

// WriteSnapshot writes every entry of the table to w. It copies one shard
// at a time and writes with no lock held, so a slow w never stalls the
// capture; entries changed meanwhile may be written either way.
func (t *Table) WriteSnapshot(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	crc := crc32.New(castagnoli)
	mw := io.MultiWriter(bw, crc)
	b := make([]byte, 0, 2*maxRecord)
	b = append(b, snapMagic...)
	b = binary.BigEndian.AppendUint16(b, snapVersion)
	b = binary.BigEndian.AppendUint16(b, 0)
	if _, err := mw.Write(b); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	var n uint64
	var buf []srec
	for i := range t.shards {
		buf = t.shards[i].appendRecords(buf[:0])
		for j := range buf {
			if _, err := mw.Write(buf[j].append(b[:0])); err != nil {
				return fmt.Errorf("write snapshot: %w", err)
			}
		}
		n += uint64(len(buf))
	}
	b = append(b[:0], snapEnd)
	b = binary.BigEndian.AppendUint64(b, n)
	if _, err := mw.Write(b); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	if _, err := bw.Write(binary.BigEndian.AppendUint32(b[:0], crc.Sum32())); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

func (s *shard) appendRecords(buf []srec) []srec {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, l := range [2]*list{&s.open, &s.closing} {
		for ref := l.head; ref != 0; ref = s.val(ref).next {
			v, f := s.hdr(ref)
			r := srec{v: *v, f: *f}
			r.v.prev, r.v.next = 0, 0
			if ref&ref6 != 0 {
				r.k = s.a6.at(ref&refSlot - 1).k
			} else {
				k := s.a4.at(ref&refSlot - 1).k
				r.k = key6{peer: mapped(k.peer), local: mapped(k.local), pport: k.pport, lport: k.lport}
			}
			buf = append(buf, r)
		}
	}
	return buf
}

func mapped(a uint32) (b [16]byte) {
	b[10], b[11] = 0xff, 0xff
	binary.BigEndian.PutUint32(b[12:], a)
	return b
}

func is4in6(b *[16]byte) bool {
	return [12]byte(b[:12]) == [12]byte{10: 0xff, 11: 0xff}
}

// append appends r's wire form to b.
func (r *srec) append(b []byte) []byte {
	var wf uint8
	key6 := !is4in6(&r.k.peer) || !is4in6(&r.k.local)
	if key6 {
		wf |= wKey6
	}
	for _, m := range [...]struct{ f, w uint8 }{
		{fClient6, wClient6}, {fHasPort, wHasPort}, {fClosing, wClosing},
		{fHasSyn, wHasSyn}, {fSynInferred, wSynInferred},
	} {
		if r.f&m.f != 0 {
			wf |= m.w
		}
	}
	be := binary.BigEndian
	b = append(b, wf)
	addr := func(a *[16]byte, wide bool) {
		if wide {
			b = append(b, a[:]...)
		} else {
			b = append(b, a[12:]...)
		}
	}
	addr(&r.k.peer, key6)
	b = be.AppendUint16(b, r.k.pport)
	addr(&r.k.local, key6)
	b = be.AppendUint16(b, r.k.lport)
	if r.f&fClient6 != 0 {
		b = append(b, r.v.client[:]...)
	} else {
		b = append(b, r.v.client[:4]...)
	}
	b = be.AppendUint16(b, r.v.cport)
	b = append(b, r.v.dkind, r.v.dlen)
	b = be.AppendUint64(b, uint64(r.v.first))
	b = be.AppendUint64(b, uint64(r.v.stamp))
	return be.AppendUint32(b, r.v.syn)
}

// decode decodes one entry's wire form after its flags byte wf.
func (r *srec) decode(wf uint8, b []byte) {
	be := binary.BigEndian
	addr := func(a *[16]byte, wide bool) {
		if wide {
			copy(a[:], b)
			b = b[16:]
		} else {
			*a = mapped(be.Uint32(b))
			b = b[4:]
		}
	}
	addr(&r.k.peer, wf&wKey6 != 0)
	r.k.pport, b = be.Uint16(b), b[2:]
	addr(&r.k.local, wf&wKey6 != 0)
	r.k.lport, b = be.Uint16(b), b[2:]
	if wf&wClient6 != 0 {
		copy(r.v.client[:], b)
		b = b[16:]
	} else {
		copy(r.v.client[:4], b)
		b = b[4:]
	}
	r.v.cport, b = be.Uint16(b), b[2:]
	r.v.dkind, r.v.dlen, b = b[0], b[1], b[2:]
	r.v.first, b = int64(be.Uint64(b)), b[8:]
	r.v.stamp, b = int64(be.Uint64(b)), b[8:]
	r.v.syn = be.Uint32(b)
	for _, m := range [...]struct{ f, w uint8 }{
		{fClient6, wClient6}, {fHasPort, wHasPort}, {fClosing, wClosing},
		{fHasSyn, wHasSyn}, {fSynInferred, wSynInferred},
	} {
		if wf&m.w != 0 {
			r.f |= m.f
		}
	}
}

// recordLen is the length of an entry's wire form after its flags byte.
func recordLen(wf uint8) int {
	n := 3*(4+2) + 2 + 8 + 8 + 4
	if wf&wKey6 != 0 {
		n += 2 * 12
	}
	if wf&wClient6 != 0 {
		n += 12
	}
	return n
}

// ReadSnapshot loads the entries of a snapshot written by WriteSnapshot,
// and returns how many it added. The whole input is read and verified
// before any entry is added: input that is not an intact snapshot is
// refused with an error wrapping ErrBadSnapshot, and nothing is loaded.
//
// Entries already expired at now are skipped (closing ones whose linger
// ended, idle ones with an IdleTimeout; a zero now skips none), as are
// those from peers the table does not trust and those whose key the table
// already holds. Closing entries are added first, then open ones oldest
// first, so that eviction order survives; loading more than the capacity
// evicts as Observe would. Loading publishes no events.
func (t *Table) ReadSnapshot(r io.Reader, now time.Time) (loaded int, err error) {
	recs, err := readSnapshot(r)
	if err != nil {
		return 0, fmt.Errorf("read snapshot: %w", err)
	}
	return t.load(recs, now, true), nil
}

// load adds recs to the table as ReadSnapshot describes, and returns how
// many it added. Without idleFromStamps, open entries are never skipped as
// idle and, with an IdleTimeout, start a fresh idle period at now.
func (t *Table) load(recs []srec, now time.Time, idleFromStamps bool) (loaded int) {
	// Closing entries in the order they began closing, then open ones
	// oldest first: the order of the lists they go to, and, should the
	// snapshot not fit, the order in which they are evicted.
	slices.SortStableFunc(recs, func(a, b srec) int {
		ac, bc := a.f&fClosing != 0, b.f&fClosing != 0
		switch {
		case ac != bc && ac:
			return -1
		case ac != bc:
			return 1
		case ac:
			return cmp.Compare(a.v.stamp, b.v.stamp)
		}
		return cmp.Compare(a.v.first, b.v.first)
	})
	cut, idleCut := nanos(now)-t.linger, nanos(now)-t.idle
	for j := range recs {
		rec := &recs[j]
		if !now.IsZero() && (rec.f&fClosing != 0 && rec.v.stamp <= cut ||
			rec.f&fClosing == 0 && t.idle > 0 && idleFromStamps && rec.v.stamp <= idleCut) {
			continue
		}
		if rec.f&fClosing == 0 && t.idle > 0 && !idleFromStamps && !now.IsZero() {
			rec.v.stamp = max(rec.v.stamp, nanos(now))
		}
		k := keyOf6(&rec.k)
		if !t.trusts(k.Peer().Addr()) {
			continue
		}
		h := t.seed.hash(&k)
		s := t.shardOf(h)
		s.mu.Lock()
		if s.find(&k, uint32(h)) == 0 {
			t.insert(s, &k, uint32(h), &rec.v, rec.f)
			loaded++
		}
		s.mu.Unlock()
	}
	return loaded
}

// readSnapshot reads and verifies a whole snapshot.
func readSnapshot(r io.Reader) ([]srec, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	crc := crc32.New(castagnoli)
	var b [maxRecord]byte
	read := func(n int) ([]byte, error) {
		if _, err := io.ReadFull(br, b[:n]); err != nil {
			return nil, err
		}
		crc.Write(b[:n])
		return b[:n], nil
	}
	truncated := func(err error, what string) error {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: truncated %s; the file is incomplete, remove it to start empty", ErrBadSnapshot, what)
		}
		return err
	}

	h, err := read(len(snapMagic) + 4)
	if err != nil {
		return nil, truncated(err, "in the header")
	}
	if !bytes.Equal(h[:len(snapMagic)], []byte(snapMagic)) {
		return nil, fmt.Errorf("%w: not a toad connection table snapshot (starts %q, want %q)", ErrBadSnapshot, h[:len(snapMagic)], snapMagic)
	}
	if v := binary.BigEndian.Uint16(h[len(snapMagic):]); v != snapVersion {
		return nil, fmt.Errorf("%w: snapshot version %d, this toad reads version %d only", ErrBadSnapshot, v, snapVersion)
	}
	if res := binary.BigEndian.Uint16(h[len(snapMagic)+2:]); res != 0 {
		return nil, fmt.Errorf("%w: reserved header field is %#x, want 0: corrupt or from a newer toad", ErrBadSnapshot, res)
	}
	var recs []srec
	for {
		f, err := read(1)
		if err != nil {
			return nil, truncated(err, fmt.Sprintf("after %d entries", len(recs)))
		}
		wf := f[0]
		if wf == snapEnd {
			break
		}
		if wf&^wKnown != 0 {
			return nil, fmt.Errorf("%w: entry %d has unknown flags %#x: corrupt or from a newer toad", ErrBadSnapshot, len(recs), wf)
		}
		if len(recs) >= MaxCapacity {
			return nil, fmt.Errorf("%w: more than %d entries", ErrBadSnapshot, MaxCapacity)
		}
		body, err := read(recordLen(wf))
		if err != nil {
			return nil, truncated(err, fmt.Sprintf("in entry %d", len(recs)))
		}
		var rec srec
		rec.decode(wf, body)
		recs = append(recs, rec)
	}
	c, err := read(8)
	if err != nil {
		return nil, truncated(err, "in the trailer")
	}
	count := binary.BigEndian.Uint64(c)
	sum := crc.Sum32()
	if _, err := io.ReadFull(br, b[:4]); err != nil {
		return nil, truncated(err, "in the trailer")
	}
	if got := binary.BigEndian.Uint32(b[:4]); got != sum {
		return nil, fmt.Errorf("%w: checksum %#08x, want %#08x: the file is corrupt, remove it to start empty", ErrBadSnapshot, got, sum)
	}
	if count != uint64(len(recs)) {
		return nil, fmt.Errorf("%w: trailer counts %d entries, found %d", ErrBadSnapshot, count, len(recs))
	}
	for i := range recs {
		if recs[i].v.dkind == 0 {
			return nil, fmt.Errorf("%w: entry %d has no TOA dialect", ErrBadSnapshot, i)
		}
	}
	return recs, nil
}
