package e2e_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/toad-project/toad/internal/grpcecho"
	"github.com/toad-project/toad/internal/testbed"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
)

// echoServer, set, makes the test binary a bare gRPC echo server on that
// unix socket path instead of running tests: the baseline that toad's
// lookups are measured against, a process of its own as toad is.
var echoServer = flag.String("echo-server", "", "serve grpc.testing's TestService on this unix socket `path` and run no test")

func TestMain(m *testing.M) {
	flag.Parse()
	if *echoServer != "" {
		if err := serveEcho(*echoServer); err != nil {
			fmt.Fprintln(os.Stderr, "echo server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serveEcho serves the echo on path until SIGTERM.
func serveEcho(path string) error {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, grpcecho.Echo{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-sig
		srv.Stop()
	}()
	slog.New(slog.NewTextHandler(os.Stderr, nil)).Info("serving", "socket", path)
	return srv.Serve(ln)
}

// echoClient calls the echo server with a request and a response of the
// sizes of a lookup's: the same bytes on the wire, none of the work.
type echoClient struct {
	proc *testbed.Process
	svc  testgrpc.TestServiceClient
	req  *testgrpc.SimpleRequest
}

// startEcho runs this test binary as an echo server in the origin's
// namespace, beside toad, and returns a client of it.
func startEcho(t testing.TB, b *bed) *echoClient {
	t.Helper()
	path := filepath.Join(b.dir, "echo.sock")
	proc := testbed.Start(t, b.origin, "echo", os.Args[0], "serving", "-test.run=^$", "-echo-server="+path)
	cc, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	// A lookup and its answer as the origin's exchange them.
	k := toadv1.LookupRequest{Peer: "198.51.100.10:40001", Local: origin4.String(), Wait: durationpb.New(lookupWait)}
	resp := &toadv1.LookupResponse{Connection: &toadv1.Connection{
		Peer: k.Peer, Local: k.Local, Client: "203.0.113.2:45648", ClientIp: "203.0.113.2", ClientPort: 45648, Dialect: "254/8",
		FirstSeen: timestamppb.Now(), State: toadv1.ConnectionState_CONNECTION_STATE_OPEN,
	}}
	return &echoClient{proc: proc, svc: testgrpc.NewTestServiceClient(cc), req: grpcecho.Request(&k, resp)}
}

func (e *echoClient) call() error {
	ctx, cancel := context.WithTimeout(context.Background(), lookupWait)
	defer cancel()
	_, err := e.svc.UnaryCall(ctx, e.req)
	return err
}

// withEcho makes the origin call e once per connection (see answer).
func (o *origin) withEcho(e *echoClient) { o.echo.Store(e) }
