package correlate_test

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/toa"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// snapshotTable returns a one-shard table (so that its snapshot is in a
// fixed order) holding one entry of every kind.
func snapshotTable(t *testing.T) *correlate.Table {
	tab := newTable(t, correlate.Config{Capacity: 16, Shards: 1})
	k6 := correlate.KeyOf(netip.MustParseAddrPort("[2001:db8::7]:40000"), netip.MustParseAddrPort("[2001:db8::10]:443"))
	noPort6 := toa.Client{Dialect: toa.Kind28V6, Addr: netip.MustParseAddr("2001:db8:c::1")}
	nat64 := toa.Client{Dialect: toa.Kind254V6, Addr: netip.MustParseAddr("2001:db8:c::2"), Port: 3333, HasPort: true}
	k3 := keyN(3)
	observe(tab,
		synN(1, t0),
		synN(2, t0.Add(time.Second)),
		finN(2, t0.Add(2*time.Second)),
		decode.Record{Time: t0.Add(3 * time.Second), Peer: k3.Peer(), Local: k3.Local(), Flags: decode.ACK, Seq: 501, TOA: nat64, TOACount: 1},
		segOn(k6, decode.SYN, 77, noPort6, t0.Add(4*time.Second)),
	)
	return tab
}

func TestSnapshotRoundTrip(t *testing.T) {
	src := snapshotTable(t)
	var buf bytes.Buffer
	if err := src.WriteSnapshot(&buf); err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	golden := filepath.Join("testdata", "snapshot-v1.golden")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("snapshot differs from %s: the format changed; bump its version and run go test -update", golden)
	}

	dst := newTable(t, correlate.Config{Capacity: 64, Shards: 8})
	n, err := dst.ReadSnapshot(bytes.NewReader(want), t0.Add(5*time.Second))
	if err != nil || n != 4 {
		t.Fatalf("ReadSnapshot: got %d, %v; want 4, nil", n, err)
	}
	if d := diffEntries(entries(src), entries(dst)); d != "" {
		t.Errorf("entries loaded (-written +read):\n%s", d)
	}
}

func TestSnapshotSkips(t *testing.T) {
	var buf bytes.Buffer
	if err := snapshotTable(t).WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cfg  correlate.Config
		now  time.Time
		pre  []decode.Record
		want []int // keyN of the IPv4 entries loaded
		n    int
	}{
		{name: "closing entry past its linger", cfg: correlate.Config{Linger: time.Minute}, now: t0.Add(2*time.Second + time.Minute),
			want: []int{1, 3}, n: 3},
		{name: "closing entry still lingering", cfg: correlate.Config{Linger: time.Minute}, now: t0.Add(time.Minute),
			want: []int{1, 2, 3}, n: 4},
		{name: "idle entries", cfg: correlate.Config{IdleTimeout: 10 * time.Second}, now: t0.Add(12 * time.Second),
			want: []int{2, 3}, n: 3},
		{name: "untrusted peers", cfg: correlate.Config{Trusted: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}, now: t0,
			want: []int{1, 2, 3}, n: 3},
		{name: "keys already held", now: t0, pre: []decode.Record{synN(1, t0.Add(time.Hour))},
			want: []int{1, 2, 3}, n: 3},
		{name: "beyond capacity the oldest go", cfg: correlate.Config{Capacity: 2, Shards: 1}, now: t0,
			want: []int{3}, n: 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			tab := newTable(t, c.cfg)
			observe(tab, c.pre...)
			n, err := tab.ReadSnapshot(bytes.NewReader(buf.Bytes()), c.now)
			if err != nil || n != c.n {
				t.Errorf("ReadSnapshot: got %d, %v; want %d, nil", n, err, c.n)
			}
			if got := has(tab, 1, 2, 3); !equal(got, c.want) {
				t.Errorf("held: got %v, want %v", got, c.want)
			}
			if len(c.pre) > 0 {
				if e, _ := tab.Get(keyN(1)); !e.FirstSeen.Equal(t0.Add(time.Hour)) {
					t.Errorf("held entry: FirstSeen %v, want the live one's %v", e.FirstSeen, t0.Add(time.Hour))
				}
			}
		})
	}
}

// TestSnapshotRefused: anything but an intact snapshot is refused with
// ErrBadSnapshot and loads nothing: every truncation, every corrupted byte.
func TestSnapshotRefused(t *testing.T) {
	var buf bytes.Buffer
	if err := snapshotTable(t).WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	tab := newTable(t, correlate.Config{Capacity: 64, Shards: 4})
	try := func(name string, b []byte, wantMsg string) {
		t.Helper()
		n, err := tab.ReadSnapshot(bytes.NewReader(b), t0)
		if !errors.Is(err, correlate.ErrBadSnapshot) || n != 0 {
			t.Fatalf("%s: got %d, %v; want 0, ErrBadSnapshot", name, n, err)
		}
		if !strings.Contains(err.Error(), wantMsg) {
			t.Errorf("%s: error %q does not say %q", name, err, wantMsg)
		}
		if tab.Len() != 0 {
			t.Fatalf("%s: %d entries loaded from a refused snapshot, want 0", name, tab.Len())
		}
	}
	with := func(i int, b byte) []byte {
		c := bytes.Clone(good)
		c[i] = b
		return c
	}
	try("empty", nil, "truncated")
	try("foreign", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00\x00\x00\x00"), "not a toad connection table snapshot")
	try("newer version", with(9, 2), "version 2")
	try("reserved field", with(11, 1), "reserved")
	try("unknown entry flags", with(12, 0x40), "unknown flags")
	for i := range len(good) {
		try("truncated", good[:i], "")
	}
	for i := range len(good) {
		try("corrupted", with(i, good[i]^0x5a), "")
	}
	if _, err := tab.ReadSnapshot(bytes.NewReader(good), t0); err != nil {
		t.Errorf("the intact snapshot after all that: %v", err)
	}
}

type failWriter struct{ n int }

var errDisk = errors.New("disk full")

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n -= len(p); w.n < 0 {
		return 0, errDisk
	}
	return len(p), nil
}

func TestSnapshotWriteError(t *testing.T) {
	tab := newTable(t, correlate.Config{Capacity: 1 << 12, Shards: 4})
	for n := range 1000 {
		observe(tab, synN(n, t0))
	}
	if err := tab.WriteSnapshot(&failWriter{n: 1000}); !errors.Is(err, errDisk) {
		t.Errorf("WriteSnapshot to a failing writer: got %v, want %v", err, errDisk)
	}
	if err := tab.WriteSnapshot(io.Discard); err != nil {
		t.Errorf("WriteSnapshot: %v", err)
	}
}
