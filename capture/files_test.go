package capture_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/toad-project/toad/capture"
	"github.com/toad-project/toad/decode"
	"github.com/toad-project/toad/internal/craft"
	"github.com/toad-project/toad/internal/craft/gen"
)

// filesCfg is a capture of a few hours: a packet every 5s on average.
var filesCfg = gen.Config{Seed: 11, Conns: 120, Concurrency: 6, Proxies: 3, Ports: 8, DataSegments: 2, IPv6: 0.3,
	Junk: 0.1, Gap: 5 * time.Second, Framings: []craft.Framing{{Link: decode.LinkEthernet}}}

// whole returns the records of the capture written in one file.
func whole(t *testing.T, cfg gen.Config) []decode.Record {
	t.Helper()
	var buf bytes.Buffer
	if _, err := gen.Write(&buf, gen.PCAP, cfg); err != nil {
		t.Fatal(err)
	}
	var k kept
	if _, err := capture.Replay(context.Background(), &buf, nil, &k); err != nil {
		t.Fatal(err)
	}
	return k.recs
}

// rotated writes the capture as tcpdump -C names its files, cap.pcap,
// cap.pcap1, ..., a new one every `every` of capture time, and returns
// their names in capture order.
func rotated(t *testing.T, dir string, format gen.Format, cfg gen.Config, files int, every time.Duration) []string {
	t.Helper()
	names := make([]string, files)
	for i := range names {
		names[i] = filepath.Join(dir, "cap."+format.String())
		if i > 0 {
			names[i] += fmt.Sprint(i)
		}
	}
	start := cfg.Start
	if start.IsZero() {
		start = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	}
	if _, err := gen.WriteSplit(names, format, cfg, func(ts time.Time, _ int) int {
		return min(int(ts.Sub(start)/every), files-1)
	}); err != nil {
		t.Fatal(err)
	}
	return names
}

func replayFiles(t *testing.T, names []string, cfg capture.FilesConfig) ([]decode.Record, []capture.File) {
	t.Helper()
	var k kept
	files, err := capture.ReplayFiles(context.Background(), names, cfg, &k)
	if err != nil {
		t.Fatalf("ReplayFiles(%q): %v", names, err)
	}
	return k.recs, files
}

func sameRecords(t *testing.T, got, want []decode.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("record %d: got %v %v > %v %v, want %v %v > %v %v", i,
				got[i].Time, got[i].Peer, got[i].Local, got[i].Flags, want[i].Time, want[i].Peer, want[i].Local, want[i].Flags)
		}
	}
}

func shuffled(names []string, seed uint64) []string {
	out := slices.Clone(names)
	rand.New(rand.NewPCG(seed, 0)).Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// TestReplayFilesRotated: rotated files, pcap or pcapng, some gzipped,
// named in any order, give the records of the capture written whole, in
// the same order, and come back in capture order.
func TestReplayFilesRotated(t *testing.T) {
	want := whole(t, filesCfg)
	for _, format := range []gen.Format{gen.PCAP, gen.PCAPNG} {
		t.Run(format.String(), func(t *testing.T) {
			dir := t.TempDir()
			names := rotated(t, dir, format, filesCfg, 14, 9*time.Minute) // the last ones hold nothing
			gzipFile(t, names[3])
			gzipFile(t, names[10])
			for seed := range uint64(4) {
				order := shuffled(names, seed)
				if seed == 0 {
					order = slices.Sorted(slices.Values(names)) // a shell glob: cap.pcap, cap.pcap1, cap.pcap10, ...
				}
				got, files := replayFiles(t, order, capture.FilesConfig{})
				sameRecords(t, got, want)
				var gotNames []string
				var packets uint64
				for i, f := range files {
					gotNames = append(gotNames, f.Name)
					packets += f.Stats.Packets
					if order[f.Named] != f.Name {
						t.Errorf("file %s: Named %d, but position %d holds %s", f.Name, f.Named, f.Named, order[f.Named])
					}
					if i > 0 && f.Records() && f.First.Before(files[i-1].Last) {
						t.Errorf("%s starts at %v, before %s ends at %v", f.Name, f.First, files[i-1].Name, files[i-1].Last)
					}
				}
				// Capture order, then the files without packets by name.
				var wantNames, empty []string
				for _, f := range files {
					if f.Stats.Packets == 0 {
						empty = append(empty, f.Name)
					}
				}
				for _, name := range names {
					if !slices.Contains(empty, name) {
						wantNames = append(wantNames, name)
					}
				}
				slices.Sort(empty)
				wantNames = append(wantNames, empty...)
				if !slices.Equal(gotNames, wantNames) || len(empty) == 0 || len(empty) > 5 {
					t.Errorf("named %q: read %q, want capture order %q, with a few files without packets last", order, gotNames, wantNames)
				}
				if seams := capture.Seams(files, time.Minute); len(seams) != 0 {
					t.Errorf("seams %+v in a capture rotated without loss", seams)
				}
				if packets == 0 {
					t.Errorf("no packets counted")
				}
			}
		})
	}
}

func gzipFile(t *testing.T, name string) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b)
	zw.Close()
	if err := os.WriteFile(name, z.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReplayFilesOverlap: files that cover the same hours (packets dealt
// among them, as from two capture points) are merged into capture order,
// and each meeting is an overlap.
func TestReplayFilesOverlap(t *testing.T) {
	want := whole(t, filesCfg)
	dir := t.TempDir()
	names := []string{filepath.Join(dir, "eth0.pcap"), filepath.Join(dir, "eth1.pcap"), filepath.Join(dir, "eth2.pcap")}
	if _, err := gen.WriteSplit(names, gen.PCAP, filesCfg, func(_ time.Time, n int) int { return n * 7 % 11 % 3 }); err != nil {
		t.Fatal(err)
	}
	for seed := range uint64(3) {
		got, files := replayFiles(t, shuffled(names, seed), capture.FilesConfig{})
		sameRecords(t, got, want)
		seams := capture.Seams(files, time.Minute)
		if len(seams) != 2 {
			t.Fatalf("seams %+v, want an overlap between each file and the next", seams)
		}
		for _, s := range seams {
			if s.Gap() >= 0 {
				t.Errorf("seam %+v: gap %v, want an overlap (negative)", s, s.Gap())
			}
		}
	}
}

// TestReplayFilesGap: a rotated file left out is a gap between the files
// around it, longer than the threshold; the rest are replayed.
func TestReplayFilesGap(t *testing.T) {
	dir := t.TempDir()
	names := rotated(t, dir, gen.PCAP, filesCfg, 6, 30*time.Minute)
	var k kept
	all := whole(t, filesCfg)
	missing := names[2]
	names = slices.Delete(slices.Clone(names), 2, 3)
	files, err := capture.ReplayFiles(context.Background(), shuffled(names, 5), capture.FilesConfig{}, &k)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.recs) >= len(all) {
		t.Errorf("%d records without %s, the whole has %d", len(k.recs), missing, len(all))
	}
	seams := capture.Seams(files, 5*time.Minute)
	if len(seams) != 1 || seams[0].Before != names[1] || seams[0].After != names[2] || seams[0].Gap() < 25*time.Minute {
		t.Errorf("seams %+v, want one gap of about 30m between %s and %s", seams, names[1], names[2])
	}
}

// TestReplayFilesOnce: a file named twice, or standard input, is read
// once, and standard input is opened once.
func TestReplayFilesOnce(t *testing.T) {
	want := whole(t, filesCfg)
	dir := t.TempDir()
	names := rotated(t, dir, gen.PCAPNG, filesCfg, 3, time.Hour)
	stdin, err := os.ReadFile(names[1])
	if err != nil {
		t.Fatal(err)
	}
	opened := map[string]int{}
	cfg := capture.FilesConfig{Open: func(name string) (io.ReadCloser, error) {
		opened[name]++
		if name == "-" {
			return io.NopCloser(bytes.NewReader(stdin)), nil
		}
		return os.Open(name)
	}}
	again := filepath.Join(dir, ".", filepath.Base(names[0]))
	got, files := replayFiles(t, []string{names[2], again, "-", names[0]}, cfg)
	sameRecords(t, got, want)
	if opened["-"] != 1 {
		t.Errorf("standard input opened %d times, want 1", opened["-"])
	}
	if len(files) != 4 || files[3].SameAs != again || files[3].Name != names[0] || files[3].Records() {
		t.Errorf("files %+v: want the last to be %s, the same as %s, unread", files, names[0], again)
	}
}

// TestReplayFilesClock: an Expirer sink's clock follows the merged
// capture, never going back, and ends at its last record; Keep drops
// records before the merge.
func TestReplayFilesClock(t *testing.T) {
	dir := t.TempDir()
	names := []string{filepath.Join(dir, "a.pcap"), filepath.Join(dir, "b.pcap")}
	if _, err := gen.WriteSplit(names, gen.PCAP, filesCfg, func(_ time.Time, n int) int { return n % 2 }); err != nil {
		t.Fatal(err)
	}
	var c clock
	keep := func(r *decode.Record) bool { return r.Flags&decode.SYN != 0 }
	files, err := capture.ReplayFiles(context.Background(), names, capture.FilesConfig{Keep: keep}, &c)
	if err != nil {
		t.Fatal(err)
	}
	var last time.Time
	for _, f := range files {
		if f.Last.After(last) {
			last = f.Last
		}
	}
	if len(c.expires) < 100 || !c.expires[len(c.expires)-1].Equal(last) {
		t.Fatalf("%d Expire calls ending at %v, want one a second of capture time, the last at %v", len(c.expires), c.expires[len(c.expires)-1], last)
	}
	for i := 1; i < len(c.expires); i++ {
		if c.expires[i].Before(c.expires[i-1]) {
			t.Errorf("Expire at %v after %v", c.expires[i], c.expires[i-1])
		}
	}
	syns := 0
	for _, r := range whole(t, filesCfg) {
		if keep(&r) {
			syns++
		}
	}
	if c.observed != syns {
		t.Errorf("%d records passed with Keep, want the %d SYNs", c.observed, syns)
	}
}

type clock struct {
	observed int
	expires  []time.Time
}

func (c *clock) Observe(*decode.Record) { c.observed++ }
func (c *clock) Expire(now time.Time) int {
	c.expires = append(c.expires, now)
	return 0
}

// TestReplayFilesErrors: a file that cannot be read stops the replay with
// an error naming it, whatever the others hold.
func TestReplayFilesErrors(t *testing.T) {
	dir := t.TempDir()
	names := rotated(t, dir, gen.PCAP, filesCfg, 4, time.Hour)
	b, err := os.ReadFile(names[1])
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.pcap")
	os.WriteFile(cut, b[:len(b)-7], 0o644)
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("hello, world\n"), 0o644)
	for _, c := range []struct {
		names []string
		want  string
	}{
		{[]string{names[0], cut, names[2]}, cut + ": read packet"},
		{[]string{names[3], filepath.Join(dir, "missing.pcap")}, "missing.pcap: no such file or directory"},
		{[]string{names[3], text}, text + ": not a pcap or pcapng file"},
	} {
		_, err := capture.ReplayFiles(context.Background(), c.names, capture.FilesConfig{}, new(kept))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one saying %q", c.names, err, c.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := capture.ReplayFiles(ctx, names, capture.FilesConfig{}, new(kept)); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v, want context.Canceled", err)
	}
}

func TestSeams(t *testing.T) {
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	files := []capture.File{
		{Name: "a", First: at(0), Last: at(60)},
		{Name: "empty"},
		{Name: "b", First: at(60), Last: at(120)},
		{Name: "c", First: at(150), Last: at(240)}, // a 30m gap
		{Name: "d", First: at(200), Last: at(210)}, // inside c
		{Name: "e", First: at(241), Last: at(300)}, // after c, not d
	}
	got := capture.Seams(files, 5*time.Minute)
	want := []capture.Seam{
		{Before: "b", After: "c", End: at(120), Start: at(150)},
		{Before: "c", After: "d", End: at(240), Start: at(200)},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Seams = %+v, want %+v", got, want)
	}
}
