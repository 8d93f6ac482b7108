package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/toad-project/toad/api"
	"github.com/toad-project/toad/api/client"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/apitest"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
	"github.com/toad-project/toad/toa"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// serve starts a real toad API server on a unix socket and returns its
// table and the socket's path.
func serve(t *testing.T) (*correlate.Table, string) {
	t.Helper()
	tab, err := correlate.New(correlate.Config{Capacity: 1 << 12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tab.Close() }) // after the server's close: cleanups run last first
	srv, err := api.New(tab, api.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return tab, apitest.ServeUnix(t, srv)
}

// observe tells the table that the connection from peer to local carried
// a TOA naming real.
func observe(tab *correlate.Table, peer, local net.Addr, real netip.AddrPort, d toa.Dialect) {
	r := decode.Record{
		Time:  t0,
		Peer:  peer.(*net.TCPAddr).AddrPort(),
		Local: local.(*net.TCPAddr).AddrPort(),
		Flags: decode.SYN,
		Seq:   1,
		TOA:   toa.Client{Dialect: d, Addr: real.Addr(), Port: real.Port(), HasPort: toa.BuiltinLayout(d).HasPort()},
	}
	r.TOACount = 1
	tab.Observe(&r)
}

// pair returns both ends of a real TCP connection accepted through l.
func pair(t *testing.T, l net.Listener) (dialed, accepted net.Conn) {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		ch <- res{c, err}
	}()
	d, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return d, r.c
}

func listenTCP(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestListener(t *testing.T) {
	tab, sock := serve(t)
	c := apitest.Client(t, sock)
	l := c.Listener(listenTCP(t))
	real := netip.MustParseAddrPort("203.0.113.7:51234")

	t.Run("known", func(t *testing.T) {
		d, a := pair(t, l)
		observe(tab, d.LocalAddr(), d.RemoteAddr(), real, toa.Kind200V4)
		if got := a.RemoteAddr().String(); got != real.String() {
			t.Errorf("RemoteAddr = %s, want the real client %s", got, real)
		}
		tc := a.(*client.Conn)
		if err := tc.LookupErr(); err != nil {
			t.Errorf("LookupErr = %v, want nil", err)
		}
		if got, want := tc.ProxyAddr().String(), d.LocalAddr().String(); got != want {
			t.Errorf("ProxyAddr = %s, want %s", got, want)
		}
		got, err := client.RealAddr(context.Background(), a) // the conn's own answer, no new lookup
		if err != nil || got.AddrPort() != real {
			t.Errorf("RealAddr = %v, %v; want %v", got, err, real)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		_, a := pair(t, l)
		tc := a.(*client.Conn)
		if got, want := a.RemoteAddr().String(), tc.ProxyAddr().String(); got != want {
			t.Errorf("RemoteAddr = %s, want the socket's own %s", got, want)
		}
		if err := tc.LookupErr(); !errors.Is(err, client.ErrNotFound) {
			t.Errorf("LookupErr = %v, want ErrNotFound", err)
		}
	})
	t.Run("handshake in flight", func(t *testing.T) {
		c := apitest.Client(t, sock, client.WithWait(time.Minute))
		dialed, a := pair(t, c.Listener(listenTCP(t)))
		got := make(chan string, 1)
		go func() { got <- a.RemoteAddr().String() }()
		observe(tab, dialed.LocalAddr(), dialed.RemoteAddr(), real, toa.Kind254V4)
		select {
		case g := <-got:
			if g != real.String() {
				t.Errorf("RemoteAddr = %s, want %s", g, real)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("RemoteAddr did not return")
		}
	})
}

// TestListenerHTTP: a Go HTTP server adopts toad by wrapping its listener,
// and its handlers see the real client in Request.RemoteAddr.
func TestListenerHTTP(t *testing.T) {
	tab, sock := serve(t)
	c := apitest.Client(t, sock)
	inner := listenTCP(t)
	real := netip.MustParseAddrPort("[2001:db8:beef::7]:443")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.RemoteAddr)
	})}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(c.Listener(inner)) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})

	// The TOA must be in the table before the request is read: dial by
	// hand to learn the connection's address first.
	d, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	observe(tab, d.LocalAddr(), d.RemoteAddr(), real, toa.Kind254V6)
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return d, nil }}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://toad.test/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != real.String() {
		t.Errorf("handler saw RemoteAddr %q, want %q", body, real)
	}
}

func TestLookup(t *testing.T) {
	tab, sock := serve(t)
	c := apitest.Client(t, sock)
	peer := &net.TCPAddr{IP: net.ParseIP("198.51.100.10"), Port: 40001}
	local := &net.TCPAddr{IP: net.ParseIP("192.0.2.20"), Port: 8080}
	noPort := netip.AddrPortFrom(netip.MustParseAddr("203.0.113.9"), 0)
	observe(tab, peer, local, noPort, toa.Kind28V4)

	got, err := c.Lookup(context.Background(), peer.AddrPort(), local.AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	want := client.Connection{Client: noPort, Dialect: toa.Kind28V4, FirstSeen: t0, State: toadv1.ConnectionState_CONNECTION_STATE_OPEN}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("Lookup (-want +got):\n%s", diff)
	}
	_, err = c.Lookup(context.Background(), netip.MustParseAddrPort("198.51.100.10:1"), local.AddrPort())
	if !errors.Is(err, client.ErrNotFound) {
		t.Errorf("unknown connection: %v, want ErrNotFound", err)
	}
}

// TestUnreachable: with no toad to ask, connections fall back to the
// proxy's address and say why.
func TestUnreachable(t *testing.T) {
	c := apitest.Client(t, filepath.Join(t.TempDir(), "nobody.sock"))
	_, a := pair(t, c.Listener(listenTCP(t)))
	tc := a.(*client.Conn)
	if got, want := a.RemoteAddr().String(), tc.ProxyAddr().String(); got != want {
		t.Errorf("RemoteAddr = %s, want the socket's own %s", got, want)
	}
	if err := tc.LookupErr(); err == nil || errors.Is(err, client.ErrNotFound) {
		t.Errorf("LookupErr = %v, want a failure to reach toad", err)
	}
}

func TestTarget(t *testing.T) {
	for _, tt := range []struct{ in, want, err string }{
		{"/run/toad/toad.sock", "unix:///run/toad/toad.sock", ""},
		{"unix:///run/toad/toad.sock", "unix:///run/toad/toad.sock", ""},
		{"127.0.0.1:50051", "passthrough:///127.0.0.1:50051", ""},
		{"[::1]:50051", "passthrough:///[::1]:50051", ""},
		{"localhost", "", "want unix:///path/to.sock or host:port"},
		{"", "", "empty address"},
	} {
		got, err := client.Target(tt.in)
		if got != tt.want || fmt.Sprint(err == nil) != fmt.Sprint(tt.err == "") {
			t.Errorf("Target(%q) = %q, %v; want %q, error %q", tt.in, got, err, tt.want, tt.err)
		}
	}
}
