package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/toad-project/toad/api/client"
	"github.com/toad-project/toad/internal/craft/gen"
	toadv1 "github.com/toad-project/toad/proto/toad/v1"
)

// logLines is an io.Writer for a slog handler that hands each log line's
// key=value pairs to a channel.
func logLines() (io.Writer, <-chan map[string]string) {
	r, w := io.Pipe()
	ch := make(chan map[string]string, 64)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			m := map[string]string{}
			for _, f := range strings.Fields(sc.Text()) {
				if k, v, ok := strings.Cut(f, "="); ok {
					m[k] = v
				}
			}
			ch <- m
		}
		close(ch)
	}()
	return w, ch
}

// serving starts runServe and returns once it serves, with the TCP
// address it listens on; it stops when the test ends.
func serving(t *testing.T, args ...string) (tcp string, stop func() error) {
	t.Helper()
	return servingIn(t, func(fn func() error) error { return fn() }, args...)
}

// servingIn is serving with runServe run by in, which may move it into a
// network namespace.
func servingIn(t *testing.T, in func(func() error) error, args ...string) (tcp string, stop func() error) {
	t.Helper()
	cfg, err := parseServe(args, io.Discard)
	if err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	w, logs := logLines()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- in(func() error { return runServe(ctx, cfg, slog.New(slog.NewTextHandler(w, nil))) })
	}()
	deadline := time.After(30 * time.Second)
	for ready := false; !ready; {
		select {
		case m := <-logs:
			switch m["msg"] {
			case "listening":
				if m["network"] == "tcp" {
					tcp = m["addr"]
				}
			case "serving":
				ready = true
			}
		case err := <-done:
			t.Fatalf("toad serve ended before serving: %v", err)
		case <-deadline:
			t.Fatal("toad serve did not start serving")
		}
	}
	go func() { // keep the log flowing
		for range logs {
		}
	}()
	var stopped bool
	var stopErr error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			stopErr = <-done
		}
		return stopErr
	}
	t.Cleanup(func() { stop() })
	return tcp, stop
}

func TestServePcap(t *testing.T) {
	dir := t.TempDir()
	capFile := filepath.Join(dir, "sample.pcapng")
	truth, err := gen.WriteFile(capFile, gen.PCAPNG, gen.Sample())
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "run", "toad.sock")
	tcp, stop := serving(t, "--pcap", capFile, "--socket", sock, "--listen", "127.0.0.1:0",
		"--trusted-proxies", trustedFlag, "--drain", "0s")

	for _, target := range []string{sock, tcp} {
		c, err := client.New(target, client.WithWait(0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		resolved, unknown := 0, 0
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
		if resolved == 0 || unknown == 0 {
			t.Errorf("%s: %d resolved, %d unknown: the sample should have both", target, resolved, unknown)
		}
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

	if err := stop(); err != nil {
		t.Errorf("toad serve after an interrupt: %v, want nil", err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket after shutdown: %v, want it removed", err)
	}
	_, err = toadv1.NewLookupServiceClient(cc).GetStats(context.Background(), &toadv1.GetStatsRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("GetStats after shutdown: %v, want Unavailable", err)
	}
}

func TestServeFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		err  string
	}{
		{[]string{"--socket", "", "--listen", ""}, "nothing to serve on"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"--linger", "0s"}, "--linger"},
		{[]string{"--pcap", "x.pcap", "--interface", "eth0"}, "not both"},
		{[]string{"--trusted-proxies", "nonsense"}, "not a CIDR range"},
		{[]string{"--dialects", "300/8"}, "kind must be 0-255"},
	} {
		_, err := parseServe(tt.args, io.Discard)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("parseServe(%q) = %v, want a usage error containing %q", tt.args, err, tt.err)
		}
	}
}

// TestServeRefusesRemote: a non-loopback TCP address needs --allow-remote.
func TestServeRefusesRemote(t *testing.T) {
	dir := t.TempDir()
	capFile := filepath.Join(dir, "sample.pcapng")
	if _, err := gen.WriteFile(capFile, gen.PCAPNG, gen.Sample()); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseServe([]string{"--pcap", capFile, "--socket", filepath.Join(dir, "toad.sock"), "--listen", "0.0.0.0:0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	err = runServe(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") || !strings.Contains(err.Error(), "--allow-remote") {
		t.Errorf("serve on 0.0.0.0 without --allow-remote: %v, want a refusal naming --allow-remote", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "toad.sock")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket after the refusal: %v, want none left behind", err)
	}
}
