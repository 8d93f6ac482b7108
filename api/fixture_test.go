package api_test

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/toad-project/toad/api"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
	"github.com/toad-project/toad/toa"
)

// fixture is a real server on a real unix socket and a real TCP port.
type fixture struct {
	table  *correlate.Table
	srv    *api.Server
	socket string // the unix socket's path
	tcp    string // the TCP listener's host:port
	served chan error
}

// transport is one way of reaching the fixture's server.
type transport struct {
	name   string
	target func(f *fixture) string
}

var transports = []transport{
	{"unix", func(f *fixture) string { return "unix://" + f.socket }},
	{"tcp", func(f *fixture) string { return "passthrough:///" + f.tcp }},
}

// start serves a new table on a unix socket and a loopback TCP port; the
// server and the table are closed when the test ends.
func start(tb testing.TB, cfg api.Config) *fixture {
	tb.Helper()
	tab, err := correlate.New(correlate.Config{Capacity: 1 << 16})
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := api.New(tab, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	f := &fixture{table: tab, srv: srv, socket: filepath.Join(tb.TempDir(), "toad.sock"), served: make(chan error, 2)}
	ul, err := api.ListenUnix(f.socket, api.DefaultSocketMode)
	if err != nil {
		tb.Fatal(err)
	}
	tl, err := api.ListenTCP("127.0.0.1:0", false)
	if err != nil {
		ul.Close()
		tb.Fatal(err)
	}
	f.tcp = tl.Addr().String()
	for _, l := range []net.Listener{ul, tl} {
		go func() { f.served <- srv.Serve(l) }()
	}
	tb.Cleanup(func() {
		srv.Close()
		for range 2 {
			if err := <-f.served; err != nil {
				tb.Errorf("Serve returned %v, want nil after Close", err)
			}
		}
		tab.Close()
	})
	return f
}

// dial connects to the fixture over tr; the connection closes when the
// test ends.
func (f *fixture) dial(tb testing.TB, tr transport, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	cc, err := grpc.NewClient(tr.target(f), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cc.Close() })
	return cc
}

func (f *fixture) client(tb testing.TB, tr transport) toadv1.LookupServiceClient {
	return toadv1.NewLookupServiceClient(f.dial(tb, tr))
}

// conn is a connection as the test feeds it to the table.
type conn struct {
	peer, local string // server-side addresses
	client      string // the TOA's client: ip:port, or ip alone for kind 28
	dialect     toa.Dialect
}

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// open feeds the table the SYN of c, carrying its TOA.
func open(tb testing.TB, tab *correlate.Table, c conn) {
	tb.Helper()
	r := record(tb, c, decode.SYN)
	tab.Observe(&r)
}

// closeConn feeds the table a FIN of c.
func closeConn(tb testing.TB, tab *correlate.Table, c conn) {
	tb.Helper()
	r := record(tb, conn{peer: c.peer, local: c.local}, decode.FIN|decode.ACK)
	r.Seq = 1001
	tab.Observe(&r)
}

func record(tb testing.TB, c conn, flags decode.Flags) decode.Record {
	tb.Helper()
	r := decode.Record{
		Time:  t0,
		Peer:  netip.MustParseAddrPort(c.peer),
		Local: netip.MustParseAddrPort(c.local),
		Flags: flags,
		Seq:   1000,
	}
	if c.client != "" {
		cl := toa.Client{Dialect: c.dialect, HasPort: toa.BuiltinLayout(c.dialect).HasPort()}
		if cl.HasPort {
			ap := netip.MustParseAddrPort(c.client)
			cl.Addr, cl.Port = ap.Addr(), ap.Port()
		} else {
			cl.Addr = netip.MustParseAddr(c.client)
		}
		r.TOA, r.TOACount = cl, 1
	}
	return r
}

// ctx returns a context that ends with the test, or, for a test rather
// than a benchmark, after a generous deadline so that a hang fails instead
// of stalling the run.
func ctx(tb testing.TB) context.Context {
	if _, ok := tb.(*testing.B); ok {
		c, cancel := context.WithCancel(context.Background())
		tb.Cleanup(cancel)
		return c
	}
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return c
}

// recvWithin receives from ch, failing the test after a generous deadline.
func recvWithin[T any](tb testing.TB, ch <-chan T, what string) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		tb.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}
