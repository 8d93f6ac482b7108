package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/toad-project/toad/capture"
)

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
		{[]string{"--ring-size", "64KiB", "--block-size", "128KiB"}, nil, "--ring-size 65536: want no less than the block size, 131072"},
		{[]string{"--ring-size", "0"}, nil, "--ring-size 0"},
		{[]string{"--capacity", "2000000000"}, nil, "--capacity 2000000000: want at most 1073741824"},
		{[]string{"--snap-len", "100"}, nil, "--snap-len 100: want 128 to 65535"},
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
