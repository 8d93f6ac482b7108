package correlate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

// Defaults for a zero Config.
const (
	DefaultCapacity = 1 << 20
	DefaultShards   = 64
	DefaultLinger   = 60 * time.Second
)

// MaxCapacity is the largest Capacity a Table accepts.
const MaxCapacity = 1 << 30

// Config configures a Table. Its zero value is a table of DefaultCapacity
// entries that trusts every peer.
type Config struct {
	// Capacity is the most entries the table holds; 0 means
	// DefaultCapacity. When it is full, closing entries are evicted first,
	// then the oldest.
	Capacity int
	// Shards is how many independently locked parts the table has, a power
	// of two; 0 means DefaultShards.
	Shards int
	// Linger is how long a closing connection is still answered; 0 means
	// DefaultLinger.
	Linger time.Duration
	// IdleTimeout, when positive, lets Expire drop open entries that saw no
	// segment for that long. It costs a lock on every segment of every
	// known connection; 0 (the default) keeps open entries until they
	// close, however long they live.
	IdleTimeout time.Duration
	// Trusted are the proxy ranges whose TOAs are believed. Empty means
	// every peer is trusted, which Stats.AllTrusted reports.
	Trusted []netip.Prefix
	// Barrier makes lookups learn from the table's source (see Attach)
	// whether the table has caught up with them, rather than wait for a
	// key on the chance that it comes. A Lookup with a wait that does not
	// find an open entry asks the source to catch up with the moment of
	// the call (Source.Sync), then answers what the key holds: the entry
	// (a closing one too: it is then the key's current connection), or,
	// with none, ErrNotFound at once, without waiting out its wait. Should
	// the source not catch up within the wait, it answers ErrNotFound,
	// never a closing entry, which may be a previous connection's on a key
	// its proxy has reused. Until a source is attached, lookups wait for
	// their key as without Barrier, and answer a closing entry never.
	// Lookups without a wait, and lookups that find an open entry, answer
	// at once as without Barrier. Off (the default), lookups answer what
	// the table holds, or wait for their key: right for a table fed
	// directly or by a replay.
	Barrier bool
}

// Validate reports the first field of c out of its bounds, as a
// *ConfigError; zero fields take their defaults and are valid.
func (c Config) Validate() error {
	switch {
	case c.Capacity < 0:
		return &ConfigError{"Capacity", c.Capacity, fmt.Sprintf("0 (default %d) or more", DefaultCapacity)}
	case c.Capacity > MaxCapacity:
		return &ConfigError{"Capacity", c.Capacity, fmt.Sprintf("at most %d", MaxCapacity)}
	case c.Shards < 0 || c.Shards > 1<<16 || c.Shards&(c.Shards-1) != 0:
		return &ConfigError{"Shards", c.Shards, fmt.Sprintf("a power of two up to 65536, or 0 (default %d)", DefaultShards)}
	case c.Linger < 0:
		return &ConfigError{"Linger", c.Linger, fmt.Sprintf("0 (default %v) or more", DefaultLinger)}
	case c.IdleTimeout < 0:
		return &ConfigError{"IdleTimeout", c.IdleTimeout, "0 (never) or more"}
	}
	return nil
}

// ConfigError is a Config field out of its bounds.
type ConfigError struct {
	Field string // the field, such as "Capacity"
	Value any    // its value
	Want  string // what it takes
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("invalid Config.%s %v: want %s", e.Field, e.Value, e.Want)
}

// ConfigField returns the field's name, for callers that name their
// settings otherwise (toad serve's flags).
func (e *ConfigError) ConfigField() (field string, value any, want string) {
	return e.Field, e.Value, e.Want
}

// Table maps connections to the real clients their proxies named. It is
// safe for concurrent use: Observe may be called from several capture
// workers while lookups run. It has no goroutines of its own: records bring
// its clock, and the owner calls Expire.
type Table struct {
	shards   []shard
	shift    uint // 64 - log2(len(shards))
	seed     seed
	cap      int64
	linger   int64
	idle     int64
	trust    Trust
	n        atomic.Int64 // entries
	nClosing atomic.Int64 // closing entries

	untrusted atomic.Uint64
	closed    atomic.Bool

	barrier  bool
	src      atomic.Pointer[Source]
	closing  context.Context // done once Close starts
	closeCtx context.CancelFunc
	attachState

	subsMu sync.Mutex
	subs   atomic.Pointer[[]*Subscription] // nil when there are none
}

// ErrClosed is returned, together with ErrNotFound, by lookups that were
// waiting when the table closed or that start waiting after it closed.
var ErrClosed = errors.New("table closed")

var errClosedNotFound = fmt.Errorf("%w: %w", ErrNotFound, ErrClosed)

// New returns an empty table configured by cfg. The index of every shard is
// allocated at once (about 11 bytes per entry of capacity); entries are
// allocated as they arrive and their memory is reused, never returned.
func New(cfg Config) (*Table, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = DefaultCapacity
	}
	if cfg.Shards == 0 {
		cfg.Shards = DefaultShards
	}
	if cfg.Linger == 0 {
		cfg.Linger = DefaultLinger
	}
	t := &Table{
		shards:  make([]shard, cfg.Shards),
		shift:   uint(64 - bits.TrailingZeros(uint(cfg.Shards))),
		cap:     int64(cfg.Capacity),
		linger:  int64(cfg.Linger),
		idle:    int64(cfg.IdleTimeout),
		barrier: cfg.Barrier,
	}
	t.attached = make(chan struct{})
	t.closing, t.closeCtx = context.WithCancel(context.Background())
	trust, err := NewTrust(cfg.Trusted)
	if err != nil {
		return nil, fmt.Errorf("invalid Config.Trusted%w", err)
	}
	t.trust = trust
	for i := range t.seed {
		t.seed[i] = rand.Uint64()
	}
	// Each shard may hold an eighth more than its share, so that the
	// unevenness of hashing never makes one evict before the table is full.
	fair := (cfg.Capacity + cfg.Shards - 1) / cfg.Shards
	hard := fair + fair/8 + 64
	for i := range t.shards {
		t.shards[i].init(hard)
	}
	return t, nil
}

func (t *Table) shardOf(h uint64) *shard { return &t.shards[h>>t.shift] }

func (t *Table) trusts(a netip.Addr) bool { return t.trust.Trusts(a) }

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
	var p pkey
	p.set(r.Peer, r.Local)
	h := t.seed.hash(&p)
	h32 := uint32(h)
	now := nanos(r.Time)
	s := t.shardOf(h)

	s.mu.Lock()
	defer s.mu.Unlock()
	ref := s.find(&p, h32)
	if syn {
		s.forgetClosed(h)
		if !hasTOA {
			s.c.synsWithoutTOA++
		}
		if ref != 0 && s.startsNew(ref, r.Seq) {
			if _, f := s.hdr(ref); *f&fClosing == 0 {
				t.publishClose(s, ref, now, &p)
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
			ref = t.insertTOA(s, &p, h32, r, now)
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
			t.publish(Event{Type: EventClose, Entry: s.entry(ref, p.unpack())})
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

// insertTOA adds the open entry r's TOA creates for p.
func (t *Table) insertTOA(s *shard, p *pkey, h uint32, r *decode.Record, now int64) uint32 {
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
	ref := t.insert(s, p, h, &v, f)
	s.c.connsWithTOA++
	if t.subs.Load() != nil {
		t.publish(Event{Type: EventOpen, Entry: s.entry(ref, p.unpack())})
	}
	return ref
}

// insert adds an entry for p, absent from s, making room for it; it wakes
// the lookups waiting for p.
func (t *Table) insert(s *shard, p *pkey, h uint32, v *val, f uint8) uint32 {
	t.reserve(s)
	ref := s.alloc(p, h)
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
		s.wake(p.unpack())
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
func (t *Table) publishClose(s *shard, ref uint32, now int64, p *pkey) {
	if t.subs.Load() == nil {
		return
	}
	e := s.entry(ref, p.unpack())
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

// Get returns k's entry, open or closing. It does not wait and does not
// count as a lookup.
func (t *Table) Get(k Key) (e Entry, ok bool) {
	var p pkey
	p.setKey(&k)
	h := t.seed.hash(&p)
	s := t.shardOf(h)
	s.mu.RLock()
	if ref := s.find(&p, uint32(h)); ref != 0 {
		s.fill(&e, ref, &k)
		ok = true
	}
	s.mu.RUnlock()
	return e, ok
}

// read sets *e, zero, to the entry of p, whose hash is h and key *k, and
// returns its ref, or 0 when there is none.
func (s *shard) read(e *Entry, p *pkey, h uint32, k *Key) uint32 {
	s.mu.RLock()
	ref := s.find(p, h)
	if ref != 0 {
		s.fill(e, ref, k)
	}
	s.mu.RUnlock()
	return ref
}

// Lookup returns k's entry. With wait 0 it answers at once with what the
// table holds; otherwise it may wait up to wait: without Config.Barrier,
// for the key to be inserted, woken by that insert alone; with it, for the
// source to catch up with the call (see Config.Barrier), after which it
// answers at once. A key still absent yields ErrNotFound (with ErrClosed
// when the table is closed); ctx ending first yields ctx.Err().
//
// An open entry is answered at once: a SYN that starts a new connection
// on its key replaces it, but only once the source delivers that SYN, so
// a lookup racing the capture of a reused key whose previous connection's
// FIN or RST the capture never saw still gets the previous client.
//
// Each call is counted in Stats as answered, not found, timed out (stale
// ones among them) or canceled.
func (t *Table) Lookup(ctx context.Context, k Key, wait time.Duration) (Entry, error) {
	var p pkey
	p.setKey(&k)
	h := t.seed.hash(&p)
	h32 := uint32(h)
	s := t.shardOf(h)
	var e Entry
	ref := s.read(&e, &p, h32, &k)
	if ref != 0 && (!t.barrier || wait <= 0 || e.State == StateOpen) {
		s.look.ok.Add(1)
		return e, nil
	}
	if wait <= 0 {
		s.look.notFound.Add(1)
		return Entry{}, ErrNotFound
	}
	if err := ctx.Err(); err != nil {
		s.look.canceled.Add(1)
		return Entry{}, err
	}
	closing := ref != 0 // with the barrier, not answered before the source catches up
	if t.barrier {
		if src := t.source(); src != nil {
			return t.syncLookup(ctx, src, s, &p, h32, &k, wait, closing)
		}
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var attached <-chan struct{}
	if t.barrier {
		attached = t.attached // a source attached meanwhile takes over
	}
	start := time.Now()
	if closing {
		select {
		case <-attached:
			return t.syncLookup(ctx, t.source(), s, &p, h32, &k, wait-time.Since(start), true)
		case <-timer.C:
			s.look.timedOut.Add(1)
			s.look.stale.Add(1)
			return Entry{}, ErrNotFound
		case <-ctx.Done():
			s.look.canceled.Add(1)
			return Entry{}, ctx.Err()
		}
	}
	w := &waiter{}
	for {
		s.mu.Lock()
		if ref := s.find(&p, h32); ref != 0 {
			s.fill(&e, ref, &k)
			s.mu.Unlock()
			s.look.ok.Add(1)
			return e, nil
		}
		if t.closed.Load() {
			s.mu.Unlock()
			s.look.notFound.Add(1)
			return Entry{}, errClosedNotFound
		}
		w.ch = make(chan struct{})
		s.addWaiter(k, w)
		s.mu.Unlock()

		syncNow := false
		select {
		case <-w.ch:
			continue
		case <-attached:
			syncNow = true
		case <-timer.C:
		case <-ctx.Done():
		}
		s.mu.Lock()
		s.removeWaiter(k, w)
		ref := s.find(&p, h32)
		if ref != 0 {
			s.fill(&e, ref, &k)
		}
		s.mu.Unlock()
		switch {
		case ref != 0 && (e.State == StateOpen || !t.barrier):
			s.look.ok.Add(1)
			return e, nil
		case ctx.Err() != nil:
			s.look.canceled.Add(1)
			return Entry{}, ctx.Err()
		case syncNow:
			return t.syncLookup(ctx, t.source(), s, &p, h32, &k, wait-time.Since(start), ref != 0)
		}
		s.look.timedOut.Add(1)
		if ref != 0 {
			s.look.stale.Add(1)
		}
		return Entry{}, ErrNotFound
	}
}

// noWait is a context that has ended: a Sync given it answers only what
// it knows without waiting.
var noWait = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// syncLookup is a Lookup with the barrier and a source: it waits up to
// wait for src to catch up with the call, then answers what the key
// holds. closing reports that the key held a closing entry at the call.
func (t *Table) syncLookup(ctx context.Context, src Source, s *shard, p *pkey, h32 uint32, k *Key, wait time.Duration, closing bool) (Entry, error) {
	// First without waiting, which costs no context when the source is
	// caught up already, as it mostly is.
	err := src.Sync(noWait)
	switch {
	case err == nil:
	case !errors.Is(err, context.Canceled):
		// The source cannot tell, waiting or not.
	case wait <= 0:
		err = context.DeadlineExceeded
	default:
		sctx, cancel := context.WithTimeout(ctx, wait)
		stop := context.AfterFunc(t.closing, cancel) // Close releases the lookup
		err = src.Sync(sctx)
		stop()
		cancel()
	}
	if t.closed.Load() {
		s.look.notFound.Add(1)
		return Entry{}, errClosedNotFound
	}
	var e Entry
	ref := s.read(&e, p, h32, k)
	switch {
	case err == nil && ref != 0:
		s.look.ok.Add(1)
		return e, nil
	case err == nil:
		s.look.notFound.Add(1)
		return Entry{}, ErrNotFound
	case ref != 0 && e.State == StateOpen:
		// The source did not catch up, but the key's handshake came.
		s.look.ok.Add(1)
		return e, nil
	case ctx.Err() != nil:
		s.look.canceled.Add(1)
		return Entry{}, ctx.Err()
	}
	// The source could not say in time, or at all: a closing entry may be
	// an earlier connection's, and an absent key's handshake may be on its
	// way.
	s.look.timedOut.Add(1)
	if closing || ref != 0 {
		s.look.stale.Add(1)
	}
	return Entry{}, ErrNotFound
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
			t.drop(s, ref, t.hashOf(s, ref))
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
				p := s.keyOf(ref)
				buf = append(buf, s.entry(ref, p.unpack()))
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

// Len returns how many entries the table holds.
func (t *Table) Len() int { return int(t.n.Load()) }

// Stats are the table's counters, as Table.Stats copies them.
type Stats struct {
	Capacity uint64 // the configured capacity

	Entries     uint64 // entries held, open or closing
	EntriesIPv4 uint64 // entries whose client is IPv4
	EntriesIPv6 uint64 // entries whose client is IPv6
	Closing     uint64 // entries closing, answered until their linger ends

	// ConnsWithTOA counts connections whose TOA created an entry (the
	// analogue of syn_recv_sock_toa).
	ConnsWithTOA uint64
	// ConnsWithoutTOA counts connections from trusted peers that ended
	// (FIN or RST) while the table held no entry for them: the analogue of
	// syn_recv_sock_no_toa, counted at the close because a TOA may come
	// after the SYN. It also counts connections whose entry had been
	// evicted or had expired. Repeated FIN and RST segments of a connection
	// count once (each shard remembers the last 256 keys it counted).
	ConnsWithoutTOA uint64
	// SYNsWithoutTOA counts SYN segments from trusted peers that carried no
	// TOA, retransmissions included. Proxies that send the TOA with the
	// handshake's ACK (DPVS 1.9.6 and later) make every connection count
	// here; it is the early sign of a proxy sending no TOA at all.
	SYNsWithoutTOA uint64

	LookupsOK uint64 // lookups answered
	// LookupsNotFound counts lookups that answered ErrNotFound at once for
	// a key the table does not hold: without a wait, once the source had
	// caught up with the call (Config.Barrier), or on a closed table.
	LookupsNotFound uint64
	// LookupsTimedOut counts lookups whose wait ended without an answer:
	// without Config.Barrier, the key never came; with it, the source did
	// not catch up with the call in time (or had none attached, or had
	// stopped).
	LookupsTimedOut uint64
	LookupsCanceled uint64 // lookups whose context ended first
	// LookupsStale counts those of LookupsTimedOut that found a closing
	// entry (Config.Barrier): answered not found, since the key may
	// already be a new connection's.
	LookupsStale uint64

	// Conflicts counts TOAs that differed from their connection's first
	// one and were ignored.
	Conflicts uint64
	// MultipleTOA counts segments from trusted peers carrying more than one
	// TOA (the first is believed; another may be forged).
	MultipleTOA uint64
	// Untrusted counts segments carrying a TOA from peers outside the
	// trusted ranges; none was stored.
	Untrusted uint64
	// Reused counts entries replaced or removed because a SYN started a new
	// connection on their key.
	Reused uint64

	Evictions     uint64 // entries evicted because the table or a shard was full
	EvictionsOpen uint64 // those of Evictions that were still open
	Expired       uint64 // closing entries removed after their linger
	IdleExpired   uint64 // open entries removed by IdleTimeout

	// AllTrusted is true when no trusted ranges were configured, so every
	// peer's TOA is believed.
	AllTrusted bool
}

// Stats returns a copy of the table's counters.
func (t *Table) Stats() Stats {
	st := Stats{
		Capacity:   uint64(t.cap),
		Untrusted:  t.untrusted.Load(),
		AllTrusted: t.trust.All(),
	}
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		st.Entries += uint64(s.n)
		st.EntriesIPv6 += uint64(s.nClient6)
		st.Closing += uint64(s.nClosing)
		c := s.c
		s.mu.RUnlock()
		st.ConnsWithTOA += c.connsWithTOA
		st.ConnsWithoutTOA += c.connsWithoutTOA
		st.SYNsWithoutTOA += c.synsWithoutTOA
		st.Conflicts += c.conflicts
		st.MultipleTOA += c.multipleTOA
		st.Reused += c.reused
		st.Evictions += c.evictions
		st.EvictionsOpen += c.evictionsOpen
		st.Expired += c.expired
		st.IdleExpired += c.idleExpired
		st.LookupsOK += s.look.ok.Load()
		st.LookupsNotFound += s.look.notFound.Load()
		st.LookupsTimedOut += s.look.timedOut.Load()
		st.LookupsCanceled += s.look.canceled.Load()
		st.LookupsStale += s.look.stale.Load()
	}
	st.EntriesIPv4 = st.Entries - st.EntriesIPv6
	return st
}

// Close ends every subscription and releases every waiting lookup, which
// returns ErrNotFound and ErrClosed. The table still answers
// Get, Lookup without waiting and Observe afterwards. Close is idempotent.
func (t *Table) Close() {
	if !t.closed.CompareAndSwap(false, true) {
		return
	}
	t.closeCtx()
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, ws := range s.waiters {
			for _, w := range ws {
				close(w.ch)
			}
		}
		s.waiters = nil
		s.mu.Unlock()
	}
	t.subsMu.Lock()
	subs := t.subs.Swap(nil)
	t.subsMu.Unlock()
	if subs != nil {
		for _, sub := range *subs {
			sub.end()
		}
	}
}
