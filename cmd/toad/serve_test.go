package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
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
	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/internal/craft/gen"
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

// daemon is a runServe running in the test.
type daemon struct {
	api, health, metrics string // TCP addresses, "" when not served
	logs                 chan map[string]string
	stop                 func() error
}

// waitLog returns the next log line with message msg, skipping others.
func (d *daemon) waitLog(t *testing.T, msg string) map[string]string {
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

// serving starts runServe and returns once it serves. Health and metrics
// listen on ephemeral loopback ports unless args say otherwise. It stops
// when the test ends.
func serving(t *testing.T, args ...string) *daemon {
	t.Helper()
	return servingIn(t, func(fn func() error) error { return fn() }, args...)
}

// servingIn is serving with runServe run by in, which may move it into a
// network namespace.
func servingIn(t *testing.T, in func(func() error) error, args ...string) *daemon {
	t.Helper()
	args = append([]string{"--health-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"}, args...)
	cfg, err := parseServe(args, nil, io.Discard)
	if err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	w, logs := logLines()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- in(func() error { return runServe(ctx, cfg, slog.New(slog.NewTextHandler(w, nil))) })
	}()
	d := &daemon{logs: make(chan map[string]string, 1024)}
	deadline := time.After(30 * time.Second)
	for ready := false; !ready; {
		select {
		case m := <-logs:
			switch m["msg"] {
			case listeningMsg[roleAPI]:
				if m["network"] == "tcp" {
					d.api = m["addr"]
				}
			case listeningMsg[roleHealth]:
				d.health = m["addr"]
			case listeningMsg[roleMetrics]:
				d.metrics = m["addr"]
			case "serving":
				ready = true
			}
			select {
			case d.logs <- m:
			default:
			}
		case err := <-done:
			t.Fatalf("toad serve ended before serving: %v", err)
		case <-deadline:
			t.Fatal("toad serve did not start serving")
		}
	}
	go func() { // keep the log flowing
		for m := range logs {
			select {
			case d.logs <- m:
			default:
			}
		}
		close(d.logs)
	}()
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

// scrape fetches path from the metrics listener with get, and returns the
// status code and body.
func scrape(t *testing.T, get func(url string) (*http.Response, error), addr, path string) (int, string) {
	t.Helper()
	resp, err := get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// parseMetrics returns the samples of a text exposition by series:
// `name{labels}` as written.
func parseMetrics(t *testing.T, body string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for line := range strings.Lines(body) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestServePcap(t *testing.T) {
	dir := t.TempDir()
	capFile := filepath.Join(dir, "sample.pcapng")
	truth, err := gen.WriteFile(capFile, gen.PCAPNG, gen.Sample())
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "run", "toad.sock")
	d := serving(t, "--pcap", capFile, "--socket", sock, "--listen", "127.0.0.1:0",
		"--trusted-proxies", trustedFlag, "--drain", "0s")

	resolved, unknown := 0, 0
	for _, target := range []string{sock, d.api} {
		c, err := client.New(target, client.WithWait(0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, conn := range truth.Conns {
			got, err := c.Lookup(context.Background(), conn.Peer, conn.Local)
			if conn.Client.IsZero() || conn.Spoofed {
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

	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
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
		if code, body := scrape(t, http.Get, d.metrics, p.path); code != p.code || body != p.body {
			t.Errorf("GET %s = %d %q, want %d %q", p.path, code, body, p.code, p.body)
		}
	}
	code, body := scrape(t, http.Get, d.metrics, "/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics = %d:\n%s", code, body)
	}
	m := parseMetrics(t, body)
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
	capFile := filepath.Join(dir, "sample.pcapng")
	truth, err := gen.WriteFile(capFile, gen.PCAPNG, gen.Sample())
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "toad.sock")
	// The checks below take milliseconds; the drain leaves them seconds.
	d := serving(t, "--pcap", capFile, "--socket", sock, "--listen", "", "--drain", "3s", "--shutdown-timeout", "10s")
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
	if code, body := scrape(t, http.Get, d.metrics, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the drain = %d %q, want 503", code, body)
	}
	if code, _ := scrape(t, http.Get, d.metrics, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz during the drain = %d, want 200: the process is alive", code)
	}
	c, err := client.New(sock, client.WithWait(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, conn := range truth.Conns {
		if conn.Client.IsZero() || conn.Spoofed {
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

// TestServeSnapshot: a restart with --snapshot resolves the connections
// learnt before it; a snapshot that is not intact is moved aside and toad
// starts anyway.
func TestServeSnapshot(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first.pcapng"), filepath.Join(dir, "second.pcapng")
	truth, err := gen.WriteFile(first, gen.PCAPNG, gen.Sample())
	if err != nil {
		t.Fatal(err)
	}
	truth2, err := gen.WriteFile(second, gen.PCAPNG, gen.Config{Seed: 99, Conns: 1, Start: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(dir, "state", "table.snap") // the directory is made
	sock := filepath.Join(dir, "toad.sock")
	args := func(capFile string) []string {
		return []string{"--pcap", capFile, "--socket", sock, "--listen", "", "--snapshot", snap, "--drain", "0s"}
	}

	d := serving(t, args(first)...)
	if m := d.waitLog(t, "no snapshot: starting with an empty table"); m["file"] != snap {
		t.Errorf("no-snapshot log names %q, want %q", m["file"], snap)
	}
	if err := d.stop(); err != nil {
		t.Fatalf("first run: %v", err)
	}
	m := d.waitLog(t, "snapshot written")
	b, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("TOADCTBL")) || m["bytes"] != strconv.Itoa(len(b)) {
		t.Errorf("snapshot of %d bytes starting %q, log says %s bytes; want a TOADCTBL snapshot", len(b), b[:min(8, len(b))], m["bytes"])
	}
	if fi, err := os.Stat(snap); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot mode %v, %v; want 0600: it holds client addresses", fi.Mode().Perm(), err)
	}
	// A write cut short leaves a temporary file behind; the next start
	// removes it.
	stale := filepath.Join(dir, "state", ".table.snap.tmp-123")
	if err := os.WriteFile(stale, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The second run replays another capture: what it resolves of the
	// first came from the snapshot.
	d = serving(t, args(second)...)
	if m := d.waitLog(t, "snapshot loaded"); m["connections"] == "0" {
		t.Errorf("snapshot loaded %s connections, want the first run's", m["connections"])
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temporary file after a start: %v, want it removed", err)
	}
	c, err := client.New(sock, client.WithWait(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resolved := 0
	for _, conn := range append(truth.Conns, truth2.Conns...) {
		if conn.Client.IsZero() || conn.Spoofed {
			continue
		}
		got, err := c.Lookup(context.Background(), conn.Peer, conn.Local)
		if err != nil || got.Client.Addr() != conn.Client.Addr || got.Client.Port() != conn.Client.Port {
			t.Errorf("after the restart: %v > %v: %+v, %v; want client %v", conn.Peer, conn.Local, got, err, conn.Client)
			continue
		}
		resolved++
	}
	if resolved < 2 {
		t.Errorf("%d resolved after the restart, want the sample's and the second capture's", resolved)
	}
	if err := d.stop(); err != nil {
		t.Fatalf("second run: %v", err)
	}

	// A corrupt snapshot: moved aside, toad serves, and writes a new one.
	if err := os.WriteFile(snap, []byte("TOADCTBL garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	d = serving(t, args(second)...)
	m = d.waitLog(t, "snapshot not intact, moved aside: starting with an empty table")
	if m["moved_to"] != snap+".corrupt" || !strings.Contains(m["err"], "bad snapshot") {
		t.Errorf("corrupt snapshot log %v, want it moved to %s.corrupt with the reason", m, snap)
	}
	if b, err := os.ReadFile(snap + ".corrupt"); err != nil || string(b) != "TOADCTBL garbage" {
		t.Errorf("moved-aside snapshot: %q, %v; want the corrupt bytes kept", b, err)
	}
	if err := d.stop(); err != nil {
		t.Fatalf("third run: %v", err)
	}
	if b, err := os.ReadFile(snap); err != nil || !bytes.HasPrefix(b, []byte("TOADCTBL")) || len(b) < 20 {
		t.Errorf("snapshot after the third run: %q, %v; want a fresh one", b, err)
	}
}

// TestServeFlags: each bad setting, by flag or by environment variable,
// is one line naming it, and exit status 2.
func TestServeFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  []string
		err  string
	}{
		{[]string{"--socket", "", "--listen", ""}, nil, "nothing to serve lookups on"},
		{[]string{"extra"}, nil, "unexpected arguments"},
		{[]string{"--linger", "0s"}, nil, "--linger"},
		{[]string{"--pcap", "x.pcap", "--interface", "eth0"}, nil, "not both"},
		{[]string{"--trusted-proxies", "nonsense"}, nil, `flag -trusted-proxies: "nonsense" is not a CIDR range`},
		{nil, []string{"TOAD_TRUSTED_PROXIES=10.0.0.0/33"}, `TOAD_TRUSTED_PROXIES="10.0.0.0/33": "10.0.0.0/33" is not a CIDR range`},
		{[]string{"--dialects", "300/8"}, nil, "kind must be 0-255"},
		{nil, []string{"TOAD_DIALECTS=200/8,2/4"}, "TOAD_DIALECTS="},
		{[]string{"--log-format", "xml"}, nil, `--log-format "xml": want text or json`},
		{nil, []string{"TOAD_LOG_LEVEL=loud"}, "TOAD_LOG_LEVEL="},
		{nil, []string{"TOAD_ALLOW_REMOTE=maybe"}, `TOAD_ALLOW_REMOTE="maybe": want true or false`},
		{[]string{"--listen", "0.0.0.0:50051"}, nil, "--listen 0.0.0.0:50051 is not a loopback address"},
		{[]string{"--listen", ":50051"}, nil, "add --allow-remote"},
		{[]string{"--metrics-listen", "9470"}, nil, `--metrics-listen "9470": want host:port`},
		{[]string{"--health-listen", "localhost"}, nil, `--health-listen "localhost": want host:port`},
		{[]string{"--drain", "10s", "--shutdown-timeout", "5s"}, nil, "--shutdown-timeout 5s leaves no time"},
		{[]string{"--capacity", "0"}, nil, "--capacity 0"},
		{[]string{"--readers", "65"}, nil, "--readers 65"},
		{[]string{"--ring-size", "1Q"}, nil, `"1Q" is not a size`},
		{[]string{"--ring-size", "64KiB", "--block-size", "128KiB"}, nil, "--ring-size 65536 is smaller than --block-size 131072"},
		{[]string{"--block-size", "5000"}, nil, "--block-size 5000"},
		{[]string{"--filter", "bpf"}, nil, "want toa, tcp, direction or none"},
		{[]string{"--snapshot", "/var/lib/toad/"}, nil, "want a file"},
		{[]string{"--bogus"}, nil, "flag provided but not defined: -bogus"},
	} {
		var stdout, stderr bytes.Buffer
		code := command(context.Background(), append([]string{"serve"}, tt.args...), tt.env, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tt.err) || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("serve %q with %q: exit %d, stderr %q; want exit 2 and one line containing %q", tt.args, tt.env, code, stderr.String(), tt.err)
		}
	}
}

// TestServeAddressErrors: a listen address that is not an IP address (or
// localhost) and a port is a bad setting like any other: exit status 2 and
// one line naming it, before anything listens.
func TestServeAddressErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // should toad start, it stops at once
	for _, tt := range []struct {
		args []string
		err  string
	}{
		{[]string{"--listen", "127.1:50051"}, `--listen "127.1:50051": "127.1" is not an IP address`},
		{[]string{"--listen", "0:50051"}, `--listen "0:50051": "0" is not an IP address`},
		{[]string{"--listen", "0:50051", "--allow-remote"}, `--listen "0:50051": "0" is not an IP address`},
		{[]string{"--health-listen", "0:50052"}, `--health-listen "0:50052": "0" is not an IP address`},
		{[]string{"--metrics-listen", "toad.example:9470"}, `--metrics-listen "toad.example:9470": "toad.example" is not an IP address`},
		{[]string{"--metrics-listen", "127.0.0.1:http"}, `--metrics-listen "127.0.0.1:http": port "http" is not a number`},
		{[]string{"--health-listen", ":70000"}, `--health-listen ":70000": port "70000" is not a number from 0 to 65535`},
	} {
		args := append([]string{"serve", "--pcap", samplePath, "--socket", filepath.Join(t.TempDir(), "toad.sock"),
			"--listen", "", "--health-listen", "", "--metrics-listen", ""}, tt.args...)
		var stdout, stderr bytes.Buffer
		code := command(ctx, args, nil, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tt.err) || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("serve %q: exit %d, stderr %q; want exit 2 and one line containing %q", tt.args, code, stderr.String(), tt.err)
		}
	}
}

// TestServeNoTCPByDefault: out of the box, lookups are served on the unix
// socket alone, whose permissions say who may ask: no TCP listener lets
// every local user in.
func TestServeNoTCPByDefault(t *testing.T) {
	cfg, err := parseServe(nil, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "" {
		t.Errorf("default --listen %q, want none", cfg.Listen)
	}
	sock := filepath.Join(t.TempDir(), "toad.sock")
	d := serving(t, "--pcap", samplePath, "--socket", sock, "--drain", "0s")
	if d.api != "" {
		t.Errorf("toad serve with no --listen serves lookups on TCP %s, want the socket alone", d.api)
	}
}

// TestServeMaxWaitZero: --max-wait 0 means that no lookup waits, whatever
// wait it asks for.
func TestServeMaxWaitZero(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "toad.sock")
	serving(t, "--pcap", samplePath, "--socket", sock, "--listen", "", "--max-wait", "0", "--drain", "0s")
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	svc := toadv1.NewLookupServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = svc.Lookup(ctx, &toadv1.LookupRequest{Peer: "198.51.100.99:1", Local: "192.0.2.20:8080", Wait: durationpb.New(3 * time.Second)})
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

// TestServeSocketPathLimit: a socket path longer than the kernel takes is
// refused as a bad setting, before anything is made, with the limit named.
func TestServeSocketPathLimit(t *testing.T) {
	sock := filepath.Join(t.TempDir(), strings.Repeat("s", 108)+".sock")
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // should toad start, it stops at once
	var stdout, stderr bytes.Buffer
	code := command(ctx, []string{"serve", "--pcap", samplePath, "--socket", sock,
		"--listen", "", "--health-listen", "", "--metrics-listen", ""}, nil, &stdout, &stderr)
	want := fmt.Sprintf("--socket %s: socket path of %d bytes: the kernel takes at most 107", sock, len(sock))
	if code != 2 || !strings.Contains(stderr.String(), want) || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("serve --socket (%d bytes): exit %d, stderr %q; want exit 2 and one line containing %q", len(sock), code, stderr.String(), want)
	}
}

// TestServeStartErrors: settings the system cannot honour fail at start,
// before anything serves, with one line naming the setting and exit
// status 1.
func TestServeStartErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	quiet := []string{"--health-listen", "", "--metrics-listen", "", "--listen", "", "--socket", filepath.Join(dir, "toad.sock")}
	for _, tt := range []struct {
		args    []string
		err     string
		oneLine bool // nothing logged before: the error is all there is
	}{
		{[]string{"--interface", "toadnosuch0"}, "--interface toadnosuch0: no such network interface", true},
		{[]string{"--pcap", samplePath, "--snapshot", filepath.Join(file, "table.snap")}, "--snapshot " + filepath.Join(file, "table.snap") + ": mkdir " + file + ": not a directory", true},
		{[]string{"--pcap", samplePath, "--snapshot", dir}, "is a directory", true},
		{[]string{"--pcap", samplePath, "--socket", filepath.Join(file, "toad.sock")}, "--socket " + filepath.Join(file, "toad.sock") + ":", true},
		{[]string{"--pcap", samplePath, "--metrics-listen", busy.Addr().String()}, "--metrics-listen " + busy.Addr().String() + ": listen tcp", true},
		{[]string{"--pcap", samplePath, "--health-listen", busy.Addr().String()}, "--health-listen " + busy.Addr().String() + ": listen tcp", true},
		{[]string{"--pcap", filepath.Join(dir, "missing.pcap")}, "--pcap " + filepath.Join(dir, "missing.pcap") + ": no such file", true},
	} {
		var stdout, stderr bytes.Buffer
		code := command(context.Background(), append(append([]string{"serve"}, quiet...), tt.args...), nil, &stdout, &stderr)
		// Once toad has started, the log goes to stderr too; the last line
		// is the error.
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		last := lines[len(lines)-1]
		if code != 1 || !strings.HasPrefix(last, "toad serve: ") || !strings.Contains(last, tt.err) {
			t.Errorf("serve %q: exit %d, last line %q; want exit 1 and a line containing %q", tt.args, code, last, tt.err)
		}
		if tt.oneLine && len(lines) != 1 {
			t.Errorf("serve %q: stderr %q, want the error alone", tt.args, stderr.String())
		}
		if _, err := os.Lstat(filepath.Join(dir, "toad.sock")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("serve %q: socket left behind: %v", tt.args, err)
		}
	}
}

// TestServeEnv: the environment sets what the command line does not, and
// the command line wins.
func TestServeEnv(t *testing.T) {
	env := []string{
		"TOAD_SOCKET=/tmp/env.sock",
		"TOAD_LISTEN=",
		"TOAD_ALLOW_REMOTE=true",
		"TOAD_TRUSTED_PROXIES=198.51.100.0/24, 2001:db8::/32",
		"TOAD_LINGER=2m",
		"TOAD_SNAPSHOT=/var/lib/toad/table.snap",
		"TOAD_LOG_FORMAT=json",
		"TOAD_LOG_LEVEL=debug",
		"TOAD_PCAP=a.pcap,b.pcapng",
		"TOAD_RING_SIZE=8MiB",
		"TOAD_HEALTH_LISTEN=:50052",
		"TOAD_TRUSTED_PROXY=192.0.2.0/24", // a typo
		"TOAD_SERVICE_HOST=192.0.2.1",     // the kubelet's, for a Service named toad
		"TOAD_PORT_50052_TCP=tcp://192.0.2.1:50052",
		"OTHER=1",
	}
	cfg, err := parseServe([]string{"--linger", "30s", "--log-format", "text", "--metrics-listen", ""}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"socket", cfg.Socket, "/tmp/env.sock"},
		{"listen", cfg.Listen, ""},
		{"allow-remote", cfg.AllowRemote, true},
		{"trusted-proxies", fmt.Sprint(cfg.Trusted), "[198.51.100.0/24 2001:db8::/32]"},
		{"linger (flag over env)", cfg.Linger, 30 * time.Second},
		{"snapshot", cfg.Snapshot, "/var/lib/toad/table.snap"},
		{"log-format (flag over env)", cfg.LogFormat, "text"},
		{"log-level", cfg.LogLevel, slog.LevelDebug},
		{"pcap", fmt.Sprint(cfg.Pcaps), "[a.pcap b.pcapng]"},
		{"ring-size", cfg.RingSize, 8 << 20},
		{"health-listen", cfg.HealthListen, ":50052"},
		{"metrics-listen (flag)", cfg.MetricsListen, ""},
		{"unknown", fmt.Sprint(cfg.UnknownEnv), "[TOAD_TRUSTED_PROXY]"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	// Defaults, with nothing set.
	cfg, err = parseServe(nil, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Socket != "/run/toad/toad.sock" || cfg.Listen != "" || cfg.HealthListen != ":50052" ||
		cfg.MetricsListen != "127.0.0.1:9470" || cfg.Snapshot != "" || cfg.LogFormat != "text" || len(cfg.Trusted) != 0 {
		t.Errorf("defaults %+v", cfg)
	}
}

// TestServeHelp: -h lists every flag with two dashes and its environment
// variable.
func TestServeHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := command(context.Background(), []string{"serve", "-h"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("serve -h: exit %d: %s", code, stderr.String())
	}
	help := stdout.String()
	for _, name := range []string{"interface", "socket", "listen", "allow-remote", "health-listen", "metrics-listen",
		"trusted-proxies", "dialects", "linger", "max-wait", "snapshot", "log-format", "log-level", "pcap",
		"drain", "shutdown-timeout", "readers", "ring-size", "block-size", "block-timeout", "snap-len", "filter",
		"capacity", "idle-timeout"} {
		if !strings.Contains(help, "\n  --"+name+" ") || !strings.Contains(help, "("+envName(name)+")") {
			t.Errorf("help does not list --%s with %s", name, envName(name))
		}
	}
	for _, want := range []string{"wins\nover the environment", `(default "/run/toad/toad.sock")`, "(default 1m0s)"} {
		if !strings.Contains(help, want) {
			t.Errorf("help does not say %q:\n%s", want, help)
		}
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := command(context.Background(), []string{"version"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("version: exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(stdout.String(), "\n")
	if len(lines) < 4 || lines[0] != "toad dev" || !strings.HasPrefix(lines[1], "go go1.") || !strings.HasPrefix(lines[2], "revision ") {
		t.Errorf("version printed %q, want toad dev, the Go release and the revision", stdout.String())
	}
	if code := command(context.Background(), []string{"version", "extra"}, nil, &stdout, &stderr); code != 2 {
		t.Errorf("version extra: exit %d, want 2", code)
	}
}

// TestManifestSettings: the TOAD_* settings of the Kubernetes manifests
// parse, and each names a setting.
func TestManifestSettings(t *testing.T) {
	files, err := filepath.Glob("../../deploy/kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	re := regexp.MustCompile(`(?m)^\s*- name: (TOAD_[A-Z_]+)\s*\n\s*value: (.*)$`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var env []string
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			v := strings.TrimSpace(m[2])
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			}
			env = append(env, m[1]+"="+v)
		}
		if len(env) == 0 {
			continue
		}
		cfg, err := parseServe(nil, env, io.Discard)
		if err != nil {
			t.Errorf("%s: %q: %v", f, env, err)
			continue
		}
		if len(cfg.UnknownEnv) > 0 || len(cfg.FromEnv) != len(env) {
			t.Errorf("%s: settings %q, unknown %q; want every one of %q taken", f, cfg.FromEnv, cfg.UnknownEnv, env)
		}
	}
}

// TestJSONLog: durations and enums read in JSON as they do in text.
func TestJSONLog(t *testing.T) {
	var buf bytes.Buffer
	newLogger(&buf, "json", slog.LevelInfo).Info("x", "drain", 1500*time.Millisecond, "filter", capture.FilterTCP,
		"err", errors.New("boom"), "addr", netip.MustParseAddrPort("192.0.2.1:80"), "n", 3)
	want := `"drain":"1.5s","filter":"tcp","err":"boom","addr":"192.0.2.1:80","n":3}`
	if !strings.HasSuffix(strings.TrimSpace(buf.String()), want) {
		t.Errorf("JSON log %s, want it to end %s", buf.String(), want)
	}
}
