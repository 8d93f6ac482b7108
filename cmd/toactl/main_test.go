package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/toad-project/toad/api"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/apitest"
	"github.com/toad-project/toad/journal"
	"github.com/toad-project/toad/toa"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// headerSignal tells when a stream sent its headers: the Watch handler
// does so once it has subscribed.
type headerSignal struct {
	grpc.ServerStream
	sent chan<- struct{}
}

func (s headerSignal) SendHeader(md metadata.MD) error {
	err := s.ServerStream.SendHeader(md)
	s.sent <- struct{}{}
	return err
}

type server struct {
	table    *correlate.Table
	socket   string
	watching chan struct{}
}

func serve(t *testing.T) *server {
	t.Helper()
	s := &server{watching: make(chan struct{}, 1)}
	var err error
	if s.table, err = correlate.New(correlate.Config{Capacity: 1 << 12}); err != nil {
		t.Fatal(err)
	}
	signal := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return h(srv, headerSignal{ss, s.watching})
	}
	srv, err := api.New(s.table, api.Config{
		Options:  []grpc.ServerOption{grpc.StreamInterceptor(signal)},
		Counters: func() map[string]uint64 { return map[string]uint64{"capture_packets": 7} },
		Journal:  func() (journal.Stats, bool) { return journal.Stats{Records: 12, WriteErrors: 1, Failing: true}, true },
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetServing(true)
	t.Cleanup(func() { s.table.Close() }) // after the server's, which runs first
	s.socket = apitest.ServeUnix(t, srv)
	return s
}

func (s *server) observe(peer, local, client string, d toa.Dialect, flags decode.Flags) {
	r := decode.Record{Time: t0, Peer: netip.MustParseAddrPort(peer), Local: netip.MustParseAddrPort(local), Flags: flags, Seq: 1}
	if client != "" {
		ap := netip.MustParseAddrPort(client)
		r.TOA = toa.Client{Dialect: d, Addr: ap.Addr(), Port: ap.Port(), HasPort: true}
		r.TOACount = 1
	}
	s.table.Observe(&r)
}

func toactl(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = cli(ctx, args, &o, &e)
	return code, o.String(), e.String()
}

func TestLookup(t *testing.T) {
	s := serve(t)
	s.observe("198.51.100.10:40001", "192.0.2.20:8080", "203.0.113.7:51234", toa.Kind200V4, decode.SYN)
	addr := "unix://" + s.socket
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"--addr", addr, "lookup", "198.51.100.10:40001", "192.0.2.20:8080"}, 0,
			"203.0.113.7:51234 (dialect 200/8, open, first seen 2026-11-21T12:00:00Z)\n", ""},
		{[]string{"lookup", "--addr", s.socket, "--json", "[::ffff:198.51.100.10]:40001", "192.0.2.20:8080"}, 0,
			`{"peer":"[::ffff:198.51.100.10]:40001","local":"192.0.2.20:8080","client":"203.0.113.7:51234","client_ip":"203.0.113.7","client_port":51234,"dialect":"200/8","state":"open","first_seen":"2026-11-21T12:00:00Z"}` + "\n", ""},
		{[]string{"--addr", addr, "lookup", "--wait", "1ms", "198.51.100.10:1", "192.0.2.20:8080"}, 1,
			"", "toactl: toad has no connection from 198.51.100.10:1 to 192.0.2.20:8080 (waited 1ms)\n"},
		{[]string{"--addr", addr, "lookup", "bogus", "192.0.2.20:8080"}, 1,
			"", `toactl: peer "bogus" is not the address of a connection`},
		{[]string{"--addr", addr, "lookup", "198.51.100.10:40001"}, 2, "", "lookup takes PEER and LOCAL"},
		{[]string{"--addr", addr, "frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{[]string{"--addr", addr}, 2, "", "no command"},
		{[]string{"--addr", addr, "watch", "--port", "70000"}, 2, "", "--port 70000"},
		{[]string{"--addr", filepath.Join(t.TempDir(), "nobody.sock"), "stats"}, 1, "", "cannot reach toad at"},
		{[]string{"--addr", "nonsense", "stats"}, 1, "", "want unix:///path/to.sock or host:port"},
	}
	for _, tt := range tests {
		code, stdout, stderr := toactl(context.Background(), tt.args...)
		if code != tt.code || stdout != tt.stdout || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("toactl %q:\ngot  %d, stdout %q, stderr %q\nwant %d, stdout %q, stderr containing %q",
				tt.args, code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
		}
	}
}

func TestStats(t *testing.T) {
	s := serve(t)
	s.observe("198.51.100.10:40001", "192.0.2.20:8080", "203.0.113.7:51234", toa.Kind200V4, decode.SYN)
	code, stdout, stderr := toactl(context.Background(), "--addr", s.socket, "--json", "stats")
	if code != 0 {
		t.Fatalf("toactl stats: %d, %s", code, stderr)
	}
	var got struct {
		Serving  bool              `json:"serving"`
		Table    map[string]any    `json:"table"`
		Counters map[string]uint64 `json:"counters"`
		Journal  map[string]any    `json:"journal"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("%q: %v", stdout, err)
	}
	if !got.Serving || got.Table["entries"] != 1.0 || got.Table["all_trusted"] != true || got.Counters["capture_packets"] != 7 ||
		got.Journal["records"] != 12.0 || got.Journal["write_errors"] != 1.0 || got.Journal["failing"] != true {
		t.Errorf("stats JSON %s: want serving, 1 entry, all trusted, capture_packets 7, journal records 12, write_errors 1, failing", stdout)
	}
	code, stdout, _ = toactl(context.Background(), "--addr", s.socket, "stats")
	if code != 0 || !strings.Contains(stdout, "entries ") || !strings.Contains(stdout, "capture_packets ") ||
		!regexp.MustCompile(`(?m)^journal_records +12$`).MatchString(stdout) || !regexp.MustCompile(`(?m)^journal_failing +true$`).MatchString(stdout) {
		t.Errorf("toactl stats: %d, %q", code, stdout)
	}
}

// lines is an io.Writer that hands each complete line to a channel.
type lines struct {
	w  *io.PipeWriter
	ch chan string
}

func newLines() *lines {
	r, w := io.Pipe()
	l := &lines{w: w, ch: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			l.ch <- sc.Text()
		}
		close(l.ch)
	}()
	return l
}

func (l *lines) Write(p []byte) (int, error) { return l.w.Write(p) }

func TestWatch(t *testing.T) {
	s := serve(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := newLines()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli(ctx, []string{"--addr", s.socket, "watch", "--json", "--port", "8080"}, out, &stderr)
		out.w.Close()
	}()
	select {
	case <-s.watching:
	case <-time.After(20 * time.Second):
		t.Fatal("toactl watch did not subscribe")
	}
	s.observe("198.51.100.10:40001", "192.0.2.20:443", "203.0.113.8:1", toa.Kind200V4, decode.SYN) // another port
	s.observe("198.51.100.10:40002", "192.0.2.20:8080", "203.0.113.7:51234", toa.Kind200V4, decode.SYN)
	s.observe("198.51.100.10:40002", "192.0.2.20:8080", "", toa.Dialect{}, decode.FIN|decode.ACK)
	var got []string
	for range 2 {
		select {
		case l := <-out.ch:
			got = append(got, l)
		case <-time.After(20 * time.Second):
			t.Fatalf("watch printed %q, want 2 lines", got)
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("toactl watch ended with %d (%s), want 0 after an interrupt", code, stderr.String())
	}
	want := []string{
		`{"event":"open","peer":"198.51.100.10:40002","local":"192.0.2.20:8080","client":"203.0.113.7:51234","client_ip":"203.0.113.7","client_port":51234,"dialect":"200/8","state":"open","first_seen":"2026-11-21T12:00:00Z"}`,
		`{"event":"close","peer":"198.51.100.10:40002","local":"192.0.2.20:8080","client":"203.0.113.7:51234","client_ip":"203.0.113.7","client_port":51234,"dialect":"200/8","state":"closing","first_seen":"2026-11-21T12:00:00Z"}`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("watch output (-want +got):\n%s", diff)
	}
}
