package journal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/toad-project/toad/internal/privtest"
	"github.com/toad-project/toad/internal/syncbuf"
)

// smallDisk mounts a tmpfs of size bytes on a new directory, unmounted
// when the test ends.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	privtest.Require(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		if privtest.InCI() {
			t.Fatalf("mount a %s tmpfs on %s: %v", size, dir, err)
		}
		t.Skipf("mount a %s tmpfs: %v (needs root)", size, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// TestDiskFull fills a real 64 KiB tmpfs under a running journal: the
// table keeps taking changes and serving, the failure is counted and
// warned of once, and when space comes back a compaction writes the table
// whole, so that a crash then loses nothing.
func TestDiskFull(t *testing.T) {
	dir := smallDisk(t, "64k")
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 40<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	src := newTable(t, tableCfg)
	j, _ := open(t, dir, src, Config{Interval: time.Hour, Logger: logTo(&logs)})
	if st := j.Stats(); st.Failing || st.Compactions != 1 {
		t.Fatalf("after Open: %+v, want a compaction and no failure", st)
	}

	var err error
	n := 0
	for ; n < 5000 && err == nil; n++ {
		step(src, n)
		if n%10 == 9 {
			err = j.Flush()
		}
	}
	if !errors.Is(err, ErrFailing) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Flush after %d steps on a full disk: %v, want ErrFailing and ENOSPC", n, err)
	}
	// The table goes on: more changes, more failures, one warning.
	for end := n + 200; n < end; n++ {
		step(src, n)
		if n%10 == 9 {
			if err := j.Flush(); !errors.Is(err, ErrFailing) {
				t.Fatalf("Flush on a full disk: %v, want ErrFailing", err)
			}
		}
	}
	if e, ok := src.Get(keyN(n - 1)); !ok || e.Client != clientN(n-1, 0) {
		t.Errorf("a connection opened while the disk is full: got %v, %v; want %v", e.Client, ok, clientN(n-1, 0))
	}
	st := j.Stats()
	if !st.Failing || st.WriteErrors < 2 || st.Dropped == 0 {
		t.Errorf("stats on a full disk %+v: want Failing, several WriteErrors, records Dropped", st)
	}
	if got := strings.Count(logs.String(), "level=WARN"); got != 1 {
		t.Errorf("%d warnings, want 1 (rate-limited):\n%s", got, logs.String())
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := j.Flush(); err != nil {
		t.Fatalf("Flush once space came back: %v", err)
	}
	after := j.Stats()
	if after.Failing || after.Compactions <= st.Compactions {
		t.Errorf("stats once space came back %+v: want not Failing, a compaction more than %d", after, st.Compactions)
	}
	if !strings.Contains(logs.String(), "journal writes resumed") {
		t.Errorf("no line saying writes resumed:\n%s", logs.String())
	}
	got, _ := recovered(t, copyDir(t, dir), time.Time{})
	if d := diff(entries(src), entries(got)); d != "" {
		t.Errorf("recovered after the disk was full (-table +recovered):\n%s", d)
	}
	for range 30 {
		step(src, n)
		n++
	}
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	got, _ = recovered(t, dir, time.Time{})
	if d := diff(entries(src), entries(got)); d != "" {
		t.Errorf("recovered after Close (-table +recovered):\n%s", d)
	}
}

// TestDiskFullAtOpen: a journal that cannot write its first generation
// still opens, recovers what the directory holds into the table, and
// leaves that generation in place until it can write a new one.
func TestDiskFullAtOpen(t *testing.T) {
	dir := smallDisk(t, "64k")
	j, src := journaled(t, dir, 100)
	want := entries(src)
	// Killed here: nothing more is written to dir.
	crash := copyDir(t, dir)
	j.Close()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.Remove(filepath.Join(dir, e.Name()))
	}
	if err := os.CopyFS(dir, os.DirFS(crash)); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	f.Close()

	tab := newTable(t, tableCfg)
	j2, rcv := open(t, dir, tab, Config{Interval: time.Hour, Now: func() time.Time { return expiredAt(0, 99) }})
	if d := diff(want, entries(tab)); d != "" {
		t.Errorf("recovered on a full disk (-before +after):\n%s", d)
	}
	if st := j2.Stats(); !st.Failing || rcv.Loaded != len(want) {
		t.Errorf("stats %+v, loaded %d: want Failing, %d loaded", st, rcv.Loaded, len(want))
	}
	got, _ := recovered(t, copyDir(t, dir), expiredAt(0, 99))
	if d := diff(want, entries(got)); d != "" {
		t.Errorf("the generation on disk changed (-before +after):\n%s", d)
	}
	os.Remove(filler)
	if err := j2.Flush(); err != nil {
		t.Errorf("Flush once space came back: %v", err)
	}
}

// TestCheck: the preflight of a state directory makes it when missing and
// names what is wrong: a file in its place, a read-only or full
// filesystem.
func TestCheck(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "a", "b")
	if err := Check(missing); err != nil {
		t.Fatalf("Check(%s): %v, want the directory made", missing, err)
	}
	if fi, err := os.Stat(missing); err != nil || !fi.IsDir() {
		t.Fatalf("after Check: %v, %v; want a directory", fi, err)
	}
	if ents, _ := os.ReadDir(missing); len(ents) != 0 {
		t.Errorf("Check left %d files behind", len(ents))
	}
	file := filepath.Join(t.TempDir(), "table.snap")
	os.WriteFile(file, nil, 0o600)
	if err := Check(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Check(a file): %v, want one saying it is not a directory", err)
	}

	full := smallDisk(t, "16k")
	os.WriteFile(filepath.Join(full, "filler"), make([]byte, 64<<10), 0o600) // fills it, then fails
	if err := Check(full); !errors.Is(err, ErrNoSpace) {
		t.Errorf("Check(a full tmpfs): %v, want ErrNoSpace", err)
	}

	ro := smallDisk(t, "16k")
	if err := unix.Mount("", ro, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount %s read-only: %v", ro, err)
	}
	if err := Check(ro); err == nil || errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("Check(a read-only tmpfs): %v, want one saying it is read-only", err)
	}
}
