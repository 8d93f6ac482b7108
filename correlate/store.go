package correlate

import (
	"math"
	"net/netip"
	"time"

	"github.com/toad-project/toad/toa"
)

// insert adds an entry for k, absent from s, making room for it; it wakes
// the lookups waiting for k.
func (t *Table) insert(s *shard, k *Key, h uint32, v *val, f uint8) uint32 {
	t.reserve(s)
	ref := s.alloc(k, h)
	sv, sf := s.hdr(ref)
	*sv, *sf = *v, f
	if f&fClosing != 0 {
		s.push(&s.closing, ref)
		s.nClosing++
		t.nClosing.Add(1)
	} else {
		s.push(&s.open, ref)
	}
	if f&fClient6 != 0 {
		s.nClient6++
	}
	s.logPut(ref)
	if len(s.waiters) > 0 {
		s.wake(*k)
	}
	return ref
}

// reserve makes room for one more entry in s, evicting one if s or the
// table is full: a closing entry if there is one, preferably in s, else the
// oldest of s. An evicted entry's place in the count passes to the new one,
// so a full table inserts without touching the shared count. Writers racing
// for the last places may take the table over capacity by one each; the
// next inserts evict the excess.
func (t *Table) reserve(s *shard) {
	if s.n >= s.hard {
		t.evict(s, true)
		return
	}
	n := t.n.Load()
	if n < t.cap {
		t.n.Add(1)
		return
	}
	if s.n == 0 {
		// Every entry is in other shards: this one goes over capacity,
		// by at most one entry per empty shard.
		t.n.Add(1)
		return
	}
	if n > t.cap && s.n > 1 {
		t.evict(s, false)
	}
	if s.nClosing == 0 && t.nClosing.Load() > 0 && t.evictElsewhere(s) {
		return
	}
	t.evict(s, true)
}

// evict removes s's first closing entry, or else its oldest; with reuse,
// its place in the table's count goes to an entry about to be inserted.
func (t *Table) evict(s *shard, reuse bool) {
	ref := s.closing.head
	if ref == 0 {
		ref = s.open.head
		s.c.evictionsOpen++
	}
	s.c.evictions++
	t.remove(s, ref, t.hashOf(s, ref), reuse)
}

// evictElsewhere evicts a closing entry from a shard other than s whose
// lock is free at once, for an entry about to be inserted in s. s is
// locked; only TryLock is used, so shards never wait for each other.
func (t *Table) evictElsewhere(s *shard) bool {
	start := int(t.nClosing.Load()) % len(t.shards)
	for i := range t.shards {
		o := &t.shards[(start+i)%len(t.shards)]
		if o == s || !o.mu.TryLock() {
			continue
		}
		if o.nClosing > 0 {
			t.evict(o, true)
			o.mu.Unlock()
			return true
		}
		o.mu.Unlock()
	}
	return false
}

// hashOf returns the hash of ref's key.
func (t *Table) hashOf(s *shard, ref uint32) uint32 {
	if ref&ref6 != 0 {
		return uint32(t.seed.hash6(&s.a6.at(ref&refSlot - 1).k))
	}
	return uint32(t.seed.hash4(&s.a4.at(ref&refSlot - 1).k))
}

// drop removes ref's entry, whose key hashes to h, from s.
func (t *Table) drop(s *shard, ref, h uint32) { t.remove(s, ref, h, false) }

// remove removes ref's entry, whose key hashes to h, from s; with reuse,
// the table's count is left for an entry about to be inserted.
func (t *Table) remove(s *shard, ref, h uint32, reuse bool) {
	s.logRemove(ref)
	t.forget(s, ref, h, reuse)
}

// forget removes ref's entry as remove does, without recording the change.
func (t *Table) forget(s *shard, ref, h uint32, reuse bool) {
	_, f := s.hdr(ref)
	if *f&fClosing != 0 {
		s.unlink(&s.closing, ref)
		s.nClosing--
		t.nClosing.Add(-1)
	} else {
		s.unlink(&s.open, ref)
	}
	if *f&fClient6 != 0 {
		s.nClient6--
	}
	s.unindex(h, ref)
	if ref&ref6 != 0 {
		s.a6.release(ref&refSlot - 1)
	} else {
		s.a4.release(ref&refSlot - 1)
	}
	s.n--
	if !reuse {
		t.n.Add(-1)
	}
}

// publishClose tells subscribers that ref's open entry ended at now
// because a new connection took its key.
func (t *Table) publishClose(s *shard, ref uint32, now int64, k *Key) {
	if t.subs.Load() == nil {
		return
	}
	e := s.entry(ref, *k)
	e.State = StateClosing
	e.ClosedAt = timeOf(now)
	t.publish(Event{Type: EventClose, Entry: e})
}

// entry returns ref's entry, whose key is k.
func (s *shard) entry(ref uint32, k Key) (e Entry) {
	s.fill(&e, ref, &k)
	return e
}

// fill sets *e, zero, to ref's entry, whose key is *k.
func (s *shard) fill(e *Entry, ref uint32, k *Key) {
	v, f := s.hdr(ref)
	e.Key = *k
	e.Client.Dialect = toa.Dialect{Kind: v.dkind, Len: v.dlen}
	e.Client.Port = v.cport
	e.Client.HasPort = *f&fHasPort != 0
	if *f&fClient6 != 0 {
		e.Client.Addr = netip.AddrFrom16(v.client)
	} else {
		e.Client.Addr = netip.AddrFrom4([4]byte(v.client[:4]))
	}
	e.FirstSeen = timeOf(v.first)
	e.State = StateOpen
	if *f&fClosing != 0 {
		e.State = StateClosing
		e.ClosedAt = timeOf(v.stamp)
	}
	e.SynSeq = v.syn
	e.HasSynSeq = *f&fHasSyn != 0
	e.SynSeqInferred = *f&fSynInferred != 0
}

// noTime stands for the zero time.Time, whose Unix nanoseconds are out of
// range.
const noTime = math.MinInt64

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return noTime
	}
	return t.UnixNano()
}

func timeOf(ns int64) time.Time {
	if ns == noTime {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Expire removes the closing entries whose linger ended by now, and, with
// an IdleTimeout, the open entries idle since before now-IdleTimeout. It
// returns how many it removed. The owner calls it on a ticker with
// time.Now(), or with the capture's time when replaying; a zero now expires
// nothing. Idle expiry visits every open entry.
func (t *Table) Expire(now time.Time) int {
	if now.IsZero() {
		return 0
	}
	cut, idleCut := now.UnixNano()-t.linger, now.UnixNano()-t.idle
	removed := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for ref := s.closing.head; ref != 0; {
			v := s.val(ref)
			if v.stamp > cut {
				break
			}
			next := v.next
			// Not recorded: the close time and the linger imply it.
			t.forget(s, ref, t.hashOf(s, ref), false)
			s.c.expired++
			removed++
			ref = next
		}
		if t.idle > 0 {
			for ref := s.open.head; ref != 0; {
				v := s.val(ref)
				next := v.next
				if v.stamp <= idleCut {
					t.drop(s, ref, t.hashOf(s, ref))
					s.c.idleExpired++
					removed++
				}
				ref = next
			}
		}
		s.mu.Unlock()
	}
	return removed
}

// Range calls fn for every entry, in no particular order, until fn returns
// false. It copies one shard's entries at a time and calls fn with no lock
// held, so fn may use the table; entries changed meanwhile may be seen
// either way.
func (t *Table) Range(fn func(Entry) bool) {
	var buf []Entry
	for i := range t.shards {
		s := &t.shards[i]
		buf = buf[:0]
		s.mu.RLock()
		for _, l := range [2]*list{&s.open, &s.closing} {
			for ref := l.head; ref != 0; ref = s.val(ref).next {
				buf = append(buf, s.entry(ref, s.keyOf(ref)))
			}
		}
		s.mu.RUnlock()
		for _, e := range buf {
			if !fn(e) {
				return
			}
		}
	}
}
