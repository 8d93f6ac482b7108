package preload_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/toad-project/toad/api/preload"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

// deadline bounds every wait of these tests for an event.
const deadline = 30 * time.Second

// toad is a preload Server on a real socket, answering from a real table.
type toad struct {
	t      testing.TB
	table  *correlate.Table
	srv    *preload.Server
	path   string
	done   chan struct{} // a token per library connection gone
	seq    uint32
	absent sync.Map // correlate.Key: answered NOT_FOUND at once

	shared  *preload.SharedTable // when the toad has one
	applied chan struct{}        // a token per table event the shared table wrote
}

type toadConfig struct {
	table  correlate.Config
	srv    preload.Config
	path   string
	shared int         // slots of the shared table, 0 for none
	fill   func(*toad) // fills the table before the shared table is made
}

type toadOption func(*toadConfig)

func trusting(ranges ...string) toadOption {
	return func(c *toadConfig) {
		for _, r := range ranges {
			p := netip.MustParsePrefix(r)
			c.table.Trusted = append(c.table.Trusted, p)
			c.srv.Trusted = append(c.srv.Trusted, p)
		}
	}
}

func maxConns(n int) toadOption {
	return func(c *toadConfig) { c.srv.MaxConns = n }
}

// shared gives the libraries a shared table of the open connections.
func shared() toadOption { return sharedSlots(1 << 12) }

func sharedSlots(n int) toadOption {
	return func(c *toadConfig) { c.shared = n }
}

// filled calls fill before the shared table is made, which then holds
// its entries from the start.
func filled(fill func(*toad)) toadOption {
	return func(c *toadConfig) { c.fill = fill }
}

// at serves on path rather than on a new one.
func at(path string) toadOption {
	return func(c *toadConfig) { c.path = path }
}

// socketPath returns a short path for a socket in a new directory: unix
// socket paths must fit in 108 bytes.
func socketPath(t testing.TB) string {
	dir, err := os.MkdirTemp("", "tp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "preload.sock")
}

// startToad serves a table on a new socket; wrap, when not nil, wraps the
// table as the server's Lookuper.
func startToad(t testing.TB, wrap func(preload.Lookuper) preload.Lookuper, opts ...toadOption) *toad {
	t.Helper()
	var c toadConfig
	for _, o := range opts {
		o(&c)
	}
	if c.path == "" {
		c.path = socketPath(t)
	}
	table, err := correlate.New(c.table)
	if err != nil {
		t.Fatal(err)
	}
	td := &toad{t: t, table: table, path: c.path, done: make(chan struct{}, 1<<16)}
	if c.fill != nil {
		c.fill(td)
	}
	if c.shared > 0 {
		td.shared = newShared(t, table, c.shared)
		td.applied = make(chan struct{}, 1<<16)
		td.shared.OnApplied(func() { td.applied <- struct{}{} })
		c.srv.Shared = td.shared
	}
	var l preload.Lookuper = absentLookuper{table, td}
	if wrap != nil {
		l = wrap(l)
	}
	td.srv, err = preload.New(l, c.srv)
	if err != nil {
		t.Fatal(err)
	}
	td.srv.OnConnDone(func() { td.done <- struct{}{} })
	td.serve()
	t.Cleanup(func() {
		td.srv.Close()
		if td.shared != nil {
			td.shared.Close()
		}
		table.Close()
	})
	return td
}

// waitApplied waits until the shared table has written n more events.
func (td *toad) waitApplied(n int) {
	td.t.Helper()
	for range n {
		select {
		case <-td.applied:
		case <-time.After(deadline):
			td.t.Fatalf("the shared table did not write an event in %v", deadline)
		}
	}
}

// finish makes the table see the connection from peer to local close.
func (td *toad) finish(peer, local netip.AddrPort) {
	td.table.Observe(&decode.Record{Time: time.Now(), Peer: peer, Local: local, Flags: decode.FIN | decode.ACK})
}

// markAbsent makes toad answer NOT_FOUND at once for the connection from
// peer to local, as it would once its capture confirmed that no TOA came,
// rather than wait for it as long as the library allows.
func (td *toad) markAbsent(peer, local netip.AddrPort) {
	td.absent.Store(correlate.KeyOf(peer, local), true)
}

type absentLookuper struct {
	preload.Lookuper
	td *toad
}

func (a absentLookuper) Lookup(ctx context.Context, k correlate.Key, wait time.Duration) (correlate.Entry, error) {
	if _, ok := a.td.absent.Load(k); ok {
		return correlate.Entry{}, correlate.ErrNotFound
	}
	return a.Lookuper.Lookup(ctx, k, wait)
}

// serve listens on td.path and serves there until the test ends.
func (td *toad) serve() {
	ln, err := preload.Listen(preload.SocketConfig{Path: td.path})
	if err != nil {
		td.t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- td.srv.Serve(ln) }()
	td.t.Cleanup(func() {
		td.srv.Close()
		if err := <-served; err != nil {
			td.t.Errorf("Serve: %v", err)
		}
	})
}

// insert makes the table hold client for the connection from peer to
// local, as a SYN carrying its TOA would.
func (td *toad) insert(peer, local netip.AddrPort, client toa.Client) {
	td.seq += 1 << 20
	td.table.Observe(&decode.Record{
		Time: time.Now(), Peer: peer, Local: local, Flags: decode.SYN, Seq: td.seq,
		TOA: client, TOACount: 1,
	})
}

// idle waits until no library is connected any more, so that everything
// they sent has been counted.
func (td *toad) idle() {
	td.t.Helper()
	timeout := time.After(deadline)
	for td.srv.Stats().ConnsOpen != 0 {
		select {
		case <-td.done:
		case <-timeout:
			td.t.Fatalf("libraries still connected after %v: %+v", deadline, td.srv.Stats())
		}
	}
}

func client4(s string) toa.Client {
	ap := netip.MustParseAddrPort(s)
	return toa.Client{Dialect: toa.Kind254V4, Addr: ap.Addr(), Port: ap.Port(), HasPort: true}
}

func client6(s string) toa.Client {
	ap := netip.MustParseAddrPort(s)
	return toa.Client{Dialect: toa.Kind254V6, Addr: ap.Addr(), Port: ap.Port(), HasPort: true}
}

// wire is a client of the protocol written with the package's codec.
type wire struct {
	t  testing.TB
	c  *net.UnixConn
	id uint32
}

func dial(t testing.TB, path string) *wire {
	t.Helper()
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &wire{t: t, c: c}
}

func (w *wire) send(f *preload.Frame) {
	w.t.Helper()
	if _, err := w.c.Write(f[:]); err != nil {
		w.t.Fatal(err)
	}
}

// recv reads a frame; ok is false when the server hung up.
func (w *wire) recv() (h preload.Header, f *preload.Frame, ok bool) {
	w.t.Helper()
	var buf [preload.FrameSize + 1]byte
	w.c.SetReadDeadline(time.Now().Add(deadline))
	n, err := w.c.Read(buf[:])
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			w.t.Fatalf("no frame within %v", deadline)
		}
		return h, nil, false
	}
	f = (*preload.Frame)(buf[:preload.FrameSize])
	h, err = preload.ParseHeader(f, n)
	if err != nil && !errors.Is(err, preload.ErrVersion) {
		w.t.Fatalf("server sent a bad frame: %v", err)
	}
	return h, f, true
}

func (w *wire) expect(t preload.Type) *preload.Frame {
	w.t.Helper()
	h, f, ok := w.recv()
	if !ok {
		w.t.Fatalf("server hung up, want a %v frame", t)
	}
	if h.Type != t || h.ID != w.id {
		w.t.Fatalf("got %v frame with id %d, want %v with id %d", h.Type, h.ID, t, w.id)
	}
	return f
}

func (w *wire) hello() (preload.Welcome, []netip.Prefix) {
	w.t.Helper()
	w.id++
	var f preload.Frame
	(&preload.Hello{PID: uint32(os.Getpid())}).Put(&f, w.id)
	w.send(&f)
	wl := preload.ParseWelcome(w.expect(preload.TypeWelcome))
	var ranges []netip.Prefix
	for len(ranges) < int(wl.Ranges) {
		r, err := preload.ParseRanges(w.expect(preload.TypeRanges))
		if err != nil {
			w.t.Fatal(err)
		}
		if int(r.First) != len(ranges) {
			w.t.Fatalf("RANGES frame starts at %d, want %d", r.First, len(ranges))
		}
		ranges = append(ranges, r.Prefixes...)
	}
	return wl, ranges
}

func (w *wire) lookup(l preload.Lookup) preload.Answer {
	w.t.Helper()
	w.id++
	var f preload.Frame
	l.Put(&f, w.id)
	w.send(&f)
	a, err := preload.ParseAnswer(w.expect(preload.TypeAnswer))
	if err != nil {
		w.t.Fatal(err)
	}
	return a
}

// signalingLookuper tells, through started, that a lookup has reached it.
type signalingLookuper struct {
	preload.Lookuper
	once    sync.Once
	started chan struct{}
}

func (s *signalingLookuper) Lookup(ctx context.Context, k correlate.Key, wait time.Duration) (correlate.Entry, error) {
	s.once.Do(func() { close(s.started) })
	return s.Lookuper.Lookup(ctx, k, wait)
}

// startSignaling starts a toad whose first lookup closes the channel
// returned as it begins.
func startSignaling(t testing.TB) (*toad, <-chan struct{}) {
	t.Helper()
	sig := &signalingLookuper{started: make(chan struct{})}
	td := startToad(t, func(l preload.Lookuper) preload.Lookuper { sig.Lookuper = l; return sig })
	return td, sig.started
}

// waitingLookup asks, with no bound on the wait, for the connection from
// proxy to origin, and returns once toad has the lookup (started is
// closed); the answer comes on the channel returned.
func (w *wire) waitingLookup(started <-chan struct{}) <-chan preload.Answer {
	answered := make(chan preload.Answer, 1)
	go func() { answered <- w.lookup(preload.Lookup{Peer: proxy, Local: origin, Wait: time.Hour}) }()
	<-started
	return answered
}

func correlateKey(peer, local netip.AddrPort) correlate.Key { return correlate.KeyOf(peer, local) }

func newShared(t testing.TB, table *correlate.Table, slots int) *preload.SharedTable {
	t.Helper()
	sh, err := preload.NewSharedTable(table, slots)
	if err != nil {
		t.Fatal(err)
	}
	return sh
}
