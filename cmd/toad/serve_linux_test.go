package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/toad-project/toad/api"
	"github.com/toad-project/toad/api/client"
	"github.com/toad-project/toad/daemon"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/apitest"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/internal/netnstest"
	"github.com/toad-project/toad/internal/privtest"
	"github.com/toad-project/toad/internal/scrape"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
	"github.com/toad-project/toad/toa"
)

// toadBinary builds the toad command once per test run, stamped with
// version v0.0.0-test, and returns its path.
func toadBinary(t *testing.T) string {
	t.Helper()
	path, err := buildToad()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// binDir holds the binary buildToad built, removed by TestMain.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var buildToad = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "toad-bin-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "toad")
	build := exec.Command("go", "build", "-o", bin, "-ldflags", "-X main.version=v0.0.0-test", ".")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// child is a toad process started by a test, with its JSON log.
type child struct {
	cmd    *exec.Cmd
	logs   chan map[string]any // each log line, decoded
	eof    chan struct{}       // closed when stderr ends
	mu     sync.Mutex
	stderr bytes.Buffer     // everything it wrote, for failure messages
	lines  []map[string]any // every log line, decoded
}

// startChild starts bin serve inside ns with the given flags and
// environment, and returns once it logs that it serves.
func startChild(t *testing.T, ns *netnstest.NS, bin string, env []string, args ...string) *child {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, bin, "serve"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	return startProcess(t, cmd)
}

// startProcess starts cmd, a toad serve logging JSON, and returns once it
// logs that it serves.
func startProcess(t *testing.T, cmd *exec.Cmd) *child {
	t.Helper()
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, logs: make(chan map[string]any, 1024), eof: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.eof)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				m = map[string]any{"msg": sc.Text()} // the exit line is not JSON
			}
			c.mu.Lock()
			c.stderr.Write(sc.Bytes())
			c.stderr.WriteByte('\n')
			c.lines = append(c.lines, m)
			c.mu.Unlock()
			select {
			case c.logs <- m:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			c.cmd.Process.Kill()
			<-c.eof
			c.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("toad's log:\n%s", c.log())
		}
	})
	c.waitLog(t, "serving")
	return c
}

func (c *child) log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.String()
}

// waitLog returns the next log line with message msg, skipping others.
func (c *child) waitLog(t *testing.T, msg string) map[string]any {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case m := <-c.logs:
			if m["msg"] == msg {
				return m
			}
		case <-c.eof:
			t.Fatalf("toad's log ended before %q", msg)
		case <-deadline:
			t.Fatalf("no %q in toad's log", msg)
		}
	}
}

// stop sends SIGTERM and returns the exit status.
func (c *child) stop(t *testing.T) int {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-c.eof
	err := c.cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return c.cmd.ProcessState.ExitCode()
}

// dialIn dials address from inside ns.
func dialIn(ns *netnstest.NS) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (c net.Conn, err error) {
		err = ns.Do(func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, "tcp", addr)
			return err
		})
		return c, err
	}
}

// httpIn is an HTTP client whose connections start inside ns.
func httpIn(ns *netnstest.NS) *http.Client {
	dial := dialIn(ns)
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dial(ctx, addr)
		}},
	}
}

// grpcIn connects to addr from inside ns.
func grpcIn(t *testing.T, ns *netnstest.NS, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dialIn(ns)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestServeBinary runs the real toad binary, configured as in a pod
// (environment variables, JSON log, default listeners), in a network
// namespace capturing on a veth: crafted handshakes from the peer
// namespace are resolved over the unix socket, /metrics counts them under
// their names, gRPC health answers on the pod address, SIGTERM turns
// health away, compacts the state directory and exits 0, and the
// restarted binary resolves the connection learnt before the restart.
func TestServeBinary(t *testing.T) {
	privtest.Require(t, "ip")
	dir := t.TempDir()
	bin := toadBinary(t)
	if out, err := exec.Command(bin, "version").Output(); err != nil || !strings.HasPrefix(string(out), "toad v0.0.0-test\n") {
		t.Errorf("toad version: %q, %v; want the stamped version first", out, err)
	}

	pod, peer := netnstest.New(t, "servebin"), netnstest.New(t, "servebin")
	netnstest.Veth(t, pod, "veth-a", peer, "veth-b")
	// craft's Ethernet frames go to 02:00:00:00:00:01.
	pod.IP(t, "link set veth-a address 02:00:00:00:00:01", "addr add 192.0.2.20/24 dev veth-a")
	peer.IP(t, "addr add 192.0.2.21/24 dev veth-b")

	sock := filepath.Join(dir, "run", "toad.sock")
	state := filepath.Join(dir, "var", "state")
	env := []string{
		"TOAD_INTERFACE=veth-a",
		"TOAD_SOCKET=" + sock,
		"TOAD_STATE_DIR=" + state,
		"TOAD_TRUSTED_PROXIES=198.51.100.0/24",
		"TOAD_LOG_FORMAT=json",
	}
	toad := startChild(t, pod, bin, env, "--drain", "3s")

	local := netip.MustParseAddrPort("192.0.2.20:8080")
	real := netip.MustParseAddrPort("203.0.113.7:51234")
	trusted := netip.MustParseAddrPort("198.51.100.10:40001")
	forged := netip.MustParseAddrPort("192.0.2.99:40002")   // not a trusted proxy
	plain := netip.MustParseAddrPort("198.51.100.10:40003") // a trusted proxy, no TOA
	eth := craft.Framing{Link: decode.LinkEthernet}
	// The connection looked up goes last: once it resolves, the capture,
	// which keeps the order of one interface's packets, has seen the rest.
	mustSend(t, peer, "veth-b",
		craft.Frame(eth, &craft.Segment{Src: forged, Dst: local, Flags: decode.SYN, Seq: 500,
			Options: craft.Opts(craft.MSS(1460), craft.TOA(toa.Kind200V4, netip.MustParseAddrPort("203.0.113.66:1")))}),
		craft.Frame(eth, &craft.Segment{Src: plain, Dst: local, Flags: decode.SYN, Seq: 700, Options: craft.MSS(1460)}),
		craft.Frame(eth, &craft.Segment{Src: plain, Dst: local, Flags: decode.RST, Seq: 701}),
		craft.Frame(eth, &craft.Segment{Src: trusted, Dst: local, Flags: decode.SYN, Seq: 1000,
			Options: craft.Opts(craft.MSS(1460), craft.TOA(toa.Kind200V4, real))}),
		craft.Frame(eth, &craft.Segment{Src: trusted, Dst: local, Flags: decode.ACK, Seq: 1001, Ack: 2001,
			Options: craft.TOA(toa.Kind200V4, real)}),
	)
	c := apitest.Client(t, sock, client.WithWait(20*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got, err := c.Lookup(ctx, trusted, local)
	if err != nil || got.Client != real || got.Dialect != toa.Kind200V4 {
		t.Fatalf("Lookup(%v, %v) = %+v, %v; want client %v, dialect 200/8", trusted, local, got, err, real)
	}
	c0 := apitest.Client(t, sock, client.WithWait(0))
	if got, err := c0.Lookup(ctx, forged, local); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Lookup of the forged TOA's connection = %+v, %v; want ErrNotFound", got, err)
	}

	web := httpIn(pod)
	code, body := scrape.Get(t, web.Get, "127.0.0.1:9470", "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d:\n%s", code, body)
	}
	m := scrape.Metrics(t, body)
	for series, want := range map[string]float64{
		"toad_syn_recv_sock_toa_total":                                        1,
		"toad_syn_recv_sock_no_toa_total":                                     1,
		"toad_getname_toa_ok_total":                                           1,
		"toad_getname_toa_empty_total":                                        1,
		"toad_untrusted_toa_total":                                            1,
		"toad_conflicts_total":                                                0,
		"toad_all_peers_trusted":                                              0,
		`toad_entries{family="ipv4"}`:                                         1,
		`toad_capture_filter_attached{filter="toa"}`:                          1,
		"toad_capture_kernel_drops_total":                                     0,
		"toad_capture_readers":                                                1,
		`toad_lookup_duration_seconds_count{code="OK",method="Lookup"}`:       1,
		`toad_lookup_duration_seconds_count{code="NotFound",method="Lookup"}`: 1,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (exported: %v), want %v", series, got, ok, want)
		}
	}
	// The revision depends on how the tree was checked out.
	info := `toad_build_info{goversion="` + runtime.Version() + `",revision="`
	if !slices.ContainsFunc(slices.Collect(maps.Keys(m)), func(k string) bool {
		return strings.HasPrefix(k, info) && strings.HasSuffix(k, `",version="v0.0.0-test"}`) && m[k] == 1
	}) {
		t.Errorf("no %s...,version=\"v0.0.0-test\"} 1 in /metrics", info)
	}
	if n := m["toad_capture_packets_total"]; n < 5 || m["toad_capture_records_total"] < 5 {
		t.Errorf("toad_capture_packets_total %v, toad_capture_records_total %v: want the 5 segments sent", n, m["toad_capture_records_total"])
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, _ := scrape.Get(t, web.Get, "127.0.0.1:9470", p); code != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", p, code)
		}
	}

	// The kubelet's view, from outside the pod: health on the pod address,
	// nothing else there.
	hc := grpcIn(t, peer, "192.0.2.20:50052")
	h, err := healthpb.NewHealthClient(hc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health on 192.0.2.20:50052: %v, %v; want SERVING", h.GetStatus(), err)
	}
	if _, err := toadv1.NewLookupServiceClient(hc).GetStats(ctx, &toadv1.GetStatsRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("GetStats on the health port: %v, want Unimplemented", err)
	}
	for _, addr := range []string{"192.0.2.20:50051", "192.0.2.20:9470"} {
		if conn, err := dialIn(peer)(ctx, addr); err == nil {
			conn.Close()
			t.Errorf("%s is reachable from outside the pod; want lookups and metrics on loopback only", addr)
		}
	}

	// SIGTERM: health turns away at once, the process drains, compacts
	// the state directory and exits 0.
	w, err := healthpb.NewHealthClient(hc).Watch(ctx, &healthpb.HealthCheckRequest{Service: "toad.v1.LookupService"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health Watch: %v, %v; want SERVING", r.GetStatus(), err)
	}
	exited := make(chan int, 1)
	go func() { exited <- toad.stop(t) }()
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health after SIGTERM: %v, %v; want NOT_SERVING", r.GetStatus(), err)
	}
	if code, _ := scrape.Get(t, web.Get, "127.0.0.1:9470", "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the drain = %d, want 503", code)
	}
	if code := <-exited; code != 0 {
		t.Fatalf("toad exited %d after SIGTERM, want 0", code)
	}
	toad.find(t, "state compacted")
	snaps, err := filepath.Glob(filepath.Join(state, "snapshot-*"))
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots in %s: %v, %v; want one", state, snaps, err)
	}
	b, err := os.ReadFile(snaps[0])
	if err != nil || !bytes.HasPrefix(b, []byte("TOADCTBL")) {
		t.Fatalf("snapshot %s: %q, %v; want a TOADCTBL snapshot", snaps[0], b[:min(len(b), 8)], err)
	}

	// The restart resolves the connection learnt before it.
	toad = startChild(t, pod, bin, env, "--drain", "0s")
	c2 := apitest.Client(t, sock, client.WithWait(0))
	got, err = c2.Lookup(ctx, trusted, local)
	if err != nil || got.Client != real || got.Dialect != toa.Kind200V4 {
		t.Errorf("after the restart, Lookup(%v, %v) = %+v, %v; want client %v", trusted, local, got, err, real)
	}
	if code := toad.stop(t); code != 0 {
		t.Errorf("toad exited %d after the second SIGTERM, want 0", code)
	}
	loaded := toad.find(t, "state recovered")
	if loaded["connections"] != 1.0 {
		t.Errorf("state recovered %v connections, want 1", loaded["connections"])
	}
}

// find returns the first log line with message msg so far.
func (c *child) find(t *testing.T, msg string) map[string]any {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.lines {
		if m["msg"] == msg {
			return m
		}
	}
	t.Fatalf("no %q in toad's log", msg)
	return nil
}

// mustSend writes Ethernet frames out of iface from inside ns.
func mustSend(t *testing.T, ns *netnstest.NS, iface string, frames ...[]byte) {
	t.Helper()
	if err := ns.SendFrames(iface, frames...); err != nil {
		t.Fatal(err)
	}
}

// TestServeWithoutCapNetRaw: a live capture without CAP_NET_RAW fails at
// start with one line saying what to grant, like a bad setting: nothing
// is logged as listening first, and nothing is left behind.
func TestServeWithoutCapNetRaw(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "toad.sock")
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		// The capture's sockets are opened on this thread, which loses the
		// capability for good and is never unlocked; without root there
		// is no capability to lose.
		runtime.LockOSThread()
		if os.Geteuid() == 0 {
			hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
			var data [2]unix.CapUserData
			if err := unix.Capget(&hdr, &data[0]); err != nil {
				done <- result{code: -1, stderr: err.Error()}
				return
			}
			data[0].Effective &^= 1 << unix.CAP_NET_RAW
			data[0].Permitted &^= 1 << unix.CAP_NET_RAW
			if err := unix.Capset(&hdr, &data[0]); err != nil {
				done <- result{code: -1, stderr: err.Error()}
				return
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // should the capture open, toad stops at once
		var stdout, stderr bytes.Buffer
		code := command(ctx, []string{"serve", "--socket", sock, "--listen", "", "--health-listen", "127.0.0.1:0",
			"--metrics-listen", "127.0.0.1:0"}, nil, &stdout, &stderr)
		done <- result{code, stdout.String(), stderr.String()}
	}()
	r := <-done
	if r.code == -1 {
		t.Fatalf("drop CAP_NET_RAW: %s", r.stderr)
	}
	if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "toad serve: ") || !strings.Contains(r.stderr, "CAP_NET_RAW") {
		t.Errorf("serve without CAP_NET_RAW: exit %d, stderr %q; want exit 1 and one line naming CAP_NET_RAW", r.code, r.stderr)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

// TestServeDescriptorLimit: a real toad serve under a descriptor limit of
// 256 keeps answering lookups and scrapes while connections that send the
// HTTP/2 preface and SETTINGS, then nothing, pile up on its health port,
// twice as many as it has descriptors: the health listener holds its
// share, the rest wait in the kernel's queue.
func TestServeDescriptorLimit(t *testing.T) {
	bin := toadBinary(t)
	const limit = 256
	sock := filepath.Join(t.TempDir(), "toad.sock")
	cmd := exec.Command("sh", "-c", `ulimit -n 256 && exec "$0" "$@"`, bin, "serve", "--pcap", samplePath, "--socket", sock, "--listen", "",
		"--health-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--log-format", "json", "--drain", "0s")
	toad := startProcess(t, cmd)
	health, metricsAddr := toad.find(t, "listening for health checks"), toad.find(t, "listening for metrics")
	budget, err := daemon.NewConnBudget(limit, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := health["max_conns"]; got != float64(budget.Health) {
		t.Fatalf("health listener holds at most %v connections, want %d (of %d descriptors)", got, budget.Health, limit)
	}

	// The flood: every connection sends the preface and SETTINGS; those
	// the health listener takes get the server's SETTINGS back.
	served := make(chan struct{}, 2*limit)
	for range 2 * limit {
		c, err := net.Dial("tcp", health["addr"].(string))
		if err != nil {
			t.Fatalf("connection to the health port: %v", err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
			t.Fatal(err)
		}
		if err := http2.NewFramer(c, nil).WriteSettings(); err != nil {
			t.Fatal(err)
		}
		go func() {
			c.SetReadDeadline(time.Now().Add(60 * time.Second))
			if f, err := http2.NewFramer(nil, c).ReadFrame(); err == nil {
				if _, ok := f.(*http2.SettingsFrame); ok {
					served <- struct{}{}
				}
			}
		}()
	}
	deadline := time.After(60 * time.Second)
	for range budget.Health {
		select {
		case <-served:
		case <-deadline:
			t.Fatalf("the health listener did not take its %d connections", budget.Health)
		}
	}

	// Lookups and scrapes still answer.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := apitest.Client(t, sock, client.WithWait(0))
	st, err := c.Service().GetStats(ctx, &toadv1.GetStatsRequest{})
	if err != nil || !st.GetServing() {
		t.Fatalf("GetStats under the flood: %v, %v; want an answer", st, err)
	}
	peer, local := netip.MustParseAddrPort("198.51.100.99:1"), netip.MustParseAddrPort("192.0.2.20:8080")
	if _, err := c.Lookup(ctx, peer, local); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Lookup under the flood: %v, want ErrNotFound", err)
	}
	web := &http.Client{Timeout: 20 * time.Second}
	if code, _ := scrape.Get(t, web.Get, metricsAddr["addr"].(string), "/metrics"); code != http.StatusOK {
		t.Errorf("GET /metrics under the flood = %d, want 200", code)
	}
	if code := toad.stop(t); code != 0 {
		t.Errorf("toad exited %d after SIGTERM, want 0", code)
	}
}

// TestServeWatchersNotReading: against a real toad serve capturing live,
// watchers that never read, up to the limit with one that does, lose
// their connections once events pile up, so that another watcher gets in;
// and SIGTERM with watchers that do not read stops at once, not at
// --shutdown-timeout.
func TestServeWatchersNotReading(t *testing.T) {
	privtest.Require(t, "ip")
	bin := toadBinary(t)
	pod, peer := netnstest.New(t, "watchers"), netnstest.New(t, "watchers")
	netnstest.Veth(t, pod, "veth-a", peer, "veth-b")
	pod.IP(t, "link set veth-a address 02:00:00:00:00:01", "addr add 192.0.2.20/24 dev veth-a")
	sock := filepath.Join(t.TempDir(), "toad.sock")
	toad := startChild(t, pod, bin, nil, "--interface", "veth-a", "--socket", sock, "--listen", "",
		"--health-listen", "", "--metrics-listen", "", "--trusted-proxies", "198.51.100.0/24",
		"--log-format", "json", "--drain", "0s", "--shutdown-timeout", "60s")

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	// A watcher that never reads, on a connection of its own whose window
	// stays at 64 KiB: the server's sends block once it is full.
	stalled := func() {
		cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		w, err := toadv1.NewLookupServiceClient(cc).Watch(ctx, &toadv1.WatchRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Header(); err != nil {
			t.Fatalf("Watch: %v", err)
		}
	}
	c := apitest.Client(t, sock)
	// A watcher that reads paces the flood: each round is smaller than a
	// watcher's buffer, and the next one goes once it has seen this one.
	reader, err := c.Service().Watch(ctx, &toadv1.WatchRequest{})
	if err == nil {
		_, err = reader.Header()
	}
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(20000)
	flood := func(rounds int) {
		eth := craft.Framing{Link: decode.LinkEthernet}
		for range rounds {
			frames := make([][]byte, 500)
			for i := range frames {
				port++
				frames[i] = craft.Frame(eth, &craft.Segment{Src: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.10"), port),
					Dst: netip.MustParseAddrPort("192.0.2.20:8080"), Flags: decode.SYN, Seq: 1,
					Options: craft.TOA(toa.Kind200V4, netip.MustParseAddrPort("203.0.113.7:51234"))})
			}
			mustSend(t, peer, "veth-b", frames...)
			last := fmt.Sprintf("198.51.100.10:%d", port)
			for {
				ev, err := reader.Recv()
				if err != nil {
					t.Fatalf("the watcher that reads: %v", err)
				}
				if ev.GetConnection().GetPeer() == last {
					break
				}
			}
		}
	}

	for range api.DefaultMaxWatchers - 1 {
		stalled()
	}
	w, err := c.Service().Watch(ctx, &toadv1.WatchRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a watcher beside %d: %v, want ResourceExhausted", api.DefaultMaxWatchers, err)
	}
	flood(6) // 3000 events: more than a stalled watcher's window and send quota hold
	for range api.DefaultMaxWatchers - 1 {
		toad.waitLog(t, "watcher stopped reading: its connection was closed")
	}
	w, err = c.Service().Watch(ctx, &toadv1.WatchRequest{})
	if err == nil {
		_, err = w.Header()
	}
	if err != nil {
		t.Fatalf("a watcher once the stalled ones were dropped: %v, want its stream", err)
	}

	// SIGTERM with watchers that do not read, their sends blocked.
	for range 8 {
		stalled()
	}
	flood(6)
	if code := toad.stop(t); code != 0 {
		t.Errorf("toad exited %d after SIGTERM, want 0", code)
	}
	for _, m := range toad.lines {
		if m["msg"] == "graceful stop cut short" {
			t.Errorf("SIGTERM waited for the watchers that do not read: %v", m)
		}
	}
}

// TestServeSocketGroupUnknown: a --socket-group that names no group fails
// at start with one line naming it.
func TestServeSocketGroupUnknown(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := command(context.Background(), []string{"serve", "--pcap", samplePath, "--socket", filepath.Join(t.TempDir(), "toad.sock"),
		"--socket-group", "toad-no-such-group", "--health-listen", "", "--metrics-listen", ""}, nil, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "--socket-group toad-no-such-group: ") || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("--socket-group of no group: exit %d, stderr %q; want exit 1 and one line naming it", code, stderr.String())
	}
}
