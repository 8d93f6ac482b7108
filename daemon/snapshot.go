package daemon

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/toad-project/toad/correlate"
)

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
