package metrics_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"

	"github.com/toad-project/toad/api"
	"github.com/toad-project/toad/api/client"
	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/apitest"
	"github.com/toad-project/toad/internal/metrics"
	"github.com/toad-project/toad/journal"
	"github.com/toad-project/toad/toa"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// segment feeds tab one segment from peer to local, with a TOA naming
// client unless it is the zero AddrPort.
func segment(tab *correlate.Table, peer, local string, flags decode.Flags, client string) {
	r := decode.Record{Time: t0, Peer: netip.MustParseAddrPort(peer), Local: netip.MustParseAddrPort(local), Flags: flags, Seq: 1000}
	if client != "" {
		c := netip.MustParseAddrPort(client)
		d := toa.Kind200V4
		if c.Addr().Is6() {
			d = toa.Kind254V6
		}
		r.TOA, r.TOACount = toa.Client{Dialect: d, Addr: c.Addr(), Port: c.Port(), HasPort: true}, 1
	}
	tab.Observe(&r)
}

func newTable(t *testing.T, trusted ...string) *correlate.Table {
	t.Helper()
	var cfg correlate.Config
	for _, p := range trusted {
		cfg.Trusted = append(cfg.Trusted, netip.MustParsePrefix(p))
	}
	tab, err := correlate.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tab.Close)
	return tab
}

func TestCollector(t *testing.T) {
	tab := newTable(t, "198.51.100.0/24")
	segment(tab, "198.51.100.10:40001", "192.0.2.20:8080", decode.SYN, "203.0.113.7:51234")
	segment(tab, "198.51.100.10:40002", "192.0.2.20:8080", decode.SYN, "[2001:db8::7]:51234")
	segment(tab, "198.51.100.10:40002", "192.0.2.20:8080", decode.FIN|decode.ACK, "")
	segment(tab, "198.51.100.10:40003", "192.0.2.20:8080", decode.SYN, "")
	segment(tab, "198.51.100.10:40003", "192.0.2.20:8080", decode.RST, "")
	segment(tab, "192.0.2.99:40004", "192.0.2.20:8080", decode.SYN, "203.0.113.8:1") // untrusted
	if _, ok := tab.Get(correlate.KeyOf(netip.MustParseAddrPort("198.51.100.10:40001"), netip.MustParseAddrPort("192.0.2.20:8080"))); !ok {
		t.Fatal("the table did not take the trusted TOA")
	}
	ctx := context.Background()
	if _, err := tab.Lookup(ctx, correlate.KeyOf(netip.MustParseAddrPort("198.51.100.10:40001"), netip.MustParseAddrPort("192.0.2.20:8080")), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := tab.Lookup(ctx, correlate.KeyOf(netip.MustParseAddrPort("198.51.100.10:40009"), netip.MustParseAddrPort("192.0.2.20:8080")), 0); !errors.Is(err, correlate.ErrNotFound) {
		t.Fatalf("lookup of an unknown connection: %v, want ErrNotFound", err)
	}

	var cs capture.Stats
	cs.Packets, cs.Records, cs.KernelPackets, cs.Drops, cs.Readers = 9, 7, 10, 1, 2
	cs.Failures[decode.Fragment] = 2
	cs.Filter = capture.FilterTCP
	src := metrics.NoSource
	c := metrics.NewCollector(tab, func() (capture.Stats, metrics.Source) { return cs, src })

	want := `
# HELP toad_syn_recv_sock_toa_total Connections whose TOA, from a trusted peer, created a table entry (toa_stats syn_recv_sock_toa).
# TYPE toad_syn_recv_sock_toa_total counter
toad_syn_recv_sock_toa_total 2
# HELP toad_syn_recv_sock_no_toa_total Connections from trusted peers that ended (FIN or RST) while the table held no entry for them: no TOA was seen, or the entry was evicted or expired (toa_stats syn_recv_sock_no_toa).
# TYPE toad_syn_recv_sock_no_toa_total counter
toad_syn_recv_sock_no_toa_total 1
# HELP toad_getname_toa_ok_total Lookups answered with a real client (toa_stats getname_toa_ok).
# TYPE toad_getname_toa_ok_total counter
toad_getname_toa_ok_total 1
# HELP toad_getname_toa_empty_total Lookups of a connection the table does not hold, answered at once with NOT_FOUND (toa_stats getname_toa_empty).
# TYPE toad_getname_toa_empty_total counter
toad_getname_toa_empty_total 1
# HELP toad_untrusted_toa_total Segments carrying a TOA from a peer outside the trusted proxy ranges; none was believed.
# TYPE toad_untrusted_toa_total counter
toad_untrusted_toa_total 1
# HELP toad_entries Entries held, open or closing, by the family of their real client (toa_stats ip6_address_alloc - ip6_address_free for ipv6).
# TYPE toad_entries gauge
toad_entries{family="ipv4"} 1
toad_entries{family="ipv6"} 1
# HELP toad_entries_closing Entries of closed connections, still answered until their linger ends.
# TYPE toad_entries_closing gauge
toad_entries_closing 1
# HELP toad_all_peers_trusted 1 when no trusted proxy ranges are configured, so a TOA from any peer is believed.
# TYPE toad_all_peers_trusted gauge
toad_all_peers_trusted 0
`
	names := []string{"toad_syn_recv_sock_toa_total", "toad_syn_recv_sock_no_toa_total", "toad_getname_toa_ok_total",
		"toad_getname_toa_empty_total", "toad_untrusted_toa_total", "toad_entries", "toad_entries_closing", "toad_all_peers_trusted"}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}

	// Capture series appear with their source: none before it is
	// attached, no kernel counters for a replay.
	for _, tt := range []struct {
		src     metrics.Source
		want    []string
		missing []string
	}{
		{metrics.NoSource, nil, []string{"toad_capture_packets_total", "toad_capture_kernel_drops_total"}},
		{metrics.Replay, []string{"toad_capture_packets_total", "toad_capture_decode_failures_total"}, []string{"toad_capture_kernel_drops_total", "toad_capture_filter_attached"}},
		{metrics.Live, []string{"toad_capture_packets_total", "toad_capture_kernel_drops_total", "toad_capture_filter_attached", "toad_capture_readers"}, nil},
	} {
		src = tt.src
		got := families(t, c)
		for _, n := range tt.want {
			if _, ok := got[n]; !ok {
				t.Errorf("source %v: no %s", tt.src, n)
			}
		}
		for _, n := range tt.missing {
			if _, ok := got[n]; ok {
				t.Errorf("source %v: %s exported, want it absent", tt.src, n)
			}
		}
	}
	src = metrics.Live
	want = `
# HELP toad_capture_decode_failures_total Packets the decoder rejected, by reason.
# TYPE toad_capture_decode_failures_total counter
toad_capture_decode_failures_total{reason="bad_ip_header"} 0
toad_capture_decode_failures_total{reason="bad_options"} 0
toad_capture_decode_failures_total{reason="bad_tcp_header"} 0
toad_capture_decode_failures_total{reason="fragment"} 2
toad_capture_decode_failures_total{reason="not_ip"} 0
toad_capture_decode_failures_total{reason="not_tcp"} 0
toad_capture_decode_failures_total{reason="truncated"} 0
toad_capture_decode_failures_total{reason="unsupported_link"} 0
# HELP toad_capture_filter_attached 1 for the kernel filter attached to the capture sockets (the weakest, if they differ), 0 for the others.
# TYPE toad_capture_filter_attached gauge
toad_capture_filter_attached{filter="direction"} 0
toad_capture_filter_attached{filter="none"} 0
toad_capture_filter_attached{filter="tcp"} 1
toad_capture_filter_attached{filter="toa"} 0
# HELP toad_capture_kernel_drops_total Packets the kernel dropped because a capture ring was full.
# TYPE toad_capture_kernel_drops_total counter
toad_capture_kernel_drops_total 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "toad_capture_decode_failures_total", "toad_capture_filter_attached", "toad_capture_kernel_drops_total"); err != nil {
		t.Error(err)
	}

	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
	// A pedantic registry checks the series against Describe.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c, metrics.NewLatency(), metrics.BuildInfo("v1.2.3", "abc", "go1.26"))
	if _, err := reg.Gather(); err != nil {
		t.Errorf("pedantic gather: %v", err)
	}
}

// families gathers c's series by name.
func families(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// TestLatency times lookups through a real server on a unix socket.
func TestLatency(t *testing.T) {
	tab := newTable(t)
	segment(tab, "198.51.100.10:40001", "192.0.2.20:8080", decode.SYN, "203.0.113.7:51234")
	lat := metrics.NewLatency()
	srv, err := api.New(tab, api.Config{Options: []grpc.ServerOption{grpc.ChainUnaryInterceptor(lat.UnaryServerInterceptor())}})
	if err != nil {
		t.Fatal(err)
	}
	sock := apitest.ServeUnix(t, srv)
	srv.SetServing(true)
	c := apitest.Client(t, sock, client.WithWait(0))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	local := netip.MustParseAddrPort("192.0.2.20:8080")
	for range 3 {
		if _, err := c.Lookup(ctx, netip.MustParseAddrPort("198.51.100.10:40001"), local); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Lookup(ctx, netip.MustParseAddrPort("198.51.100.10:40009"), local); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("lookup of an unknown connection: %v, want ErrNotFound", err)
	}
	if _, err := c.Service().GetStats(ctx, nil); err != nil {
		t.Fatal(err)
	}

	got := map[string]uint64{}
	for _, m := range families(t, lat)["toad_lookup_duration_seconds"].GetMetric() {
		var method, code string
		for _, lp := range m.GetLabel() {
			switch lp.GetName() {
			case "method":
				method = lp.GetValue()
			case "code":
				code = lp.GetValue()
			}
		}
		got[method+" "+code] = m.GetHistogram().GetSampleCount()
	}
	want := map[string]uint64{"Lookup OK": 3, "Lookup NotFound": 1, "BatchLookup OK": 0, "BatchLookup NotFound": 0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("toad_lookup_duration_seconds{%s} count = %d, want %d", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("series %v, want exactly %v (GetStats is not timed)", got, want)
	}
}

func TestBuildInfo(t *testing.T) {
	want := `
# HELP toad_build_info Always 1; the labels say which toad build runs.
# TYPE toad_build_info gauge
toad_build_info{goversion="go1.26.0",revision="abc123",version="v1.2.3"} 1
`
	if err := testutil.CollectAndCompare(metrics.BuildInfo("v1.2.3", "abc123", "go1.26.0"), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestJournalCollector(t *testing.T) {
	var st journal.Stats
	on := false
	c := metrics.NewJournalCollector(func() (journal.Stats, bool) { return st, on })
	if got := families(t, c); len(got) != 0 {
		t.Errorf("without a journal: %d series, want none", len(got))
	}
	on = true
	st = journal.Stats{Records: 40, Groups: 4, Bytes: 2048, Compactions: 2, Overflows: 1, Lost: 9, Dropped: 3, WriteErrors: 5, Failing: true, Size: 700}
	want := `
# HELP toad_journal_dropped_total Change records not written because the disk failed; the compaction that ends the failure writes what they changed.
# TYPE toad_journal_dropped_total counter
toad_journal_dropped_total 3
# HELP toad_journal_failing 1 while the state directory cannot be written (serving from memory; a crash loses what changed since the failure), 0 otherwise.
# TYPE toad_journal_failing gauge
toad_journal_failing 1
# HELP toad_journal_records_total Change records of the table written to the journal.
# TYPE toad_journal_records_total counter
toad_journal_records_total 40
# HELP toad_journal_size_bytes Bytes the state directory's current snapshot and journal hold.
# TYPE toad_journal_size_bytes gauge
toad_journal_size_bytes 700
# HELP toad_journal_write_errors_total Writes, syncs and compactions of the state directory that failed.
# TYPE toad_journal_write_errors_total counter
toad_journal_write_errors_total 5
# HELP toad_journal_written_bytes_total Bytes written to the state directory, journal segments and snapshots.
# TYPE toad_journal_written_bytes_total counter
toad_journal_written_bytes_total 2048
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "toad_journal_dropped_total", "toad_journal_failing",
		"toad_journal_records_total", "toad_journal_size_bytes", "toad_journal_write_errors_total", "toad_journal_written_bytes_total"); err != nil {
		t.Error(err)
	}
	if n := len(families(t, c)); n != 10 {
		t.Errorf("%d series, want 10", n)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
}
