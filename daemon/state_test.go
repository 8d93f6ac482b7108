package daemon

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/toad-project/toad/api/client"
	"github.com/toad-project/toad/internal/craft/gen"
)

// TestServeState: a restart with --state-dir resolves the connections
// learnt before it; a snapshot in it that is not intact is moved aside and
// toad starts anyway; a snapshot an older toad wrote at stop
// (--snapshot FILE) is loaded once into FILE.d, then removed.
func TestServeState(t *testing.T) {
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
	state := filepath.Join(dir, "var", "state") // made
	sock := filepath.Join(dir, "toad.sock")
	args := func(capFile string, set func(*Config)) func(*Config) {
		return func(c *Config) {
			c.Pcaps, c.Socket, c.Drain = []string{capFile}, sock, 0
			set(c)
		}
	}
	inState := func(c *Config) { c.StateDir = state }
	// resolves checks that the sample's connections and the second
	// capture's resolve.
	resolves := func(t *testing.T, when string) {
		t.Helper()
		c, err := client.New(sock, client.WithWait(0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		resolved := 0
		for _, conn := range append(truth.Conns, truth2.Conns...) {
			if !conn.Resolvable() {
				continue
			}
			got, err := c.Lookup(context.Background(), conn.Peer, conn.Local)
			if err != nil || got.Client.Addr() != conn.Client.Addr || got.Client.Port() != conn.Client.Port {
				t.Errorf("%s: %v > %v: %+v, %v; want client %v", when, conn.Peer, conn.Local, got, err, conn.Client)
				continue
			}
			resolved++
		}
		if resolved < 2 {
			t.Errorf("%s: %d resolved, want the sample's and the second capture's", when, resolved)
		}
	}
	snapshotIn := func(t *testing.T, dir string) string {
		t.Helper()
		var snaps []string
		all, err := filepath.Glob(filepath.Join(dir, "snapshot-*"))
		for _, s := range all {
			if !strings.HasSuffix(s, ".corrupt") {
				snaps = append(snaps, s)
			}
		}
		if err != nil || len(snaps) != 1 {
			t.Fatalf("snapshots in %s: %v, %v; want one", dir, snaps, err)
		}
		return snaps[0]
	}

	d := serving(t, args(first, inState))
	if m := d.waitLog(t, "no state yet: starting with an empty table"); m["dir"] != state {
		t.Errorf("no-state log names %q, want %q", m["dir"], state)
	}
	if err := d.stop(); err != nil {
		t.Fatalf("first run: %v", err)
	}
	d.waitLog(t, "state compacted")
	snap := snapshotIn(t, state)
	b, err := os.ReadFile(snap)
	if err != nil || !bytes.HasPrefix(b, []byte("TOADCTBL")) {
		t.Fatalf("snapshot %s: %q, %v; want a TOADCTBL snapshot", snap, b[:min(8, len(b))], err)
	}
	if fi, err := os.Stat(snap); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("snapshot mode %v, %v; want 0600: it holds client addresses", fi.Mode().Perm(), err)
	}
	older := b // as an older toad's --snapshot would hold
	// A compaction cut short leaves a temporary file behind; the next
	// start removes it.
	stale := filepath.Join(state, ".snapshot-00000000000000ff.tmp")
	if err := os.WriteFile(stale, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The second run replays another capture: what it resolves of the
	// first came from the state directory.
	d = serving(t, args(second, inState))
	if m := d.waitLog(t, "state recovered"); m["connections"] == "0" || m["dir"] != state {
		t.Errorf("state recovered: %v; want the first run's connections from %s", m, state)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temporary file after a start: %v, want it removed", err)
	}
	resolves(t, "after the restart")
	if err := d.stop(); err != nil {
		t.Fatalf("second run: %v", err)
	}

	// A corrupt snapshot: moved aside, toad serves, and writes a new one.
	snap = snapshotIn(t, state)
	if err := os.WriteFile(snap, []byte("TOADCTBL garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	d = serving(t, args(second, inState))
	if m := d.waitLog(t, "state snapshot not intact, moved aside: recovered from what could be trusted"); m["moved_to"] != snap+".corrupt" {
		t.Errorf("corrupt snapshot log %v, want it moved to %s.corrupt", m, snap)
	}
	if b, err := os.ReadFile(snap + ".corrupt"); err != nil || string(b) != "TOADCTBL garbage" {
		t.Errorf("moved-aside snapshot: %q, %v; want the corrupt bytes kept", b, err)
	}
	if err := d.stop(); err != nil {
		t.Fatalf("third run: %v", err)
	}
	if b, err := os.ReadFile(snapshotIn(t, state)); err != nil || !bytes.HasPrefix(b, []byte("TOADCTBL")) || len(b) < 20 {
		t.Errorf("snapshot after the third run: %q, %v; want a fresh one", b, err)
	}

	// An older toad's snapshot: --snapshot FILE loads it once into
	// FILE.d, and removes it.
	legacy := filepath.Join(dir, "table.snap")
	if err := os.WriteFile(legacy, older, 0o600); err != nil {
		t.Fatal(err)
	}
	d = serving(t, args(second, func(c *Config) { c.Snapshot = legacy }))
	d.waitLog(t, "--snapshot is deprecated: the table is kept in a state directory as it changes; name it with --state-dir")
	if m := d.waitLog(t, "snapshot of an older toad imported into the state directory, and removed"); m["dir"] != legacy+".d" {
		t.Errorf("import log %v, want the state in %s.d", m, legacy)
	}
	if _, err := os.Stat(legacy); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the older snapshot after its import: %v, want it removed", err)
	}
	resolves(t, "after the import")
	if err := d.stop(); err != nil {
		t.Fatalf("fourth run: %v", err)
	}
	snapshotIn(t, legacy+".d")
}
