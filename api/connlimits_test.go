package api_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/toad-project/toad/api"
)

// idleHTTP2 opens a connection that sends the HTTP/2 preface and an empty
// SETTINGS frame, reads the server's SETTINGS, then sends nothing more.
func idleHTTP2(tb testing.TB, network, addr string) net.Conn {
	tb.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	fr := http2.NewFramer(c, c)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		tb.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		tb.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	f, err := fr.ReadFrame()
	if err != nil {
		tb.Fatalf("reading the server's first frame: %v", err)
	}
	if _, ok := f.(*http2.SettingsFrame); !ok {
		tb.Fatalf("the server's first frame is %v, want SETTINGS", f.Header())
	}
	return c
}

// closedByServer reads c until the server closes it, or fails the test
// after a generous deadline.
func closedByServer(tb testing.TB, c net.Conn, what string) {
	tb.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := io.Copy(io.Discard, c) // GOAWAY, pings, then the end
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		tb.Errorf("%s: still open: want the server to close it", what)
	}
}

// TestConnIdle: a connection that sends the HTTP/2 preface and nothing
// more is closed once idle, on the API listeners and on the health one.
func TestConnIdle(t *testing.T) {
	short := api.ConnLimits{Idle: 100 * time.Millisecond}
	f := start(t, api.Config{Conn: short, HealthConn: short})
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go f.srv.ServeHealth(hl)
	// The server closes an idle connection about 5s after its GOAWAY when
	// the client, as here, answers no ping: the three wait together.
	conns := map[string]net.Conn{
		"unix socket": idleHTTP2(t, "unix", f.socket),
		"TCP":         idleHTTP2(t, "tcp", f.tcp),
		"health":      idleHTTP2(t, "tcp", hl.Addr().String()),
	}
	for what, c := range conns {
		t.Run(what, func(t *testing.T) {
			t.Parallel()
			closedByServer(t, c, what)
		})
	}
}

// TestConnAge: a connection busy for good, a health Watch, is closed once
// old, after the grace.
func TestConnAge(t *testing.T) {
	f := start(t, api.Config{HealthConn: api.ConnLimits{Age: 100 * time.Millisecond, AgeGrace: 100 * time.Millisecond}})
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go f.srv.ServeHealth(hl)
	cc, err := grpc.NewClient("passthrough:///"+hl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	w, err := healthpb.NewHealthClient(cc).Watch(ctx(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = w.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("health Watch on an old connection ended with %v, want Unavailable, the connection closed", err)
	}
}
