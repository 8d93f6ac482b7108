package preload_test

import (
	"context"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/toad-project/toad/api/preload"
)

var (
	proxy  = netip.MustParseAddrPort("198.51.100.10:40001")
	origin = netip.MustParseAddrPort("192.0.2.20:8080")
)

func TestHelloSendsRanges(t *testing.T) {
	ranges := []string{"198.51.100.0/24", "2001:db8:100::/64", "203.0.113.0/28", "10.0.0.0/8",
		"2001:db8:200::/48", "172.16.0.0/12", "192.168.0.0/16"}
	td := startToad(t, nil, trusting(ranges...))
	w := dial(t, td.path)
	wl, got := w.hello()
	var want []netip.Prefix
	for _, r := range ranges {
		want = append(want, netip.MustParsePrefix(r))
	}
	if d := cmp.Diff(want, got, cmpNet); d != "" {
		t.Errorf("ranges (-want +got):\n%s", d)
	}
	if wl.Status != preload.StatusOK || wl.Flags&preload.FlagAllTrusted != 0 || wl.MaxWait != preload.DefaultMaxWait {
		t.Errorf("welcome %+v, want OK, ranges, max wait %v", wl, preload.DefaultMaxWait)
	}
	if wl.Generation != preload.Generation(0, want) {
		t.Errorf("generation %#x, want %#x", wl.Generation, preload.Generation(0, want))
	}

	all := startToad(t, nil)
	wl, got = dial(t, all.path).hello()
	if wl.Flags&preload.FlagAllTrusted == 0 || len(got) != 0 {
		t.Errorf("without trusted ranges: welcome %+v and %d ranges, want FlagAllTrusted and none", wl, len(got))
	}
}

func TestLookup(t *testing.T) {
	td := startToad(t, nil, trusting("198.51.100.0/24"))
	td.insert(proxy, origin, client4("203.0.113.7:51234"))
	w := dial(t, td.path)
	w.hello()

	a := w.lookup(preload.Lookup{Peer: proxy, Local: origin, Report: preload.Report{3, 1, 0, 2, 1}})
	if a.Status != preload.StatusOK || a.Client != client4("203.0.113.7:51234") {
		t.Errorf("answer %+v, want the client", a)
	}
	// The kernel reports an IPv4 peer as IPv4-mapped on a dual-stack socket.
	mapped := netip.AddrPortFrom(netip.AddrFrom16(proxy.Addr().As16()), proxy.Port())
	if a := w.lookup(preload.Lookup{Peer: mapped, Local: netip.AddrPortFrom(netip.AddrFrom16(origin.Addr().As16()), origin.Port())}); a.Status != preload.StatusOK {
		t.Errorf("lookup with IPv4-mapped addresses: %v, want OK", a.Status)
	}
	other := netip.MustParseAddrPort("198.51.100.11:40001")
	if a := w.lookup(preload.Lookup{Peer: other, Local: origin}); a.Status != preload.StatusNotFound {
		t.Errorf("unknown connection: %v, want NOT_FOUND", a.Status)
	}
	// A peer outside the ranges is not waited for: the table never holds it.
	untrusted := netip.MustParseAddrPort("192.0.2.99:1234")
	if a := w.lookup(preload.Lookup{Peer: untrusted, Local: origin, Wait: time.Hour}); a.Status != preload.StatusNotFound {
		t.Errorf("untrusted peer: %v, want NOT_FOUND", a.Status)
	}
	var f preload.Frame
	preload.PutReport(&f, 0, &preload.Report{0, 0, 4, 0, 0, 9})
	w.send(&f)
	w.c.Close()
	td.idle()
	want := preload.Stats{
		ConnsAccepted: 1, Hellos: 1, Lookups: 4, Found: 2, NotFound: 2, Untrusted: 1, Reports: 1,
		GetnameOK: 3, GetnameEmpty: 1, GetnameMismatch: 4, GetnameBypass: 2, Fallbacks: 1,
	}
	if d := cmp.Diff(want, td.srv.Stats()); d != "" {
		t.Errorf("stats (-want +got):\n%s", d)
	}
}

func TestLookupWaits(t *testing.T) {
	td, started := startSignaling(t)
	answered := dial(t, td.path).waitingLookup(started)
	td.insert(proxy, origin, client4("203.0.113.7:1"))
	select {
	case a := <-answered:
		if a.Status != preload.StatusOK {
			t.Errorf("answer %v, want OK once the handshake arrives", a.Status)
		}
	case <-time.After(deadline):
		t.Fatal("no answer")
	}
}

func TestBadFrames(t *testing.T) {
	td := startToad(t, nil)
	t.Run("version", func(t *testing.T) {
		w := dial(t, td.path)
		var f preload.Frame
		(&preload.Hello{}).Put(&f, 5)
		f[2] = 2
		w.send(&f)
		h, g, ok := w.recv()
		if !ok || h.Type != preload.TypeWelcome || h.Version != preload.Version || h.ID != 5 {
			t.Fatalf("got %+v (ok %v), want a version %d WELCOME for id 5", h, ok, preload.Version)
		}
		if st := preload.ParseWelcome(g).Status; st != preload.StatusBadVersion {
			t.Errorf("status %v, want BAD_VERSION", st)
		}
		if _, _, ok := w.recv(); ok {
			t.Error("the server kept the connection of another version")
		}
	})
	t.Run("size", func(t *testing.T) {
		w := dial(t, td.path)
		w.c.Write([]byte("TD\x01\x01"))
		if _, _, ok := w.recv(); ok {
			t.Error("the server answered a 4-byte message")
		}
	})
	t.Run("oversize", func(t *testing.T) {
		w := dial(t, td.path)
		var f [preload.FrameSize + 8]byte
		(&preload.Hello{}).Put((*preload.Frame)(f[:preload.FrameSize]), 1)
		w.c.Write(f[:])
		if _, _, ok := w.recv(); ok {
			t.Error("the server answered a long message")
		}
	})
	t.Run("type", func(t *testing.T) {
		w := dial(t, td.path)
		var f preload.Frame
		(&preload.Answer{Status: preload.StatusOK}).Put(&f, 3) // a frame of the other direction
		w.send(&f)
		w.id = 3
		a, _ := preload.ParseAnswer(w.expect(preload.TypeAnswer))
		if a.Status != preload.StatusBadRequest {
			t.Errorf("status %v, want BAD_REQUEST", a.Status)
		}
		// The connection stays usable.
		if a := w.lookup(preload.Lookup{Peer: proxy, Local: origin}); a.Status != preload.StatusNotFound {
			t.Errorf("lookup after a bad request: %v, want NOT_FOUND", a.Status)
		}
	})
	t.Run("address", func(t *testing.T) {
		w := dial(t, td.path)
		if a := w.lookup(preload.Lookup{Peer: netip.MustParseAddrPort("0.0.0.0:0"), Local: origin}); a.Status != preload.StatusBadRequest {
			t.Errorf("status %v, want BAD_REQUEST", a.Status)
		}
	})
	td.idle()
	st := td.srv.Stats()
	if st.BadVersion != 1 || st.BadFrames != 2 || st.BadRequests != 2 {
		t.Errorf("stats %+v, want 1 bad version, 2 bad frames, 2 bad requests", st)
	}
}

func TestMaxConns(t *testing.T) {
	td := startToad(t, nil, maxConns(1))
	first := dial(t, td.path)
	first.hello()
	second := dial(t, td.path)
	h, f, ok := second.recv()
	if !ok || h.Type != preload.TypeWelcome || preload.ParseWelcome(f).Status != preload.StatusBusy {
		t.Fatalf("second connection got %+v (ok %v), want WELCOME BUSY", h, ok)
	}
	if _, _, ok := second.recv(); ok {
		t.Error("the server kept a connection past MaxConns")
	}
	if st := td.srv.Stats(); st.ConnsRefused != 1 || st.ConnsOpen != 1 {
		t.Errorf("stats %+v, want 1 refused and 1 open", st)
	}
	// The first is still served.
	if a := first.lookup(preload.Lookup{Peer: proxy, Local: origin}); a.Status != preload.StatusNotFound {
		t.Errorf("first connection: %v, want NOT_FOUND", a.Status)
	}
}

func TestShutdown(t *testing.T) {
	td, started := startSignaling(t)
	busy, idle := dial(t, td.path), dial(t, td.path)
	idle.hello()
	answered := busy.waitingLookup(started)

	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- td.srv.Shutdown(ctx) }()
	// The idle connection is closed at once; the lookup in flight is not.
	if _, _, ok := idle.recv(); ok {
		t.Fatal("an idle connection got a frame during shutdown")
	}
	if _, err := net.Dial("unixpacket", td.path); err == nil {
		t.Error("the socket still accepts during shutdown")
	}
	select {
	case a := <-answered:
		t.Fatalf("the lookup in flight was answered %v before it ended", a.Status)
	default:
	}
	td.insert(proxy, origin, client4("203.0.113.7:1"))
	if a := <-answered; a.Status != preload.StatusOK {
		t.Errorf("lookup in flight answered %v, want OK", a.Status)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	cancel()
}

func TestCloseAnswersWaitingLookups(t *testing.T) {
	td, started := startSignaling(t)
	answered := dial(t, td.path).waitingLookup(started)
	td.srv.Close()
	if a := <-answered; a.Status != preload.StatusNotServing {
		t.Errorf("waiting lookup answered %v at Close, want NOT_SERVING", a.Status)
	}
}

func TestServeNeedsSeqpacket(t *testing.T) {
	td := startToad(t, nil)
	ln, err := net.Listen("unix", socketPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := td.srv.Serve(ln); err == nil || !strings.Contains(err.Error(), "unixpacket") {
		t.Errorf("Serve on a stream socket: %v, want an error naming unixpacket", err)
	}
}

func TestNewChecksConfig(t *testing.T) {
	td := startToad(t, nil)
	for _, cfg := range []preload.Config{
		{MaxWait: -1},
		{MaxConns: -1},
		{Trusted: []netip.Prefix{{}}},
	} {
		if _, err := preload.New(td.table, cfg); err == nil {
			t.Errorf("New(%+v) accepted it", cfg)
		}
	}
	if _, err := preload.New(nil, preload.Config{}); err == nil {
		t.Error("New(nil) accepted it")
	}
}

// TestCounters checks that Counters describes every field of Stats once,
// in order, and reads the field it names.
func TestCounters(t *testing.T) {
	typ := reflect.TypeFor[preload.Stats]()
	if len(preload.Counters) != typ.NumField() {
		t.Fatalf("%d counters for %d Stats fields", len(preload.Counters), typ.NumField())
	}
	names := map[string]bool{}
	for i, c := range preload.Counters {
		var st preload.Stats
		reflect.ValueOf(&st).Elem().Field(i).SetUint(uint64(i + 1))
		if got := c.Value(&st); got != uint64(i+1) {
			t.Errorf("counter %s reads %d, want field %s (%d)", c.Name, got, typ.Field(i).Name, i+1)
		}
		if names[c.Name] || c.Name == "" || c.Help == "" {
			t.Errorf("counter %d: name %q (duplicate or empty) or no help", i, c.Name)
		}
		names[c.Name] = true
	}
}
