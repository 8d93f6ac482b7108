package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/internal/craft/gen"
	"github.com/toad-project/toad/toa"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const samplePath = "../../testdata/sample.pcapng"

var trustedFlag = "198.51.100.0/24,2001:db8:100::/64"

// connJSON is one line of toad replay --json.
type connJSON struct {
	Peer       string  `json:"peer"`
	Local      string  `json:"local"`
	Client     *string `json:"client"`
	ClientIP   *string `json:"client_ip"`
	ClientPort *uint16 `json:"client_port"`
	Dialect    *string `json:"dialect"`
	Opened     string  `json:"opened"`
	FirstTOA   *string `json:"first_toa"`
	Closed     *string `json:"closed"`
	State      string  `json:"state"`
	Conflicts  int     `json:"conflicts"`
}

// replayJSON runs toad replay --json with args and returns its output,
// decoded, and its standard error.
func replayJSON(t *testing.T, args ...string) ([]connJSON, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := cli(context.Background(), append([]string{"replay", "--json"}, args...), &stdout, &stderr); code != 0 {
		t.Fatalf("toad replay --json %q: exit %d: %s", args, code, stderr.String())
	}
	var out []connJSON
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var c connJSON
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, c)
	}
	return out, stderr.String()
}

const jsonTime = "2006-01-02T15:04:05.000000000Z"

func ptr[T any](v T) *T { return &v }

// want is what toad replay --json should print for the generated
// connections, each with a 4-tuple of its own: every one whose TOA is
// believed (spoofed ones are not with trusted), those without a TOA too
// with all; keep, when set, selects among them.
func want(conns []gen.Conn, trusted, all bool, keep func(gen.Conn) bool) map[string]connJSON {
	m := map[string]connJSON{}
	for _, c := range conns {
		if trusted && c.Spoofed || !all && c.Client.IsZero() || keep != nil && !keep(c) {
			continue
		}
		j := connJSON{Peer: c.Peer.String(), Local: c.Local.String(), Opened: c.Opened.Format(jsonTime), State: "open"}
		if !c.Client.IsZero() {
			j.Client, j.ClientIP = ptr(c.Client.String()), ptr(c.Client.Addr.String())
			j.Dialect, j.FirstTOA = ptr(c.Client.Dialect.String()), ptr(c.FirstSeen.Format(jsonTime))
			if c.Client.HasPort {
				j.ClientPort = ptr(c.Client.Port)
			}
		}
		if c.Closed {
			j.State, j.Closed = "fin", ptr(c.ClosedAt.Format(jsonTime))
			if c.Reset {
				j.State = "rst"
			}
		}
		m[j.Peer+" "+j.Local] = j
	}
	return m
}

func byKey(t *testing.T, got []connJSON) map[string]connJSON {
	t.Helper()
	m := map[string]connJSON{}
	for _, c := range got {
		k := c.Peer + " " + c.Local
		if _, dup := m[k]; dup {
			t.Errorf("connection %s printed twice", k)
		}
		m[k] = c
	}
	return m
}

func writeCapture(t *testing.T, name string, f gen.Format, cfg gen.Config, gz bool) *gen.Truth {
	t.Helper()
	var buf bytes.Buffer
	truth, err := gen.Write(&buf, f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	if gz {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(data)
		zw.Close()
		data = z.Bytes()
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return truth
}

// TestReplayResolvesEveryConnection replays captures of every framing,
// VLAN stack, dialect and placement, with IPv4 options, IPv6 extension
// headers and junk frames, in pcap and pcapng: every connection with a TOA
// is printed with its client, dialect, state and first TOA time, and
// nothing else is.
func TestReplayResolvesEveryConnection(t *testing.T) {
	all, err := toa.ParseSet("all")
	if err != nil {
		t.Fatal(err)
	}
	vlans := []craft.Framing{
		{Link: decode.LinkEthernet}, {Link: decode.LinkEthernet, Tags: []uint16{0x8100}},
		{Link: decode.LinkEthernet, Tags: []uint16{0x88A8, 0x8100}}, {Link: decode.LinkEthernet, Tags: []uint16{0x9100, 0x88A8, 0x8100}},
	}
	var mixed []craft.Framing
	for _, l := range []decode.LinkType{decode.LinkLinuxSLL, decode.LinkLinuxSLL2, decode.LinkRaw, decode.LinkIPv4, decode.LinkIPv6} {
		mixed = append(mixed, craft.Framing{Link: l})
	}
	mixed = append(mixed, vlans...)
	for _, c := range []struct {
		name     string
		format   gen.Format
		framings []craft.Framing
		gz       bool
	}{
		{"sll.pcap", gen.PCAP, []craft.Framing{{Link: decode.LinkLinuxSLL}}, false},
		{"sll2.pcap", gen.PCAP, []craft.Framing{{Link: decode.LinkLinuxSLL2}}, false},
		{"raw.pcap", gen.PCAP, []craft.Framing{{Link: decode.LinkRaw}}, false},
		{"ipv4.pcap", gen.PCAP, []craft.Framing{{Link: decode.LinkIPv4}}, false},
		{"ipv6.pcap", gen.PCAP, []craft.Framing{{Link: decode.LinkIPv6}}, false},
		{"vlan.pcap", gen.PCAP, vlans, false},
		{"vlan.pcap.gz", gen.PCAP, vlans, true},
		{"mixed.pcapng", gen.PCAPNG, mixed, false},
		{"sll2.pcapng", gen.PCAPNG, []craft.Framing{{Link: decode.LinkLinuxSLL2}}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := gen.Config{
				Seed: uint64(len(c.name)), Conns: 160, Dialects: all.Dialects(), Framings: c.framings,
				IPv6: 0.4, Plain: 0.1, Spoofed: 0.05, DataSegments: 2, Junk: 0.3, Options: 0.3,
			}
			file := filepath.Join(t.TempDir(), c.name)
			truth := writeCapture(t, file, c.format, cfg, c.gz)
			for _, trusted := range []bool{false, true} {
				args := []string{"--dialects", "all", "--all", file}
				if trusted {
					args = append([]string{"--trusted-proxies", trustedFlag}, args...)
				}
				got, stderr := replayJSON(t, args...)
				if diff := cmp.Diff(want(truth.Conns, trusted, true, nil), byKey(t, got)); diff != "" {
					t.Errorf("trusted %v: connections (-want +got):\n%s", trusted, diff)
				}
				with, without := 0, 0
				for _, c := range truth.Conns {
					switch {
					case trusted && c.Spoofed:
					case c.Client.IsZero():
						without++
					default:
						with++
					}
				}
				for _, w := range []string{
					fmt.Sprintf("%d packets", truth.Packets),
					fmt.Sprintf("%d rejected", truth.Junk),
					fmt.Sprintf("connections: %d with a TOA, %d without", with, without),
				} {
					if !strings.Contains(stderr, w) {
						t.Errorf("trusted %v: summary %q, want %q", trusted, stderr, w)
					}
				}
			}
		})
	}
}

// TestReplayDefaultDialects: with the default set, the dialect that is off
// by default (253/8) resolves nothing.
func TestReplayDefaultDialects(t *testing.T) {
	cfg := gen.Config{Seed: 3, Conns: 40, Dialects: []toa.Dialect{toa.Kind253V4, toa.Kind200V4}}
	file := filepath.Join(t.TempDir(), "c.pcap")
	truth := writeCapture(t, file, gen.PCAP, cfg, false)
	got, _ := replayJSON(t, file)
	wantConns := want(truth.Conns, false, false, func(c gen.Conn) bool { return c.Client.Dialect != toa.Kind253V4 })
	if diff := cmp.Diff(wantConns, byKey(t, got)); diff != "" {
		t.Errorf("connections (-want +got):\n%s", diff)
	}
}

// TestReplayKeepsEveryConnection: a capture much longer than the linger
// prints every connection, those that closed long before the end too.
func TestReplayKeepsEveryConnection(t *testing.T) {
	cfg := gen.Config{Seed: 5, Conns: 60, Concurrency: 2, Gap: 50 * time.Millisecond, DataSegments: 1}
	file := filepath.Join(t.TempDir(), "slow.pcapng")
	truth := writeCapture(t, file, gen.PCAPNG, cfg, false)
	got, stderr := replayJSON(t, "--linger", "500ms", file)
	if diff := cmp.Diff(want(truth.Conns, false, false, nil), byKey(t, got)); diff != "" {
		t.Errorf("connections (-want +got):\n%s", diff)
	}
	if !strings.Contains(stderr, "none dropped") {
		t.Errorf("summary %q: want it to say none was dropped", stderr)
	}
}

// TestReplayGolden compares the output on the sample capture, table and
// JSON, with the golden files; -update rewrites them.
func TestReplayGolden(t *testing.T) {
	for _, c := range []struct {
		golden string
		args   []string
	}{
		{"sample.txt", []string{samplePath}},
		{"sample.jsonl", []string{"--json", samplePath}},
		{"sample-trusted.jsonl", []string{"--json", "--trusted-proxies", trustedFlag, samplePath}},
		{"sample-all.txt", []string{"--all", "--trusted-proxies", trustedFlag, samplePath}},
		{"sample-at.txt", []string{"--at", "2024-01-02T03:04:05.5Z", "--local", "192.0.2.20", samplePath}},
	} {
		var stdout, stderr bytes.Buffer
		if code := cli(context.Background(), append([]string{"replay"}, c.args...), &stdout, &stderr); code != 0 {
			t.Fatalf("%q: exit %d: %s", c.args, code, stderr.String())
		}
		got := stdout.String() + "--- stderr\n" + stderr.String()
		path := filepath.Join("testdata", c.golden)
		if *update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		wantOut, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(wantOut), got); diff != "" {
			t.Errorf("%q (-%s +got):\n%s", c.args, path, diff)
		}
	}
}

// TestReplaySample checks the sample against its ground truth, with and
// without the trusted ranges.
func TestReplaySample(t *testing.T) {
	var buf bytes.Buffer
	truth, err := gen.Write(&buf, gen.PCAPNG, gen.Sample())
	if err != nil {
		t.Fatal(err)
	}
	for _, trusted := range []bool{false, true} {
		args := []string{samplePath}
		if trusted {
			args = append([]string{"--trusted-proxies", trustedFlag}, args...)
		}
		got, _ := replayJSON(t, args...)
		if diff := cmp.Diff(want(truth.Conns, trusted, false, nil), byKey(t, got)); diff != "" {
			t.Errorf("trusted %v (-want +got):\n%s", trusted, diff)
		}
	}
}

// TestReplayCommandLine: bad command lines exit 2 and bad inputs 1, each
// with one line naming the problem.
func TestReplayCommandLine(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("hello, world\n"), 0o644)
	wifi := filepath.Join(dir, "wifi.pcap")
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], 105) // IEEE 802.11
	os.WriteFile(wifi, hdr, 0o644)
	cut := filepath.Join(dir, "cut.pcapng")
	sample, err := os.ReadFile(samplePath)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(cut, sample[:len(sample)/2], 0o644)
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{}, 2, "usage: toad COMMAND"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"replay"}, 2, "no capture file given"},
		{[]string{"replay", "--bogus", samplePath}, 2, "flag provided but not defined: -bogus"},
		{[]string{"replay", "--trusted-proxies", "198.51.100.0/33", samplePath}, 2, `"198.51.100.0/33" is not a CIDR range`},
		{[]string{"replay", "--dialects", "999/8", samplePath}, 2, "kind must be 0-255"},
		{[]string{"replay", "--linger", "-1s", samplePath}, 2, "--linger -1s"},
		{[]string{"replay", "--gap", "0s", samplePath}, 2, "--gap 0s"},
		{[]string{"replay", "--at", "14:02", samplePath}, 2, `"14:02": want an RFC 3339 time, such as 2024-05-01T14:02:00Z`},
		{[]string{"replay", "--at", "2024-05-01 14:02:00", samplePath}, 2, "want an RFC 3339 time"},
		{[]string{"replay", "--peer", "198.51.100.10:99999", samplePath}, 2, `"198.51.100.10:99999" is not an address or address:port (want e.g. 198.51.100.10, 198.51.100.10:40001, 2001:db8::1 or [2001:db8::1]:40001)`},
		{[]string{"replay", "--local", "server.example:80", samplePath}, 2, "invalid value \"server.example:80\" for flag -local"},
		{[]string{"replay", "--client", "2001:db8::1:40001x", samplePath}, 2, "is not an address or address:port"},
		{[]string{"replay", "--client", "[2001:db8::1", samplePath}, 2, "is not an address or address:port"},
		{[]string{"replay", "--peer", "fe80::1%eth0", samplePath}, 2, "addresses with a zone are not matched"},
		{[]string{"replay", filepath.Join(dir, "missing.pcap")}, 1, "missing.pcap: no such file or directory"},
		{[]string{"replay", text}, 1, "notes.txt: not a pcap or pcapng file: it starts with 0x68656c6c"},
		{[]string{"replay", wifi}, 1, "link type 105 is not supported"},
		{[]string{"replay", cut}, 1, "cut.pcapng: read packet"},
		{[]string{"replay", "-h"}, 0, ""},
		{[]string{"help"}, 0, ""},
	} {
		var stdout, stderr bytes.Buffer
		code := cli(context.Background(), c.args, &stdout, &stderr)
		if code != c.code {
			t.Errorf("%q: exit %d, want %d (stderr %q)", c.args, code, c.code, stderr.String())
		}
		if !strings.Contains(stderr.String(), c.msg) {
			t.Errorf("%q: stderr %q, want it to say %q", c.args, stderr.String(), c.msg)
		}
		if c.code == 1 && strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%q: stderr %q, want one line", c.args, stderr.String())
		}
	}
}

// TestReplayManyFiles: files are replayed in order into one table (the
// second starts seconds after the first, within the linger).
func TestReplayManyFiles(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.pcap"), filepath.Join(dir, "b.pcapng")
	ta := writeCapture(t, a, gen.PCAP, gen.Config{Seed: 1, Conns: 20}, false)
	tb := writeCapture(t, b, gen.PCAPNG, gen.Config{Seed: 2, Conns: 20, IPv6: 1, Start: time.Date(2024, 1, 2, 3, 4, 10, 0, time.UTC)}, false)
	var outs []string
	for _, order := range [][]string{{a, b}, {b, a}} {
		var stdout, stderr bytes.Buffer
		if code := cli(context.Background(), append([]string{"replay", "--json"}, order...), &stdout, &stderr); code != 0 {
			t.Fatalf("%q: exit %d: %s", order, code, stderr.String())
		}
		outs = append(outs, stdout.String())
		if !strings.HasPrefix(stderr.String(), "replayed 2 files") {
			t.Errorf("summary %q, want it to start with \"replayed 2 files\"", stderr.String())
		}
		if named := strings.Contains(stderr.String(), "read in capture order, not as named: "+a+" "+b); named != (order[0] == b) {
			t.Errorf("named %q: summary %q; want it to say the files were read in another order exactly when they were", order, stderr.String())
		}
	}
	if outs[0] != outs[1] {
		t.Errorf("the output depends on the order the files are named in:\n%s\n---\n%s", outs[0], outs[1])
	}
	got, _ := replayJSON(t, b, a)
	wantConns := want(append(ta.Conns, tb.Conns...), false, false, nil)
	if diff := cmp.Diff(wantConns, byKey(t, got)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestBinary builds toad and runs README's first command on the sample.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	bin := filepath.Join(t.TempDir(), "toad")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "replay", "--trusted-proxies", trustedFlag, samplePath)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("toad replay: %v\n%s", err, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "PEER ") || strings.Count(stdout.String(), "\n") < 30 {
		t.Errorf("stdout:\n%s\nwant a table of a few dozen connections", stdout.String())
	}
	if !strings.Contains(stderr.String(), "1 segment with a TOA from untrusted peers ignored") {
		t.Errorf("stderr %q: want the spoofed connection counted", stderr.String())
	}
	cmd = exec.Command(bin, "replay", "-")
	cmd.Stdin = strings.NewReader("not a capture")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("toad replay - on junk: %v, want exit 1", err)
	}
	if strings.Contains(string(out), "goroutine") || strings.Count(string(out), "\n") != 1 {
		t.Errorf("toad replay - on junk printed %q, want one line", out)
	}
}
