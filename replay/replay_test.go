package replay_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/internal/craft/gen"
	"github.com/toad-project/toad/replay"
	"github.com/toad-project/toad/toa"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// testdata is the golden files' directory, absolute: the tests that name
// files change directory to have short names in their outputs.
var testdata, _ = filepath.Abs("testdata")

// hours is a capture of three hours and a half through two proxies that
// reuse six ports each, so that most 4-tuples carry several connections
// one after the other; half the connections end with a FIN, a fifth with a
// RST, and the rest never close: the next connection on their 4-tuple
// ends them, or the capture does.
var hours = gen.Config{
	Seed: 15, Conns: 160, Concurrency: 5, Proxies: 2, Ports: 6, DataSegments: 1,
	IPv6: 0.3, Plain: 0.08, Spoofed: 0.03, Junk: 0.05, Ends: gen.Ends{FIN: 0.5, RST: 0.2},
	Gap: 8 * time.Second, Framings: []craft.Framing{{Link: decode.LinkEthernet}},
}

var trusted = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:100::/64")}

const rotateEvery = 12 * time.Minute

// writeHours writes the capture in dir as tcpdump -C names its files
// (cap.pcap, cap.pcap1, ... cap.pcap10: a shell glob lists them out of
// capture order), a new one every 12 minutes, and returns their names in
// capture order and the ground truth.
func writeHours(t *testing.T, dir string) ([]string, *gen.Truth) {
	t.Helper()
	start := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	const files = 13
	names := make([]string, files)
	for i := range names {
		names[i] = filepath.Join(dir, "cap.pcap")
		if i > 0 {
			names[i] += fmt.Sprint(i)
		}
	}
	truth, err := gen.WriteSplit(names, gen.PCAP, hours, func(ts time.Time, _ int) int {
		return min(int(ts.Sub(start)/rotateEvery), files-1)
	})
	if err != nil {
		t.Fatal(err)
	}
	return names, truth
}

// hoursHere writes the capture in a directory of its own, which becomes
// the working directory, and returns the files' names there.
func hoursHere(t *testing.T) ([]string, *gen.Truth) {
	t.Helper()
	dir := t.TempDir()
	names, truth := writeHours(t, dir)
	t.Chdir(dir)
	for i := range names {
		names[i] = filepath.Base(names[i])
	}
	return names, truth
}

// life is a connection's lifetime as toad replay prints it.
type life struct {
	Peer, Local           netip.AddrPort
	Client                toa.Client
	Opened, First, Closed time.Time
	State                 string
	spoofed               bool // for the ground truth
}

func (l life) String() string {
	s := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	client := "-"
	if !l.Client.IsZero() {
		client = l.Client.String() + " " + l.Client.Dialect.String()
	}
	return fmt.Sprintf("%v > %v client %s opened %s first TOA %s %s %s", l.Peer, l.Local, client, s(l.Opened), s(l.First), l.State, s(l.Closed))
}

// expected works out from the ground truth what toad replay prints for
// every connection: each ends with its FIN or RST, or else with the SYN
// of the next connection on its 4-tuple, or is open at the end.
func expected(truth *gen.Truth) []life {
	byTuple := map[[2]netip.AddrPort][]gen.Conn{}
	for _, c := range truth.Conns {
		k := [2]netip.AddrPort{c.Peer, c.Local}
		byTuple[k] = append(byTuple[k], c)
	}
	var out []life
	for _, cs := range byTuple {
		slices.SortFunc(cs, func(a, b gen.Conn) int { return a.Opened.Compare(b.Opened) })
		for i, c := range cs {
			l := life{Peer: c.Peer, Local: c.Local, Client: c.Client, Opened: c.Opened, State: "open", spoofed: c.Spoofed}
			if !c.Client.IsZero() {
				l.First = c.FirstSeen
			}
			switch {
			case c.Reset:
				l.State, l.Closed = "rst", c.ClosedAt
			case c.Closed:
				l.State, l.Closed = "fin", c.ClosedAt
			case i+1 < len(cs):
				l.State, l.Closed = "reused", cs[i+1].Opened
			}
			out = append(out, l)
		}
	}
	return out
}

// parseJSON reads toad replay's JSON Lines.
func parseJSON(t *testing.T, b []byte) []life {
	t.Helper()
	var out []life
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var j struct {
			Peer, Local     string
			Client, Dialect *string
			ClientIP        *string `json:"client_ip"`
			ClientPort      *uint16 `json:"client_port"`
			Opened          string
			FirstTOA        *string `json:"first_toa"`
			Closed          *string
			State           string
		}
		if err := json.Unmarshal(sc.Bytes(), &j); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		l := life{Peer: netip.MustParseAddrPort(j.Peer), Local: netip.MustParseAddrPort(j.Local), State: j.State}
		l.Opened = mustTime(t, j.Opened)
		if j.Closed != nil {
			l.Closed = mustTime(t, *j.Closed)
		}
		if j.Client != nil {
			d, err := toa.ParseDialect(*j.Dialect)
			if err != nil {
				t.Fatal(err)
			}
			l.Client = toa.Client{Dialect: d, Addr: netip.MustParseAddr(*j.ClientIP)}
			if j.ClientPort != nil {
				l.Client.Port, l.Client.HasPort = *j.ClientPort, true
			}
			if l.Client.String() != *j.Client {
				t.Errorf("line %q: client %q, but client_ip and client_port say %v", sc.Text(), *j.Client, l.Client)
			}
			l.First = mustTime(t, *j.FirstTOA)
		}
		out = append(out, l)
	}
	return out
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func strs(ls []life) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.String()
	}
	slices.Sort(out)
	return out
}

func run(t *testing.T, cfg replay.Config) (stdout, stderr string) {
	t.Helper()
	var out, summary bytes.Buffer
	cfg.Out = &out
	if cfg.Gap == 0 {
		cfg.Gap = time.Minute // a packet every 8s on average: seconds without one are no gap
	}
	s, err := replay.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run %q: %v", cfg.Files, err)
	}
	s.WriteTo(&summary)
	return out.String(), summary.String()
}

// golden compares got with testdata/name, which -update rewrites.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join(testdata, name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./replay -update writes it)", err)
	}
	if string(want) != got {
		diff := cmpLines(slices.Sorted(slices.Values(strings.Split(string(want), "\n"))), slices.Sorted(slices.Values(strings.Split(got, "\n"))))
		if diff == "" {
			diff = "(the same lines in another order)"
		}
		t.Errorf("output differs from %s (go test ./replay -update rewrites it):\n%s", path, diff)
	}
}

// TestHours replays the rotated three-hour capture and checks every
// connection against the ground truth: each once, with its client, when
// it opened and how and when it ended, whether the proxies reused its
// 4-tuple or not; the output is the golden file's, byte for byte, however
// the files are named.
func TestHours(t *testing.T) {
	names, truth := hoursHere(t)
	want := expected(truth)
	reused := 0
	for _, l := range want {
		if l.State == "reused" {
			reused++
		}
	}
	if reused < 10 {
		t.Fatalf("the capture has %d connections ended by port reuse, want more to test", reused)
	}
	glob := slices.Sorted(slices.Values(names))

	for _, c := range []struct {
		name    string
		trusted bool
		all     bool
	}{
		{"every peer", false, false},
		{"trusted", true, false},
		{"all", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := replay.Config{Files: glob, Format: replay.JSON, Query: replay.Query{All: c.all}}
			if c.trusted {
				cfg.Trusted = trusted
			}
			out, _ := run(t, cfg)
			var wantHere []life
			for _, l := range want {
				if (!c.trusted || !l.spoofed) && (c.all || !l.Client.IsZero()) {
					wantHere = append(wantHere, l)
				}
			}
			if diff := cmpLines(strs(wantHere), strs(parseJSON(t, []byte(out)))); diff != "" {
				t.Errorf("connections (-want +got):\n%s", diff)
			}
		})
	}

	// Byte for byte, whatever the order the files are named in.
	var outs []string
	for seed := range 3 {
		order := slices.Clone(glob)
		if seed > 0 {
			for i := range order {
				j := (i*7 + seed) % len(order)
				order[i], order[j] = order[j], order[i]
			}
		}
		for _, f := range []replay.Format{replay.Table, replay.JSON} {
			out, summary := run(t, replay.Config{Files: order, Format: f, Trusted: trusted, Query: replay.Query{All: true}})
			if seed == 0 {
				golden(t, "hours-all."+map[replay.Format]string{replay.Table: "txt", replay.JSON: "jsonl"}[f], out+"--- stderr\n"+summary)
				outs = append(outs, out)
			} else if out != outs[f] {
				t.Errorf("%v output with the files named %q differs from the output with them named %q", f, order, glob)
			}
		}
	}
}

func cmpLines(want, got []string) string {
	var b strings.Builder
	for _, l := range want {
		if _, ok := slices.BinarySearch(got, l); !ok {
			fmt.Fprintf(&b, "-%s\n", l)
		}
	}
	for _, l := range got {
		if _, ok := slices.BinarySearch(want, l); !ok {
			fmt.Fprintf(&b, "+%s\n", l)
		}
	}
	if b.Len() == 0 && len(want) != len(got) {
		return fmt.Sprintf("%d lines, want %d (some twice)", len(got), len(want))
	}
	return b.String()
}

// TestQueries asks every combination of --at, --peer, --local and
// --client about the three-hour capture, about a connection whose 4-tuple
// the proxy reused: each answer is what the ground truth says, and the
// golden file's.
func TestQueries(t *testing.T) {
	names, truth := hoursHere(t)
	var lives []life
	for _, l := range expected(truth) {
		if !l.spoofed && !l.Client.IsZero() {
			lives = append(lives, l)
		}
	}
	// The target: a connection in the middle of the capture that ended by
	// port reuse, on a 4-tuple used before and after it.
	slices.SortFunc(lives, func(a, b life) int { return a.Opened.Compare(b.Opened) })
	var target life
	for _, l := range lives[len(lives)/2:] {
		if l.State == "reused" && l.Client.HasPort {
			target = l
			break
		}
	}
	if target.State == "" {
		t.Fatal("no connection ended by port reuse in the second half of the capture")
	}
	at := target.Opened.Add(target.Closed.Sub(target.Opened) / 2)
	q := replay.Query{
		At:     at,
		Peer:   replay.Endpoint{Addr: target.Peer.Addr(), Port: target.Peer.Port(), HasPort: true},
		Local:  replay.Endpoint{Addr: target.Local.Addr()}, // any port
		Client: replay.Endpoint{Addr: target.Client.Addr},  // any port
	}
	t.Logf("target %v; %s", target, q.String())
	for combo := range 16 {
		var sub replay.Query
		var parts []string
		if combo&1 != 0 {
			sub.At, parts = q.At, append(parts, "at")
		}
		if combo&2 != 0 {
			sub.Peer, parts = q.Peer, append(parts, "peer")
		}
		if combo&4 != 0 {
			sub.Local, parts = q.Local, append(parts, "local")
		}
		if combo&8 != 0 {
			sub.Client, parts = q.Client, append(parts, "client")
		}
		name := strings.Join(parts, "+")
		if name == "" {
			name = "none"
		}
		t.Run(name, func(t *testing.T) {
			out, summary := run(t, replay.Config{Files: names, Format: replay.JSON, Trusted: trusted, Query: sub})
			var want []life
			for _, l := range lives {
				if matches(l, sub) {
					want = append(want, l)
				}
			}
			if diff := cmpLines(strs(want), strs(parseJSON(t, []byte(out)))); diff != "" {
				t.Errorf("%s (-want +got):\n%s", sub.String(), diff)
			}
			if combo&3 == 3 && len(want) != 1 {
				t.Errorf("--at and --peer select %d connections, want the one target", len(want))
			}
			table, _ := run(t, replay.Config{Files: names, Format: replay.Table, Trusted: trusted, Query: sub})
			golden(t, "query-"+name+".txt", "toad replay "+sub.String()+" cap.pcap*\n"+table+"--- stderr\n"+summary)
		})
	}
}

// matches is the query's meaning, written out for the test.
func matches(l life, q replay.Query) bool {
	if !q.At.IsZero() && (l.Opened.After(q.At) || l.State != "open" && l.Closed.Before(q.At)) {
		return false
	}
	ep := func(e replay.Endpoint, a netip.Addr, p uint16, hasPort bool) bool {
		return e.IsZero() || a == e.Addr && (!e.HasPort || hasPort && p == e.Port)
	}
	return ep(q.Peer, l.Peer.Addr(), l.Peer.Port(), true) && ep(q.Local, l.Local.Addr(), l.Local.Port(), true) &&
		ep(q.Client, l.Client.Addr, l.Client.Port, l.Client.HasPort)
}

// TestSeams: a rotated file missing is a gap in the summary, files that
// cover the same time are an overlap, and both are replayed.
func TestSeams(t *testing.T) {
	dir := t.TempDir()
	names, _ := writeHours(t, dir)
	other := filepath.Join(dir, "eth1.pcap")
	if _, err := gen.WriteSplit([]string{other}, gen.PCAP, gen.Config{Seed: 99, Conns: 30, Gap: 10 * time.Second,
		Start: time.Date(2024, 1, 2, 4, 0, 0, 0, time.UTC), Framings: []craft.Framing{{Link: decode.LinkEthernet}}},
		func(time.Time, int) int { return 0 }); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	files := []string{"eth1.pcap"}
	for i, n := range names {
		if i != 8 {
			files = append(files, filepath.Base(n))
		}
	}
	out, summary := run(t, replay.Config{Files: files, Trusted: trusted})
	if !strings.Contains(summary, "gap: ") || !strings.Contains(summary, "overlap: eth1.pcap starts") {
		t.Errorf("summary:\n%s\nwant a gap where cap.pcap8 is missing and an overlap of eth1.pcap", summary)
	}
	golden(t, "seams.txt", out+"--- stderr\n"+summary)
}

// TestMemory: the replay holds the connections open at once and those
// that ended within the linger, not every connection of the capture.
func TestMemory(t *testing.T) {
	dir := t.TempDir()
	names, truth := writeHours(t, dir)
	s, err := replay.Run(context.Background(), replay.Config{Files: names, Out: new(bytes.Buffer), Query: replay.Query{All: true}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Conns.Conns != uint64(len(truth.Conns)) || s.Conns.Peak > 3*hours.Concurrency || s.Written != s.Conns.Conns {
		t.Errorf("%d connections, %d written, at most %d held at once; want %d, all, and no more than %d held",
			s.Conns.Conns, s.Written, s.Conns.Peak, len(truth.Conns), 3*hours.Concurrency)
	}
}

func TestParseEndpoint(t *testing.T) {
	for _, c := range []struct {
		in   string
		want replay.Endpoint
		err  string
	}{
		{"198.51.100.10", replay.Endpoint{Addr: netip.MustParseAddr("198.51.100.10")}, ""},
		{"198.51.100.10:40001", replay.Endpoint{Addr: netip.MustParseAddr("198.51.100.10"), Port: 40001, HasPort: true}, ""},
		{"2001:db8::1", replay.Endpoint{Addr: netip.MustParseAddr("2001:db8::1")}, ""},
		{"[2001:db8::1]", replay.Endpoint{Addr: netip.MustParseAddr("2001:db8::1")}, ""},
		{"[2001:db8::1]:443", replay.Endpoint{Addr: netip.MustParseAddr("2001:db8::1"), Port: 443, HasPort: true}, ""},
		{"::ffff:198.51.100.10", replay.Endpoint{Addr: netip.MustParseAddr("198.51.100.10")}, ""},
		{"[::ffff:198.51.100.10]:80", replay.Endpoint{Addr: netip.MustParseAddr("198.51.100.10"), Port: 80, HasPort: true}, ""},
		{"198.51.100.10:65536", replay.Endpoint{}, "is not an address or address:port"},
		{"[198.51.100.10]", replay.Endpoint{}, "is not an address or address:port"},
		{"[2001:db8::1", replay.Endpoint{}, "is not an address or address:port"},
		{"2001:db8::1]:80", replay.Endpoint{}, "is not an address or address:port"},
		{"proxy.example:80", replay.Endpoint{}, "is not an address or address:port"},
		{"", replay.Endpoint{}, "is not an address or address:port"},
		{"fe80::1%eth0", replay.Endpoint{}, "zone"},
	} {
		got, err := replay.ParseEndpoint(c.in)
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("ParseEndpoint(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("ParseEndpoint(%q) = %+v, %v; want an error saying %q", c.in, got, err, c.err)
		}
	}
}

func TestParseTime(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2024-05-01T14:02:00Z", time.Date(2024, 5, 1, 14, 2, 0, 0, time.UTC), true},
		{"2024-05-01T16:02:00.5+02:00", time.Date(2024, 5, 1, 14, 2, 0, 5e8, time.UTC), true},
		{"2024-05-01T14:02:00.123456789Z", time.Date(2024, 5, 1, 14, 2, 0, 123456789, time.UTC), true},
		{"2024-05-01 14:02:00", time.Time{}, false},
		{"14:02", time.Time{}, false},
		{"2024-05-01", time.Time{}, false},
	} {
		got, err := replay.ParseTime(c.in)
		if (err == nil) != c.ok || !got.Equal(c.want) || c.ok && got.Location() != time.UTC {
			t.Errorf("ParseTime(%q) = %v, %v; want %v, ok %v", c.in, got, err, c.want, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "RFC 3339") {
			t.Errorf("ParseTime(%q): error %q does not say what to write", c.in, err)
		}
	}
}

// TestWriteError: a failing output stops the replay with an error saying
// so.
func TestWriteError(t *testing.T) {
	dir := t.TempDir()
	names, _ := writeHours(t, dir)
	_, err := replay.Run(context.Background(), replay.Config{Files: names, Out: failingWriter{}, Format: replay.JSON})
	if err == nil || !strings.Contains(err.Error(), "write output: disk full") {
		t.Errorf("Run with a failing output: %v, want a write error", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, fmt.Errorf("disk full") }
