package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/toad-project/toad/api"
	"github.com/toad-project/toad/journal"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
	"github.com/toad-project/toad/toa"
)

var (
	connV4 = conn{peer: "198.51.100.10:40001", local: "192.0.2.20:8080", client: "203.0.113.7:51234", dialect: toa.Kind200V4}
	connV6 = conn{peer: "[2001:db8::10]:40002", local: "[2001:db8::20]:443", client: "[2001:db8:beef::7]:61000", dialect: toa.Kind254V6}
	// An IPv6 client behind an IPv4 proxy (DPVS FNAT64).
	connNAT64 = conn{peer: "198.51.100.11:40003", local: "192.0.2.20:8080", client: "[2001:db8:cafe::9]:443", dialect: toa.Kind254V6}
	// Alibaba CDN: no port in the TOA.
	connNoPort = conn{peer: "198.51.100.12:40004", local: "192.0.2.20:8080", client: "203.0.113.9", dialect: toa.Kind28V4}
	connClosed = conn{peer: "198.51.100.13:40005", local: "192.0.2.20:8080", client: "203.0.113.13:1313", dialect: toa.Kind254V4}
)

func wantConn(peer, local, client, ip string, port uint32, dialect string, state toadv1.ConnectionState) *toadv1.Connection {
	return &toadv1.Connection{
		Peer: peer, Local: local, Client: client, ClientIp: ip, ClientPort: port, Dialect: dialect,
		FirstSeen: timestamppb.New(t0), State: state,
	}
}

const (
	stateOpen    = toadv1.ConnectionState_CONNECTION_STATE_OPEN
	stateClosing = toadv1.ConnectionState_CONNECTION_STATE_CLOSING
)

func TestLookup(t *testing.T) {
	f := start(t, api.Config{})
	for _, c := range []conn{connV4, connV6, connNAT64, connNoPort, connClosed} {
		open(t, f.table, c)
	}
	closeConn(t, f.table, connClosed)

	tests := []struct {
		name        string
		peer, local string
		wait        *durationpb.Duration
		want        *toadv1.Connection
		code        codes.Code
		msg         string // in the error message
		field       string // the BadRequest field violation
	}{
		{name: "ipv4", peer: connV4.peer, local: connV4.local,
			want: wantConn(connV4.peer, connV4.local, "203.0.113.7:51234", "203.0.113.7", 51234, "200/8", stateOpen)},
		{name: "dual-stack listener", peer: "[::ffff:198.51.100.10]:40001", local: "[::ffff:192.0.2.20]:8080",
			want: wantConn("[::ffff:198.51.100.10]:40001", "[::ffff:192.0.2.20]:8080", "203.0.113.7:51234", "203.0.113.7", 51234, "200/8", stateOpen)},
		{name: "ipv6", peer: connV6.peer, local: connV6.local,
			want: wantConn(connV6.peer, connV6.local, "[2001:db8:beef::7]:61000", "2001:db8:beef::7", 61000, "254/20", stateOpen)},
		{name: "nat64", peer: connNAT64.peer, local: connNAT64.local,
			want: wantConn(connNAT64.peer, connNAT64.local, "[2001:db8:cafe::9]:443", "2001:db8:cafe::9", 443, "254/20", stateOpen)},
		{name: "no port", peer: connNoPort.peer, local: connNoPort.local,
			want: wantConn(connNoPort.peer, connNoPort.local, "203.0.113.9", "203.0.113.9", 0, "28/7", stateOpen)},
		{name: "closing", peer: connClosed.peer, local: connClosed.local,
			want: wantConn(connClosed.peer, connClosed.local, "203.0.113.13:1313", "203.0.113.13", 1313, "254/8", stateClosing)},
		{name: "wait on a known connection", peer: connV4.peer, local: connV4.local, wait: durationpb.New(time.Hour),
			want: wantConn(connV4.peer, connV4.local, "203.0.113.7:51234", "203.0.113.7", 51234, "200/8", stateOpen)},
		{name: "unknown", peer: "198.51.100.99:1", local: connV4.local,
			code: codes.NotFound, msg: "toad has no connection from 198.51.100.99:1 to 192.0.2.20:8080"},
		{name: "unknown after a wait", peer: "198.51.100.99:1", local: connV4.local, wait: durationpb.New(time.Millisecond),
			code: codes.NotFound, msg: "(waited 1ms)"},
		{name: "reversed", peer: connV4.local, local: connV4.peer, code: codes.NotFound},
		{name: "bad peer", peer: "bogus", local: connV4.local,
			code: codes.InvalidArgument, msg: `peer "bogus" is not the address of a connection`, field: "peer"},
		{name: "peer without port", peer: "198.51.100.10", local: connV4.local,
			code: codes.InvalidArgument, msg: `peer "198.51.100.10"`, field: "peer"},
		{name: "bad local", peer: connV4.peer, local: "192.0.2.20:99999",
			code: codes.InvalidArgument, msg: `local "192.0.2.20:99999"`, field: "local"},
		{name: "empty local", peer: connV4.peer, local: "",
			code: codes.InvalidArgument, msg: `local ""`, field: "local"},
		{name: "port zero", peer: "198.51.100.10:0", local: connV4.local,
			code: codes.InvalidArgument, msg: `peer "198.51.100.10:0"`, field: "peer"},
		{name: "negative wait", peer: connV4.peer, local: connV4.local, wait: durationpb.New(-time.Second),
			code: codes.InvalidArgument, msg: "wait -1s is negative", field: "wait"},
		{name: "invalid wait", peer: connV4.peer, local: connV4.local, wait: &durationpb.Duration{Seconds: 1, Nanos: -1},
			code: codes.InvalidArgument, msg: "wait:", field: "wait"},
	}
	for _, tr := range transports {
		c := f.client(t, tr)
		for _, tt := range tests {
			t.Run(tr.name+"/"+tt.name, func(t *testing.T) {
				resp, err := c.Lookup(ctx(t), &toadv1.LookupRequest{Peer: tt.peer, Local: tt.local, Wait: tt.wait})
				if got := status.Code(err); got != tt.code {
					t.Fatalf("Lookup(%q, %q) code = %v (%v), want %v", tt.peer, tt.local, got, err, tt.code)
				}
				if err != nil {
					st := status.Convert(err)
					if !strings.Contains(st.Message(), tt.msg) {
						t.Errorf("error %q does not contain %q", st.Message(), tt.msg)
					}
					if tt.field != "" {
						if got := violatedField(st); got != tt.field {
							t.Errorf("BadRequest field = %q, want %q", got, tt.field)
						}
					}
					return
				}
				if diff := cmp.Diff(tt.want, resp.GetConnection(), protocmp.Transform()); diff != "" {
					t.Errorf("Lookup(%q, %q) connection (-want +got):\n%s", tt.peer, tt.local, diff)
				}
			})
		}
	}
}

func violatedField(st *status.Status) string {
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return ""
}

func TestLookupWaitCapped(t *testing.T) {
	f := start(t, api.Config{MaxWait: 20 * time.Millisecond})
	c := f.client(t, transports[0])
	_, err := c.Lookup(ctx(t), &toadv1.LookupRequest{Peer: "198.51.100.99:1", Local: connV4.local, Wait: durationpb.New(time.Hour)})
	if got := status.Code(err); got != codes.NotFound {
		t.Fatalf("code = %v (%v), want NotFound", got, err)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "(waited 20ms)") {
		t.Errorf("message %q: want the capped wait, (waited 20ms)", msg)
	}
}

// TestLookupNoWait: with NoWait, a lookup that asks to wait answers from
// what the table holds at once.
func TestLookupNoWait(t *testing.T) {
	f := start(t, api.Config{MaxWait: api.NoWait})
	c := f.client(t, transports[0])
	_, err := c.Lookup(ctx(t), &toadv1.LookupRequest{Peer: "198.51.100.99:1", Local: connV4.local, Wait: durationpb.New(time.Hour)})
	if got := status.Code(err); got != codes.NotFound {
		t.Fatalf("code = %v (%v), want NotFound", got, err)
	}
	if msg := status.Convert(err).Message(); strings.Contains(msg, "waited") {
		t.Errorf("message %q: want no wait", msg)
	}
	if st := f.table.Stats(); st.LookupsNotFound != 1 || st.LookupsTimedOut != 0 {
		t.Errorf("table counted %d not found at once, %d timed out; want 1 and 0", st.LookupsNotFound, st.LookupsTimedOut)
	}
	if _, err := api.New(f.table, api.Config{MaxWait: -2}); err == nil {
		t.Error("New with MaxWait -2: no error; want one (NoWait is the only negative bound)")
	}
}

func TestBatchLookup(t *testing.T) {
	f := start(t, api.Config{MaxBatch: 5})
	open(t, f.table, connV4)
	open(t, f.table, connV6)
	open(t, f.table, connNoPort)
	for _, tr := range transports {
		c := f.client(t, tr)
		t.Run(tr.name, func(t *testing.T) {
			keys := []*toadv1.ConnectionKey{
				{Peer: connV6.peer, Local: connV6.local},
				{Peer: "198.51.100.99:1", Local: connV4.local},
				{Peer: "[::ffff:198.51.100.10]:40001", Local: connV4.local},
				{Peer: connNoPort.peer, Local: connNoPort.local},
				{Peer: "198.51.100.98:2", Local: connV4.local},
			}
			resp, err := c.BatchLookup(ctx(t), &toadv1.BatchLookupRequest{Keys: keys})
			if err != nil {
				t.Fatal(err)
			}
			want := []*toadv1.BatchLookupResult{
				{Found: true, Connection: wantConn("", "", "[2001:db8:beef::7]:61000", "2001:db8:beef::7", 61000, "254/20", stateOpen)},
				{},
				{Found: true, Connection: wantConn("", "", "203.0.113.7:51234", "203.0.113.7", 51234, "200/8", stateOpen)},
				{Found: true, Connection: wantConn("", "", "203.0.113.9", "203.0.113.9", 0, "28/7", stateOpen)},
				{},
			}
			if diff := cmp.Diff(want, resp.GetResults(), protocmp.Transform()); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
		})
		t.Run(tr.name+"/empty", func(t *testing.T) {
			resp, err := c.BatchLookup(ctx(t), &toadv1.BatchLookupRequest{})
			if err != nil || len(resp.GetResults()) != 0 {
				t.Errorf("empty batch: got %v, %v; want no results, no error", resp.GetResults(), err)
			}
		})
		t.Run(tr.name+"/over the bound", func(t *testing.T) {
			keys := make([]*toadv1.ConnectionKey, 6)
			for i := range keys {
				keys[i] = &toadv1.ConnectionKey{Peer: connV4.peer, Local: connV4.local}
			}
			_, err := c.BatchLookup(ctx(t), &toadv1.BatchLookupRequest{Keys: keys})
			if got := status.Code(err); got != codes.ResourceExhausted {
				t.Fatalf("6 keys with MaxBatch 5: code = %v (%v), want ResourceExhausted", got, err)
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, "at most 5") {
				t.Errorf("message %q does not give the bound", msg)
			}
		})
		t.Run(tr.name+"/bad key", func(t *testing.T) {
			keys := []*toadv1.ConnectionKey{
				{Peer: connV4.peer, Local: connV4.local},
				{Peer: connV4.peer, Local: connV4.local},
				{Peer: connV4.peer, Local: "192.0.2.20"},
			}
			_, err := c.BatchLookup(ctx(t), &toadv1.BatchLookupRequest{Keys: keys})
			if got := status.Code(err); got != codes.InvalidArgument {
				t.Fatalf("code = %v (%v), want InvalidArgument", got, err)
			}
			st := status.Convert(err)
			if want := `keys[2].local "192.0.2.20"`; !strings.Contains(st.Message(), want) {
				t.Errorf("message %q does not contain %q", st.Message(), want)
			}
			if got := violatedField(st); got != "keys[2].local" {
				t.Errorf("BadRequest field = %q, want keys[2].local", got)
			}
		})
	}
}

func TestBatchLookupMessageBound(t *testing.T) {
	f := start(t, api.Config{MaxRecvMsgSize: 1024})
	c := f.client(t, transports[1])
	keys := make([]*toadv1.ConnectionKey, 100)
	for i := range keys {
		keys[i] = &toadv1.ConnectionKey{Peer: fmt.Sprintf("198.51.100.10:%d", i+1), Local: connV4.local}
	}
	_, err := c.BatchLookup(ctx(t), &toadv1.BatchLookupRequest{Keys: keys})
	if got := status.Code(err); got != codes.ResourceExhausted {
		t.Fatalf("a request over MaxRecvMsgSize: code = %v (%v), want ResourceExhausted", got, err)
	}
}

func TestGetStats(t *testing.T) {
	f := start(t, api.Config{
		Counters: func() map[string]uint64 { return map[string]uint64{"capture_packets": 42} },
		Journal: func() (journal.Stats, bool) {
			return journal.Stats{Records: 7, Groups: 3, Bytes: 512, Compactions: 1, WriteErrors: 2, Failing: true, Size: 300}, true
		},
	})
	open(t, f.table, connV4)
	open(t, f.table, connV6)
	c := f.client(t, transports[0])
	if _, err := c.Lookup(ctx(t), &toadv1.LookupRequest{Peer: connV4.peer, Local: connV4.local}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(ctx(t), &toadv1.LookupRequest{Peer: "198.51.100.99:1", Local: connV4.local}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown connection: %v, want NotFound", err)
	}
	f.srv.SetServing(true)
	resp, err := c.GetStats(ctx(t), &toadv1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := &toadv1.GetStatsResponse{
		Table: &toadv1.TableStats{
			Capacity: 1 << 16, Entries: 2, EntriesIpv4: 1, EntriesIpv6: 1, ConnsWithToa: 2,
			LookupsOk: 1, LookupsNotFound: 1, AllTrusted: true,
		},
		Counters: map[string]uint64{"capture_packets": 42},
		Serving:  true,
		Journal:  &toadv1.JournalStats{Records: 7, Groups: 3, Bytes: 512, Compactions: 1, WriteErrors: 2, Failing: true, SizeBytes: 300},
	}
	if diff := cmp.Diff(want, resp, protocmp.Transform()); diff != "" {
		t.Errorf("GetStats (-want +got):\n%s", diff)
	}
}

// TestLookupWaitResolvedByInsert: a lookup waiting for a handshake in
// flight is answered by the insert that arrives during its wait.
func TestLookupWaitResolvedByInsert(t *testing.T) {
	entered := make(chan struct{}, 1)
	signal := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if info.FullMethod == toadv1.LookupService_Lookup_FullMethodName {
			entered <- struct{}{}
		}
		return h(ctx, req)
	}
	f := start(t, api.Config{MaxWait: time.Minute, Options: []grpc.ServerOption{grpc.UnaryInterceptor(signal)}})
	for i, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			c := f.client(t, tr)
			late := conn{peer: fmt.Sprintf("198.51.100.50:%d", 40000+i), local: connV4.local, client: "203.0.113.50:5050", dialect: toa.Kind254V4}
			type result struct {
				resp *toadv1.LookupResponse
				err  error
			}
			done := make(chan result, 1)
			go func() {
				resp, err := c.Lookup(ctx(t), &toadv1.LookupRequest{Peer: late.peer, Local: late.local, Wait: durationpb.New(time.Minute)})
				done <- result{resp, err}
			}()
			recvWithin(t, entered, "the lookup to reach the server")
			select {
			case r := <-done:
				t.Fatalf("the lookup returned before the connection existed: %v, %v", r.resp, r.err)
			default:
			}
			open(t, f.table, late)
			r := recvWithin(t, done, "the waiting lookup")
			if r.err != nil {
				t.Fatalf("waiting Lookup: %v, want the connection inserted during the wait", r.err)
			}
			want := wantConn(late.peer, late.local, "203.0.113.50:5050", "203.0.113.50", 5050, "254/8", stateOpen)
			if diff := cmp.Diff(want, r.resp.GetConnection(), protocmp.Transform()); diff != "" {
				t.Errorf("connection (-want +got):\n%s", diff)
			}
		})
	}
	if st := f.table.Stats(); st.LookupsTimedOut != 0 || st.LookupsOK != 2 {
		t.Errorf("table counted %d answered and %d timed out, want 2 and 0", st.LookupsOK, st.LookupsTimedOut)
	}
}

// TestLookupWaitTableClosed: a waiting lookup ends with UNAVAILABLE when
// the table closes under it.
func TestLookupWaitTableClosed(t *testing.T) {
	entered := make(chan struct{}, 1)
	signal := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		entered <- struct{}{}
		return h(ctx, req)
	}
	f := start(t, api.Config{Options: []grpc.ServerOption{grpc.UnaryInterceptor(signal)}})
	c := f.client(t, transports[0])
	done := make(chan error, 1)
	go func() {
		_, err := c.Lookup(ctx(t), &toadv1.LookupRequest{Peer: "198.51.100.99:1", Local: connV4.local, Wait: durationpb.New(time.Minute)})
		done <- err
	}()
	recvWithin(t, entered, "the lookup to reach the server")
	f.table.Close()
	if err := recvWithin(t, done, "the waiting lookup"); status.Code(err) != codes.Unavailable {
		t.Errorf("lookup waiting when the table closed: %v, want Unavailable", err)
	}
}

// TestLookupCallerDeadline: a wait longer than the caller's deadline ends
// just before it, with NOT_FOUND rather than the caller's own timeout.
func TestLookupCallerDeadline(t *testing.T) {
	f := start(t, api.Config{})
	c := f.client(t, transports[0])
	dctx, cancel := context.WithTimeout(ctx(t), 200*time.Millisecond)
	defer cancel()
	_, err := c.Lookup(dctx, &toadv1.LookupRequest{Peer: "198.51.100.99:1", Local: connV4.local, Wait: durationpb.New(time.Hour)})
	if got := status.Code(err); got != codes.NotFound {
		t.Errorf("code = %v (%v), want NotFound", got, err)
	}
}
