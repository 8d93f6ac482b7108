package correlate

import (
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

// Observe applies one decoded segment to the table; r.Time is the table's
// clock for it. It never blocks on anything but a shard's lock.
//
//   - A TOA from a trusted peer creates the connection's entry if it has
//     none. The same TOA again changes nothing; a different one is ignored
//     and counted in Stats.Conflicts. A TOA from any other peer is counted
//     in Stats.Untrusted and never stored.
//   - An entry keeps the client's initial sequence number: the SYN's, when
//     the TOA came in the SYN; otherwise the Seq of the segment that brought
//     the TOA minus one (the handshake's ACK and first data segment carry
//     ISN+1), marked inferred.
//   - A SYN without ACK on a key whose entry is closing, or has another
//     initial sequence number (an inferred one matches any SYN up to 64 KiB
//     below it), starts a new connection: the old entry is replaced by the
//     SYN's TOA or, without one, removed. A retransmitted SYN changes nothing.
//   - FIN or RST moves an entry to closing; Expire removes it after Linger.
func (t *Table) Observe(r *decode.Record) {
	hasTOA := r.TOACount > 0
	syn := r.Flags&(decode.SYN|decode.ACK) == decode.SYN
	end := r.Flags&(decode.FIN|decode.RST) != 0
	if !hasTOA && !syn && !end && t.idle == 0 {
		return
	}
	if !t.trusts(r.Peer.Addr()) {
		if hasTOA {
			t.untrusted.Add(1)
		}
		return
	}
	var k Key
	k.set(r.Peer, r.Local)
	if k.fam == famNone { // the zero Key; IsValid, a value method, would copy k
		return
	}
	h := t.seed.hash(&k)
	h32 := uint32(h)
	now := nanos(r.Time)
	s := t.shardOf(h)

	s.mu.Lock()
	defer s.mu.Unlock()
	ref := s.find(&k, h32)
	if syn {
		s.forgetClosed(h)
		if !hasTOA {
			s.c.synsWithoutTOA++
		}
		if ref != 0 && s.startsNew(ref, r.Seq) {
			if _, f := s.hdr(ref); *f&fClosing == 0 {
				t.publishClose(s, ref, now, &k)
			}
			t.drop(s, ref, h32)
			s.c.reused++
			ref = 0
		}
	}
	if hasTOA {
		if r.TOACount > 1 {
			s.c.multipleTOA++
		}
		if ref == 0 {
			ref = t.insertTOA(s, &k, h32, r, now)
		} else if !s.sameClient(ref, &r.TOA) {
			s.c.conflicts++
		}
	}
	if ref == 0 {
		if end && s.countClosedWithoutTOA(h) {
			s.c.connsWithoutTOA++
		}
		return
	}
	v, f := s.hdr(ref)
	if *f&fClosing != 0 {
		return
	}
	if t.idle > 0 {
		v.stamp = now
	}
	if end {
		s.unlink(&s.open, ref)
		*f |= fClosing
		v.stamp = now
		s.push(&s.closing, ref)
		s.nClosing++
		t.nClosing.Add(1)
		s.logClose(ref)
		if t.subs.Load() != nil {
			t.publish(Event{Type: EventClose, Entry: s.entry(ref, k)})
		}
	}
}

// startsNew reports whether a SYN with sequence number seq on ref's entry
// starts a new connection (ISN.StartsNew). A SYN that confirms an inferred
// initial sequence number makes it exact.
func (s *shard) startsNew(ref, seq uint32) bool {
	v, f := s.hdr(ref)
	isn := ISN{Seq: v.syn, Known: *f&fHasSyn != 0, Inferred: *f&fSynInferred != 0}
	isNew, isn := isn.StartsNew(seq, *f&fClosing != 0)
	if !isNew {
		// A SYN that makes an inferred ISN exact changes what a restart
		// must know.
		changed := v.syn != isn.Seq || (*f&fSynInferred != 0 && !isn.Inferred)
		v.syn = isn.Seq
		if !isn.Inferred {
			*f &^= fSynInferred
		}
		if changed {
			s.logSyn(ref)
		}
	}
	return isNew
}

func (s *shard) sameClient(ref uint32, c *toa.Client) bool {
	var want val
	var wf uint8
	setClient(&want, &wf, c)
	v, f := s.hdr(ref)
	return v.client == want.client && v.cport == want.cport && v.dkind == want.dkind &&
		v.dlen == want.dlen && *f&(fClient6|fHasPort) == wf
}

func setClient(v *val, f *uint8, c *toa.Client) {
	if c.Addr.Is4() {
		a := c.Addr.As4()
		copy(v.client[:], a[:])
	} else {
		v.client = c.Addr.As16()
		*f |= fClient6
	}
	if c.HasPort {
		*f |= fHasPort
		v.cport = c.Port
	}
	v.dkind, v.dlen = c.Dialect.Kind, c.Dialect.Len
}

// insertTOA adds the open entry r's TOA creates for k.
func (t *Table) insertTOA(s *shard, k *Key, h uint32, r *decode.Record, now int64) uint32 {
	var v val
	var f uint8
	setClient(&v, &f, &r.TOA)
	v.first, v.stamp = now, now
	if isn := ISNOf(r); isn.Known {
		v.syn = isn.Seq
		f |= fHasSyn
		if isn.Inferred {
			f |= fSynInferred
		}
	}
	ref := t.insert(s, k, h, &v, f)
	s.c.connsWithTOA++
	if t.subs.Load() != nil {
		t.publish(Event{Type: EventOpen, Entry: s.entry(ref, *k)})
	}
	return ref
}
