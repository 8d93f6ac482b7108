package apicmp

import (
	"context"
	"testing"
	"time"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"

	"github.com/toad-project/toad/internal/grpcecho"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
)

// TestRun runs every case briefly against real servers: each side makes
// calls, and toad's answer every lookup (a failed call fails Run).
func TestRun(t *testing.T) {
	res, err := Run(context.Background(), Config{Phase: 50 * time.Millisecond, Rounds: 2, Batch: 100, Conns: 1000, Callers: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		kase    string
		callers int
	}{{"unary", 1}, {"unary", 2}, {"batch", 2}, {"stream", 1}}
	if len(res) != len(want) {
		t.Fatalf("got %d results, want %d", len(res), len(want))
	}
	for i, r := range res {
		if r.Case != want[i].kase || r.Callers != want[i].callers {
			t.Errorf("result %d: got %s with %d callers, want %s with %d", i, r.Case, r.Callers, want[i].kase, want[i].callers)
		}
		for _, s := range []Side{r.Toad, r.Echo} {
			if s.Rate <= 0 || s.Calls == 0 || s.P50 <= 0 || s.P99 < s.P50 {
				t.Errorf("%s: side %+v", r.Case, s)
			}
		}
	}
}

func TestRunConfig(t *testing.T) {
	if _, err := Run(context.Background(), Config{Batch: 10, Conns: 5}); err == nil {
		t.Error("a batch larger than the table: got no error")
	}
}

// TestEchoRequest checks that the echo carries toad's bytes: a request of
// the size of toad's, asking for a response of the size of toad's.
func TestEchoRequest(t *testing.T) {
	keys := make([]*toadv1.ConnectionKey, 300)
	for i := range keys {
		r := connection(i)
		keys[i] = &toadv1.ConnectionKey{Peer: r.Peer.String(), Local: r.Local.String()}
	}
	req := &toadv1.BatchLookupRequest{Keys: keys}
	resp := &toadv1.BatchLookupResponse{Results: make([]*toadv1.BatchLookupResult, 300)}
	for i := range resp.Results {
		resp.Results[i] = &toadv1.BatchLookupResult{Found: true, Connection: &toadv1.Connection{Client: "203.0.113.7:51234", ClientIp: "203.0.113.7", ClientPort: 51234, Dialect: "200/8"}}
	}
	ereq := grpcecho.Request(req, resp)
	eresp := &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: make([]byte, ereq.GetResponseSize())}}
	if got, want := proto.Size(ereq), proto.Size(req); got != want {
		t.Errorf("echo request: %d bytes, toad's %d", got, want)
	}
	if got, want := proto.Size(eresp), proto.Size(resp); got != want {
		t.Errorf("echo response: %d bytes, toad's %d", got, want)
	}
}
