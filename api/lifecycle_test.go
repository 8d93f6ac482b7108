package api_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/toad-project/toad/api"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
)

const (
	serving    = healthpb.HealthCheckResponse_SERVING
	notServing = healthpb.HealthCheckResponse_NOT_SERVING
)

func nextHealth(t *testing.T, w healthpb.Health_WatchClient) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	r, err := w.Recv()
	if err != nil {
		t.Fatalf("health Watch: %v", err)
	}
	return r.GetStatus()
}

// watchServing checks that h answers NOT_SERVING for the server and its
// service before f's server is serving, then watches service and checks
// that the watch sees NOT_SERVING, then SERVING after SetServing(true).
func watchServing(t *testing.T, f *fixture, h healthpb.HealthClient, service string) healthpb.Health_WatchClient {
	t.Helper()
	for _, svc := range []string{"", api.ServiceName} {
		r, err := h.Check(ctx(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || r.GetStatus() != notServing {
			t.Errorf("Check(%q) before SetServing = %v, %v; want NOT_SERVING", svc, r.GetStatus(), err)
		}
	}
	w, err := h.Watch(ctx(t), &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatal(err)
	}
	if got := nextHealth(t, w); got != notServing {
		t.Fatalf("first status %v, want NOT_SERVING", got)
	}
	f.srv.SetServing(true)
	if got := nextHealth(t, w); got != serving {
		t.Fatalf("after SetServing(true): %v, want SERVING", got)
	}
	return w
}

// startShutdown starts a Shutdown of f's server whose drain lasts until
// endDrain, and checks that the health watch w sees NOT_SERVING; shut
// receives what Shutdown returns.
func startShutdown(t *testing.T, f *fixture, w healthpb.Health_WatchClient) (shut <-chan error, endDrain context.CancelFunc) {
	t.Helper()
	sctx, endDrain := context.WithCancel(context.Background())
	t.Cleanup(endDrain)
	done := make(chan error, 1)
	go func() { done <- f.srv.Shutdown(sctx) }()
	if got := nextHealth(t, w); got != notServing {
		t.Fatalf("health during the drain: %v, want NOT_SERVING", got)
	}
	return done, endDrain
}

func TestHealth(t *testing.T) {
	f := start(t, api.Config{})
	cc := f.dial(t, transports[0])
	h := healthpb.NewHealthClient(cc)
	if _, err := h.Check(ctx(t), &healthpb.HealthCheckRequest{Service: "no.such.Service"}); status.Code(err) != codes.NotFound {
		t.Errorf("Check of an unknown service: %v, want NotFound", err)
	}

	w := watchServing(t, f, h, api.ServiceName)
	f.srv.SetServing(false)
	if got := nextHealth(t, w); got != notServing {
		t.Fatalf("after SetServing(false): %v, want NOT_SERVING", got)
	}
	f.srv.SetServing(true)
	if got := nextHealth(t, w); got != serving {
		t.Fatalf("after SetServing(true) again: %v, want SERVING", got)
	}
	r, err := h.Check(ctx(t), &healthpb.HealthCheckRequest{})
	if err != nil || r.GetStatus() != serving {
		t.Errorf("Check(\"\") = %v, %v; want SERVING", r.GetStatus(), err)
	}
}

// TestShutdown: health goes NOT_SERVING first and lookups are still
// answered during the drain; watchers are told to go; the listeners close.
func TestShutdown(t *testing.T) {
	f := start(t, api.Config{Drain: time.Hour})
	open(t, f.table, connV4)
	f.srv.SetServing(true)
	cc := f.dial(t, transports[0])
	c := toadv1.NewLookupServiceClient(cc)
	w, err := healthpb.NewHealthClient(cc).Watch(ctx(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := nextHealth(t, w); got != serving {
		t.Fatalf("health before Shutdown: %v, want SERVING", got)
	}
	watcher, _ := watch(t, c, 0)

	shut, endDrain := startShutdown(t, f, w)
	if _, err := c.Lookup(ctx(t), &toadv1.LookupRequest{Peer: connV4.peer, Local: connV4.local}); err != nil {
		t.Errorf("Lookup during the drain: %v, want an answer", err)
	}
	f.srv.SetServing(true) // a late report from the capture must not revive it
	endDrain()
	if err := recvWithin(t, shut, "Shutdown"); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown after its context ended = %v, want context.Canceled", err)
	}
	if _, err := watcher.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("watcher after Shutdown: %v, want Unavailable", err)
	}
	if _, err := c.Lookup(ctx(t), &toadv1.LookupRequest{Peer: connV4.peer, Local: connV4.local}); status.Code(err) != codes.Unavailable {
		t.Errorf("Lookup after Shutdown: %v, want Unavailable", err)
	}
	if err := f.srv.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown = %v, want nil", err)
	}
}

// TestShutdownGraceful: with no drain, a watcher ends and Shutdown
// completes without waiting for its bound.
func TestShutdownGraceful(t *testing.T) {
	f := start(t, api.Config{})
	watcher, _ := watch(t, f.client(t, transports[1]), 0)
	if err := f.srv.Shutdown(ctx(t)); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if _, err := watcher.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("watcher after Shutdown: %v, want Unavailable", err)
	}
}

func TestReflection(t *testing.T) {
	f := start(t, api.Config{})
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			rc := reflectionpb.NewServerReflectionClient(f.dial(t, tr))
			s, err := rc.ServerReflectionInfo(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			ask := func(req *reflectionpb.ServerReflectionRequest) *reflectionpb.ServerReflectionResponse {
				t.Helper()
				if err := s.Send(req); err != nil {
					t.Fatal(err)
				}
				r, err := s.Recv()
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			r := ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
			var names []string
			for _, svc := range r.GetListServicesResponse().GetService() {
				names = append(names, svc.GetName())
			}
			for _, want := range []string{api.ServiceName, "grpc.health.v1.Health"} {
				if !slices.Contains(names, want) {
					t.Errorf("services %q do not include %s", names, want)
				}
			}
			r = ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: api.ServiceName}})
			files := r.GetFileDescriptorResponse().GetFileDescriptorProto()
			if len(files) == 0 {
				t.Fatalf("no file for %s: %v", api.ServiceName, r)
			}
			var fd descriptorpb.FileDescriptorProto
			if err := proto.Unmarshal(files[0], &fd); err != nil {
				t.Fatal(err)
			}
			if fd.GetName() != "toad/v1/toad.proto" || fd.GetPackage() != "toad.v1" {
				t.Errorf("file %q package %q, want toad/v1/toad.proto package toad.v1", fd.GetName(), fd.GetPackage())
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := api.New(nil, api.Config{}); err == nil {
		t.Error("New(nil table): no error")
	}
	f := start(t, api.Config{})
	if _, err := api.New(f.table, api.Config{MaxBatch: -1}); err == nil {
		t.Error("New with MaxBatch -1: no error")
	}
}
