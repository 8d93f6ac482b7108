package api_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/toad-project/toad/api"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
)

const (
	eventOpen   = toadv1.EventType_EVENT_TYPE_OPEN
	eventClose  = toadv1.EventType_EVENT_TYPE_CLOSE
	eventMissed = toadv1.EventType_EVENT_TYPE_MISSED
)

// watch opens a Watch stream and returns once the server has subscribed:
// every event after that reaches the stream.
func watch(tb testing.TB, c toadv1.LookupServiceClient, port uint32) (toadv1.LookupService_WatchClient, context.CancelFunc) {
	tb.Helper()
	wctx, cancel := context.WithCancel(ctx(tb))
	tb.Cleanup(cancel)
	s, err := c.Watch(wctx, &toadv1.WatchRequest{LocalPort: port})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := s.Header(); err != nil {
		tb.Fatalf("Watch headers: %v", err)
	}
	return s, cancel
}

func TestWatch(t *testing.T) {
	f := start(t, api.Config{})
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			c := f.client(t, tr)
			all, _ := watch(t, c, 0)
			https, _ := watch(t, c, 443)

			v4 := conn{peer: "198.51.100.10:40001", local: "192.0.2.20:8080", client: connV4.client, dialect: connV4.dialect}
			v6 := connV6
			sentinel := conn{peer: "[2001:db8::10]:40009", local: "[2001:db8::20]:443", client: "[2001:db8:beef::9]:9", dialect: connV6.dialect}
			if tr.name == "tcp" { // new connections: the table already holds the first run's
				v4.peer, v6.peer, sentinel.peer = "198.51.100.10:50001", "[2001:db8::10]:50002", "[2001:db8::10]:50009"
			}
			open(t, f.table, v4)
			open(t, f.table, v6)
			closeConn(t, f.table, v4)
			open(t, f.table, sentinel)

			wantV4 := wantConn(v4.peer, v4.local, "203.0.113.7:51234", "203.0.113.7", 51234, "200/8", stateOpen)
			wantV4Closing := wantConn(v4.peer, v4.local, "203.0.113.7:51234", "203.0.113.7", 51234, "200/8", stateClosing)
			wantV6 := wantConn(v6.peer, v6.local, "[2001:db8:beef::7]:61000", "2001:db8:beef::7", 61000, "254/20", stateOpen)
			wantSentinel := wantConn(sentinel.peer, sentinel.local, "[2001:db8:beef::9]:9", "2001:db8:beef::9", 9, "254/20", stateOpen)
			for _, tc := range []struct {
				name   string
				stream toadv1.LookupService_WatchClient
				want   []*toadv1.WatchResponse
			}{
				{"every port", all, []*toadv1.WatchResponse{
					{Type: eventOpen, Connection: wantV4},
					{Type: eventOpen, Connection: wantV6},
					{Type: eventClose, Connection: wantV4Closing},
					{Type: eventOpen, Connection: wantSentinel},
				}},
				{"port 443", https, []*toadv1.WatchResponse{
					{Type: eventOpen, Connection: wantV6},
					{Type: eventOpen, Connection: wantSentinel},
				}},
			} {
				var got []*toadv1.WatchResponse
				for range tc.want {
					ev, err := tc.stream.Recv()
					if err != nil {
						t.Fatalf("%s: Recv: %v", tc.name, err)
					}
					got = append(got, ev)
				}
				if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
					t.Errorf("%s: events (-want +got):\n%s", tc.name, diff)
				}
			}
		})
	}
}

// TestWatchSlowReader floods a watcher that does not read: the server must
// drop events rather than buffer them without bound, and tell the reader
// how many it lost, so that what arrives plus what was missed is exactly
// what happened.
func TestWatchSlowReader(t *testing.T) {
	f := start(t, api.Config{WatchBuffer: 8})
	// A fixed 64 KiB flow-control window (no dynamic growth) bounds what the
	// transport can hold for a reader that does not read.
	cc := f.dial(t, transports[0], grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	s, _ := watch(t, toadv1.NewLookupServiceClient(cc), 0)

	// About 100 bytes an event: far more than the window, the server's
	// write quota and the watch buffer together.
	const n = 20000
	for i := range n {
		open(t, f.table, conn{
			peer:    fmt.Sprintf("198.51.100.%d:%d", 1+i/50000, 1+i%50000),
			local:   "192.0.2.20:8080",
			client:  fmt.Sprintf("203.0.113.7:%d", 1+i%60000),
			dialect: connV4.dialect,
		})
	}
	var delivered, missed, reports uint64
	lastPort := uint16(0)
	for delivered+missed < n {
		ev, err := s.Recv()
		if err != nil {
			t.Fatalf("after %d delivered and %d missed of %d: Recv: %v", delivered, missed, n, err)
		}
		switch ev.GetType() {
		case eventMissed:
			if ev.GetMissed() == 0 {
				t.Errorf("a missed report of 0 events")
			}
			missed += ev.GetMissed()
			reports++
		case eventOpen:
			delivered++
			var port uint16
			if _, err := fmt.Sscanf(ev.GetConnection().GetPeer(), "198.51.100.1:%d", &port); err != nil {
				t.Fatalf("unexpected peer %q", ev.GetConnection().GetPeer())
			}
			if port <= lastPort {
				t.Errorf("event for port %d after port %d: events out of order", port, lastPort)
			}
			lastPort = port
		default:
			t.Fatalf("unexpected event %v", ev)
		}
	}
	if delivered+missed != n {
		t.Errorf("delivered %d + missed %d = %d, want %d", delivered, missed, delivered+missed, n)
	}
	if missed == 0 || delivered == 0 {
		t.Errorf("delivered %d, missed %d: want some of each from a reader that did not keep up", delivered, missed)
	}
	t.Logf("delivered %d, missed %d in %d reports", delivered, missed, reports)
}

func TestWatchLimits(t *testing.T) {
	f := start(t, api.Config{MaxWatchers: 1})
	c := f.client(t, transports[0])
	watch(t, c, 0)

	s, err := c.Watch(ctx(t), &toadv1.WatchRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	if got := status.Code(err); got != codes.ResourceExhausted {
		t.Errorf("a second watcher with MaxWatchers 1: code = %v (%v), want ResourceExhausted", got, err)
	}

	s, err = c.Watch(ctx(t), &toadv1.WatchRequest{LocalPort: 70000})
	if err == nil {
		_, err = s.Recv()
	}
	if got := status.Code(err); got != codes.InvalidArgument {
		t.Errorf("local_port 70000: code = %v (%v), want InvalidArgument", got, err)
	}
}

func TestWatchEndsWithTable(t *testing.T) {
	f := start(t, api.Config{})
	s, _ := watch(t, f.client(t, transports[0]), 0)
	f.table.Close()
	_, err := s.Recv()
	if got := status.Code(err); got != codes.Unavailable || err == io.EOF {
		t.Errorf("after the table closed: Recv = %v, want Unavailable", err)
	}
}

// logged is a slog.Handler that hands each record's message to a channel.
type logged chan string

func (l logged) Enabled(context.Context, slog.Level) bool { return true }
func (l logged) Handle(_ context.Context, r slog.Record) error {
	select {
	case l <- r.Message:
	default:
	}
	return nil
}
func (l logged) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l logged) WithGroup(string) slog.Handler      { return l }

// waitLogged waits for n messages msg, skipping others.
func waitLogged(tb testing.TB, l logged, msg string, n int) {
	tb.Helper()
	deadline := time.After(30 * time.Second)
	for n > 0 {
		select {
		case m := <-l:
			if m == msg {
				n--
			}
		case <-deadline:
			tb.Fatalf("%d more %q expected in the log", n, msg)
		}
	}
}

// stalledWatcher opens a Watch stream, on a connection of its own whose
// flow-control window stays at 64 KiB, that never reads an event.
func stalledWatcher(tb testing.TB, f *fixture) toadv1.LookupService_WatchClient {
	tb.Helper()
	cc := f.dial(tb, transports[0], grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	w, _ := watch(tb, toadv1.NewLookupServiceClient(cc), 0)
	return w
}

// flood opens n connections in the table: n open events, several times
// what a client's window and the server's send quota hold.
func flood(tb testing.TB, f *fixture, n int) {
	tb.Helper()
	for i := range n {
		open(tb, f.table, conn{peer: fmt.Sprintf("198.51.%d.%d:%d", 100+i/50000, i%250, 1024+i%50000), local: connV4.local, client: connV4.client, dialect: connV4.dialect})
	}
}

// TestWatchNotReading: watchers that take no event lose their stream and
// their connection once a send has waited WatchSendTimeout, so that they
// cannot hold every watcher's place.
func TestWatchNotReading(t *testing.T) {
	log := make(logged, 1024)
	f := start(t, api.Config{MaxWatchers: 2, WatchBuffer: 10000, WatchSendTimeout: 200 * time.Millisecond, Logger: slog.New(log)})
	stalled := []toadv1.LookupService_WatchClient{stalledWatcher(t, f), stalledWatcher(t, f)}
	c := f.client(t, transports[1])
	if w, err := c.Watch(ctx(t), &toadv1.WatchRequest{}); err == nil {
		if _, err := w.Recv(); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("a third watcher beside two: %v, want ResourceExhausted", err)
		}
	}
	flood(t, f, 5000)
	waitLogged(t, log, "watcher stopped reading: its connection was closed", len(stalled))
	w, _ := watch(t, c, 0)
	open(t, f.table, connV6)
	if ev, err := w.Recv(); err != nil || ev.GetConnection().GetPeer() != connV6.peer {
		t.Errorf("a watcher after the stalled ones were dropped: %v, %v; want the open of %s", ev, err, connV6.peer)
	}
	for i, s := range stalled {
		var err error
		for err == nil {
			_, err = s.Recv()
		}
		if status.Code(err) != codes.Unavailable {
			t.Errorf("stalled watcher %d, read at last: %v; want Unavailable, its connection closed", i, err)
		}
	}
}

// TestShutdownNotReading: a watcher that takes no event, its send blocked,
// does not hold Shutdown: its connection is closed after a short grace.
func TestShutdownNotReading(t *testing.T) {
	log := make(logged, 1024)
	f := start(t, api.Config{WatchBuffer: 10000, Logger: slog.New(log)})
	stalledWatcher(t, f)
	flood(t, f, 5000)
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.srv.Shutdown(sctx); err != nil {
		t.Errorf("Shutdown with a watcher that does not read = %v, want nil (not cut short by its bound)", err)
	}
}
