package correlate

import (
	"context"
	"errors"
	"time"
)

// Get returns k's entry, open or closing. It does not wait and does not
// count as a lookup. The zero Key is never found.
func (t *Table) Get(k Key) (e Entry, ok bool) {
	if k.fam == famNone { // the zero Key; IsValid, a value method, would copy k
		return e, false
	}
	h := t.seed.hash(&k)
	s := t.shardOf(h)
	s.mu.RLock()
	if ref := s.find(&k, uint32(h)); ref != 0 {
		s.fill(&e, ref, &k)
		ok = true
	}
	s.mu.RUnlock()
	return e, ok
}

// read sets *e, zero, to the entry of *k, whose hash is h, and returns its
// ref, or 0 when there is none.
func (s *shard) read(e *Entry, k *Key, h uint32) uint32 {
	s.mu.RLock()
	ref := s.find(k, h)
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
// when the table is closed); ctx ending first yields ctx.Err(). The zero
// Key, which no connection has, yields ErrNotFound at once.
//
// An open entry is answered at once: a SYN that starts a new connection
// on its key replaces it, but only once the source delivers that SYN, so
// a lookup racing the capture of a reused key whose previous connection's
// FIN or RST the capture never saw still gets the previous client.
//
// Each call is counted in Stats as answered, not found, timed out (stale
// ones among them) or canceled.
func (t *Table) Lookup(ctx context.Context, k Key, wait time.Duration) (Entry, error) {
	h := t.seed.hash(&k)
	h32 := uint32(h)
	s := t.shardOf(h)
	if k.fam == famNone { // the zero Key; IsValid, a value method, would copy k
		s.look.notFound.Add(1)
		return Entry{}, ErrNotFound
	}
	var e Entry
	ref := s.read(&e, &k, h32)
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
			return t.syncLookup(ctx, src, s, &k, h32, wait, closing)
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
			return t.syncLookup(ctx, t.source(), s, &k, h32, wait-time.Since(start), true)
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
		if ref := s.find(&k, h32); ref != 0 {
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
		ref := s.find(&k, h32)
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
			return t.syncLookup(ctx, t.source(), s, &k, h32, wait-time.Since(start), ref != 0)
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
func (t *Table) syncLookup(ctx context.Context, src Source, s *shard, k *Key, h32 uint32, wait time.Duration, closing bool) (Entry, error) {
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
	ref := s.read(&e, k, h32)
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
