package api_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/toad-project/toad/api"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
)

// TestServeHealth: the health-only listener follows the server's status,
// through the drain, and serves nothing but health.
func TestServeHealth(t *testing.T) {
	f := start(t, api.Config{Drain: time.Hour})
	open(t, f.table, connV4)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- f.srv.ServeHealth(l) }()
	cc, err := grpc.NewClient("passthrough:///"+l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	h := healthpb.NewHealthClient(cc)

	w := watchServing(t, f, h, "")

	// Nothing but health: no lookups, no reflection.
	_, err = toadv1.NewLookupServiceClient(cc).Lookup(ctx(t), &toadv1.LookupRequest{Peer: connV4.peer, Local: connV4.local})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("Lookup on the health listener: %v, want Unimplemented", err)
	}
	rs, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx(t))
	if err == nil {
		err = rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	}
	if err == nil || errors.Is(err, io.EOF) {
		// A stream the server already ended fails Send with io.EOF; Recv
		// tells why.
		_, err = rs.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("reflection on the health listener: %v, want Unimplemented", err)
	}

	// Shutdown: NOT_SERVING during the drain, then the listener closes
	// although a Watch is still open.
	shut, endDrain := startShutdown(t, f, w)
	r, err := h.Check(ctx(t), &healthpb.HealthCheckRequest{Service: api.ServiceName})
	if err != nil || r.GetStatus() != notServing {
		t.Errorf("Check during the drain = %v, %v; want NOT_SERVING", r.GetStatus(), err)
	}
	endDrain()
	recvWithin(t, shut, "Shutdown")
	if err := recvWithin(t, served, "ServeHealth to return"); err != nil {
		t.Errorf("ServeHealth after Shutdown = %v, want nil", err)
	}
	if _, err := w.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("health Watch after Shutdown: %v, want Unavailable", err)
	}
}

// TestServeHealthClose: Close stops the health-only listener too.
func TestServeHealthClose(t *testing.T) {
	f := start(t, api.Config{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- f.srv.ServeHealth(l) }()
	f.srv.Close()
	if err := recvWithin(t, served, "ServeHealth to return"); err != nil {
		t.Errorf("ServeHealth after Close = %v, want nil", err)
	}
	if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
		c.Close()
		t.Errorf("the health listener still accepts after Close")
	}
}
