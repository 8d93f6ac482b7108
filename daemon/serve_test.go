package daemon

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/toad-project/toad/api/client"
	"github.com/toad-project/toad/internal/apitest"
	"github.com/toad-project/toad/internal/craft/gen"
	"github.com/toad-project/toad/internal/scrape"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
)

// logLines is an io.Writer for a slog text handler that hands each log
// line's key=value pairs to a channel.
func logLines() (io.Writer, <-chan map[string]string) {
	r, w := io.Pipe()
	ch := make(chan map[string]string, 64)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- parseTextLog(sc.Text())
		}
		close(ch)
	}()
	return w, ch
}

// parseTextLog parses a slog text line into its keys and values, quoted
// values unquoted.
func parseTextLog(line string) map[string]string {
	m := map[string]string{}
	for line != "" {
		line = strings.TrimLeft(line, " ")
		k, rest, ok := strings.Cut(line, "=")
		if !ok {
			break
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				break
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		m[k] = v
		line = rest
	}
	return m
}

// dialUnix returns a gRPC client connection to the unix socket sock,
// closed when the test ends.
func dialUnix(t *testing.T, sock string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// running is a daemon running in the test.
type running struct {
	api, health, metrics string // TCP addresses, "" when not served
	logs                 chan map[string]string
	stop                 func() error
}

// waitLog returns the next log line with message msg, skipping others.
func (d *running) waitLog(t *testing.T, msg string) map[string]string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m, ok := <-d.logs:
			if !ok {
				t.Fatalf("log ended before %q", msg)
			}
			if m["msg"] == msg {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q in the log", msg)
		}
	}
}

// trusted are the proxies of gen.Sample's captures.
var trusted = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:100::/64")}

// samplePath is the sample capture that ships with toad.
const samplePath = "../testdata/sample.pcapng"

// serving starts Run with DefaultConfig changed by set, and returns once
// it serves. Health and metrics listen on ephemeral loopback ports unless
// set says otherwise; there is no preload socket unless set says where.
// It stops when the test ends.
func serving(t *testing.T, set func(*Config)) *running {
	t.Helper()
	return servingIn(t, func(fn func() error) error { return fn() }, set)
}

// servingIn is serving with Run run by in, which may move it into a
// network namespace.
func servingIn(t *testing.T, in func(func() error) error, set func(*Config)) *running {
	t.Helper()
	cfg := DefaultConfig()
	cfg.HealthListen, cfg.MetricsListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.PreloadSocket = "" // /run/toad/preload.sock is the system's toad's
	set(&cfg)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config %+v: %v", cfg, err)
	}
	w, logs := logLines()
	cfg.Logger = slog.New(slog.NewTextHandler(w, nil))
	ready := make(chan Addrs, 1)
	cfg.Ready = func(a Addrs) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- in(func() error { return Run(ctx, cfg) })
	}()
	d := &running{logs: make(chan map[string]string, 1024)}
	go func() { // keep the log flowing
		for m := range logs {
			select {
			case d.logs <- m:
			default:
			}
		}
		close(d.logs)
	}()
	select {
	case a := <-ready:
		str := func(a net.Addr) string {
			if a == nil {
				return ""
			}
			return a.String()
		}
		d.api, d.health, d.metrics = str(a.API), str(a.Health), str(a.Metrics)
	case err := <-done:
		t.Fatalf("the daemon ended before serving: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not start serving")
	}
	var once sync.Once
	var stopErr error
	d.stop = func() error {
		once.Do(func() {
			cancel()
			stopErr = <-done
			w.(*io.PipeWriter).Close()
		})
		return stopErr
	}
	t.Cleanup(func() { d.stop() })
	return d
}

// writeSample writes the sample capture into dir, as pcapng, and returns
// its path and what it holds.
func writeSample(t *testing.T, dir string) (string, *gen.Truth) {
	t.Helper()
	name := filepath.Join(dir, "sample.pcapng")
	truth, err := gen.WriteFile(name, gen.PCAPNG, gen.Sample())
	if err != nil {
		t.Fatal(err)
	}
	return name, truth
}

func TestServePcap(t *testing.T) {
	dir := t.TempDir()
	capFile, truth := writeSample(t, dir)
	sock := filepath.Join(dir, "run", "toad.sock")
	d := serving(t, func(c *Config) {
		c.Pcaps, c.Socket, c.Listen, c.Trusted, c.Drain = []string{capFile}, sock, "127.0.0.1:0", trusted, 0
	})

	resolved, unknown := 0, 0
	for _, target := range []string{sock, d.api} {
		c := apitest.Client(t, target, client.WithWait(0))
		for _, conn := range truth.Conns {
			got, err := c.Lookup(context.Background(), conn.Peer, conn.Local)
			if !conn.Resolvable() {
				if !errors.Is(err, client.ErrNotFound) {
					t.Errorf("%s: %v > %v (no trusted TOA): %+v, %v; want ErrNotFound", target, conn.Peer, conn.Local, got, err)
				}
				unknown++
				continue
			}
			if err != nil {
				t.Errorf("%s: %v > %v: %v, want %v", target, conn.Peer, conn.Local, err, conn.Client)
				continue
			}
			wantState := toadv1.ConnectionState_CONNECTION_STATE_OPEN
			if conn.Closed {
				wantState = toadv1.ConnectionState_CONNECTION_STATE_CLOSING
			}
			if got.Client.Addr() != conn.Client.Addr || got.Client.Port() != conn.Client.Port || got.HasPort != conn.Client.HasPort ||
				got.Dialect != conn.Client.Dialect || got.State != wantState || !got.FirstSeen.Equal(conn.FirstSeen) {
				t.Errorf("%s: %v > %v: got %+v, want client %v, %v, first seen %v", target, conn.Peer, conn.Local, got, conn.Client, wantState, conn.FirstSeen)
			}
			resolved++
		}
	}
	if resolved == 0 || unknown == 0 {
		t.Errorf("%d resolved, %d unknown: the sample should have both", resolved, unknown)
	}

	cc := dialUnix(t, sock)
	h, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "toad.v1.LookupService"})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health: %v, %v; want SERVING once the capture is loaded", h.GetStatus(), err)
	}
	st, err := toadv1.NewLookupServiceClient(cc).GetStats(context.Background(), &toadv1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.GetCounters()["capture_packets"]; got != uint64(truth.Packets) {
		t.Errorf("capture_packets = %d, want %d", got, truth.Packets)
	}
	if st.GetTable().GetAllTrusted() {
		t.Error("all_trusted with --trusted-proxies given")
	}

	// The health-only listener: health, and nothing else.
	hc, err := grpc.NewClient("passthrough:///"+d.health, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	h, err = healthpb.NewHealthClient(hc).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health on --health-listen: %v, %v; want SERVING", h.GetStatus(), err)
	}
	_, err = toadv1.NewLookupServiceClient(hc).GetStats(context.Background(), &toadv1.GetStatsRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("GetStats on --health-listen: %v, want Unimplemented", err)
	}

	// HTTP: alive, ready, and the counters under their names.
	for _, p := range []struct {
		path string
		code int
		body string
	}{{"/healthz", 200, "ok\n"}, {"/readyz", 200, "ready\n"}} {
		if code, body := scrape.Get(t, http.Get, d.metrics, p.path); code != p.code || body != p.body {
			t.Errorf("GET %s = %d %q, want %d %q", p.path, code, body, p.code, p.body)
		}
	}
	code, body := scrape.Get(t, http.Get, d.metrics, "/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics = %d:\n%s", code, body)
	}
	m := scrape.Metrics(t, body)
	for series, want := range map[string]float64{
		"toad_getname_toa_ok_total":                                           float64(resolved),
		"toad_getname_toa_empty_total":                                        float64(unknown),
		"toad_capture_packets_total":                                          float64(truth.Packets),
		"toad_all_peers_trusted":                                              0,
		`toad_lookup_duration_seconds_count{code="OK",method="Lookup"}`:       float64(resolved),
		`toad_lookup_duration_seconds_count{code="NotFound",method="Lookup"}`: float64(unknown),
		"toad_syn_recv_sock_toa_total":                                        float64(st.GetTable().GetConnsWithToa()),
		"toad_untrusted_toa_total":                                            float64(st.GetTable().GetUntrusted()),
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (exported: %v), want %v", series, got, ok, want)
		}
	}
	if m["toad_untrusted_toa_total"] == 0 {
		t.Error("toad_untrusted_toa_total = 0: the sample's forged TOA should count")
	}
	for _, series := range []string{"toad_build_info", "go_goroutines", "process_start_time_seconds", `toad_entries{family="ipv6"}`} {
		if !hasSeries(m, series) {
			t.Errorf("no %s in /metrics", series)
		}
	}
	if hasSeries(m, "toad_capture_kernel_drops_total") {
		t.Error("toad_capture_kernel_drops_total exported for a replay, which has no kernel")
	}

	if err := d.stop(); err != nil {
		t.Errorf("toad serve after an interrupt: %v, want nil", err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket after shutdown: %v, want it removed", err)
	}
	_, err = toadv1.NewLookupServiceClient(cc).GetStats(context.Background(), &toadv1.GetStatsRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("GetStats after shutdown: %v, want Unavailable", err)
	}
	for _, addr := range []string{d.health, d.metrics} {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Errorf("%s still accepts after shutdown", addr)
		}
	}
}

// hasSeries reports whether m has a series of metric name (any labels).
func hasSeries(m map[string]float64, name string) bool {
	for k := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			return true
		}
	}
	return false
}

// TestServeDrain: on shutdown, health and /readyz turn away callers during
// the drain while lookups are still answered.
func TestServeDrain(t *testing.T) {
	dir := t.TempDir()
	capFile, truth := writeSample(t, dir)
	sock := filepath.Join(dir, "toad.sock")
	// The checks below take milliseconds; the drain leaves them seconds.
	d := serving(t, func(c *Config) {
		c.Pcaps, c.Socket, c.Drain, c.ShutdownTimeout = []string{capFile}, sock, 3*time.Second, 10*time.Second
	})
	hc, err := grpc.NewClient("passthrough:///"+d.health, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	w, err := healthpb.NewHealthClient(hc).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before shutdown: %v, %v; want SERVING", r.GetStatus(), err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- d.stop() }()
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health once shutting down: %v, %v; want NOT_SERVING", r.GetStatus(), err)
	}
	if code, body := scrape.Get(t, http.Get, d.metrics, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the drain = %d %q, want 503", code, body)
	}
	if code, _ := scrape.Get(t, http.Get, d.metrics, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz during the drain = %d, want 200: the process is alive", code)
	}
	c := apitest.Client(t, sock, client.WithWait(0))
	for _, conn := range truth.Conns {
		if !conn.Resolvable() {
			continue
		}
		if _, err := c.Lookup(context.Background(), conn.Peer, conn.Local); err != nil {
			t.Errorf("lookup during the drain: %v, want an answer", err)
		}
		break
	}
	if err := <-stopped; err != nil {
		t.Errorf("toad serve after the drain: %v, want nil", err)
	}
}

// TestServeNoTCPByDefault: out of the box, lookups are served on the unix
// socket alone, whose permissions say who may ask: no TCP listener lets
// every local user in.
func TestServeNoTCPByDefault(t *testing.T) {
	if cfg := DefaultConfig(); cfg.Listen != "" {
		t.Errorf("default --listen %q, want none", cfg.Listen)
	}
	sock := filepath.Join(t.TempDir(), "toad.sock")
	d := serving(t, func(c *Config) { c.Pcaps, c.Socket, c.Drain = []string{samplePath}, sock, 0 })
	if d.api != "" {
		t.Errorf("toad serve with no --listen serves lookups on TCP %s, want the socket alone", d.api)
	}
}

// TestServeMaxWaitZero: --max-wait 0 means that no lookup waits, whatever
// wait it asks for.
func TestServeMaxWaitZero(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "toad.sock")
	serving(t, func(c *Config) { c.Pcaps, c.Socket, c.MaxWait, c.Drain = []string{samplePath}, sock, 0, 0 })
	cc := dialUnix(t, sock)
	svc := toadv1.NewLookupServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := svc.Lookup(ctx, &toadv1.LookupRequest{Peer: "198.51.100.99:1", Local: "192.0.2.20:8080", Wait: durationpb.New(3 * time.Second)})
	if status.Code(err) != codes.NotFound || strings.Contains(status.Convert(err).Message(), "waited") {
		t.Errorf("Lookup asking to wait 3s with --max-wait 0: %v; want NotFound, without waiting", err)
	}
	st, err := svc.GetStats(ctx, &toadv1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.GetTable(); got.GetLookupsNotFound() != 1 || got.GetLookupsTimedOut() != 0 {
		t.Errorf("GetStats: %d lookups not found at once, %d timed out; want 1 and 0", got.GetLookupsNotFound(), got.GetLookupsTimedOut())
	}
}
