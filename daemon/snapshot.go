package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/toad-project/toad/correlate"
)

// tempPattern names the temporary files a snapshot is written to before it
// is renamed into place, in the snapshot's directory.
func tempPattern(path string) string { return "." + filepath.Base(path) + ".tmp-*" }

// checkSnapshotDir makes the snapshot's directory if it is missing (mode
// 0750), checks that toad can create files in it, and removes the
// temporary files a write cut short (by SIGKILL, say) left behind.
func checkSnapshotDir(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory: want a file in it, such as %s", path, filepath.Join(path, "table.snap"))
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, tempPattern(path))
	if err != nil {
		return fmt.Errorf("directory %s is not writable: %w", dir, err)
	}
	f.Close()
	os.Remove(f.Name())
	stale, _ := filepath.Glob(filepath.Join(dir, tempPattern(path)))
	for _, name := range stale {
		os.Remove(name)
	}
	return nil
}

// loadSnapshot loads the snapshot at path into t, skipping the entries
// already expired at now (none when now is zero), and logs what happened.
// It never fails: toad must capture even when the snapshot is lost. A
// missing snapshot starts an empty table; one that is not intact (torn,
// corrupt, from a newer toad) is moved aside to path.corrupt, replacing
// an older one, so that it can be examined and is not read again; one that
// cannot be read is left in place, and the next snapshot replaces it.
func loadSnapshot(t *correlate.Table, path string, now time.Time, log *slog.Logger) {
	start := time.Now()
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		log.Info("no snapshot: starting with an empty table", "file", path)
		return
	}
	if err != nil {
		log.Warn("snapshot unreadable: starting with an empty table", "file", path, "err", err)
		return
	}
	n, err := t.ReadSnapshot(f, now)
	f.Close()
	switch {
	case errors.Is(err, correlate.ErrBadSnapshot):
		aside := path + ".corrupt"
		if rerr := os.Rename(path, aside); rerr != nil {
			log.Warn("snapshot not intact, and it could not be moved aside: starting with an empty table", "file", path, "err", err, "move_err", rerr)
			return
		}
		log.Warn("snapshot not intact, moved aside: starting with an empty table", "file", path, "moved_to", aside, "err", err)
	case err != nil:
		log.Warn("snapshot unreadable: starting with an empty table", "file", path, "err", err)
	default:
		log.Info("snapshot loaded", "file", path, "connections", n, "took", time.Since(start).Round(time.Microsecond))
	}
}

// saveSnapshot writes t to path atomically: to a temporary file in the same
// directory, synced to disk, renamed over path, and the directory synced,
// so that path holds the old snapshot or the new one, whole, whatever
// happens. It returns the size written.
func saveSnapshot(t *correlate.Table, path string) (size int64, err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPattern(path)) // mode 0600: it holds client addresses
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := t.WriteSnapshot(f); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return 0, err
	}
	if d, err := os.Open(dir); err == nil {
		// The rename lives in the directory: without this a crash could
		// lose it. Some filesystems cannot sync a directory; the file
		// itself is synced either way.
		d.Sync()
		d.Close()
	}
	return fi.Size(), nil
}
