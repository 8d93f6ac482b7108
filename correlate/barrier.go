package correlate

import (
	"context"
	"sync"
)

// Source is what feeds a table, as its lookups see it: Sync returns once
// the source has passed to Observe every segment the host received before
// the call, or with an error when it cannot tell (ctx ended first, the
// source stopped). A live capture is a Source (capture.Capture).
type Source interface {
	Sync(ctx context.Context) error
}

// Attach makes src the table's source: with Config.Barrier, a lookup that
// does not find an open entry asks it to catch up with the lookup's call
// (see Lookup). Lookups already waiting for a key keep waiting as they
// were. Attach replaces an earlier source; Seal is Attach of a source that
// is always caught up.
func (t *Table) Attach(src Source) {
	t.src.Store(&src)
	t.attachOnce.Do(func() { close(t.attached) })
}

// Seal declares the source complete, as after a replay: nothing more will
// come, so a lookup answers at once with what the table holds, however
// long it may wait.
func (t *Table) Seal() { t.Attach(sealed{}) }

// sealed is the source of a table that will receive nothing more.
type sealed struct{}

func (sealed) Sync(context.Context) error { return nil }

// source returns the attached source, or nil.
func (t *Table) source() Source {
	if p := t.src.Load(); p != nil {
		return *p
	}
	return nil
}

// attachState is the part of a Table that tracks its source.
type attachState struct {
	attachOnce sync.Once
	attached   chan struct{} // closed by the first Attach
}
