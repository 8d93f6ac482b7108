package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/toad-project/toad/correlate"
	"github.com/toad-project/toad/journal"
)

// stateDirOf returns the directory the table is kept in: stateDir, or
// FILE.d for the deprecated --snapshot FILE; "" for none.
func stateDirOf(stateDir, snapshot string) string {
	if stateDir == "" && snapshot != "" {
		return snapshot + ".d"
	}
	return stateDir
}

// checkState checks the state directory before anything starts. err is
// a directory toad cannot use at all; full, a filesystem with no room,
// which toad starts on anyway (serving from memory until space comes back)
// and warns of once it logs.
func checkState(dir string) (full, err error) {
	err = journal.Check(dir)
	if errors.Is(err, journal.ErrNoSpace) {
		return err, nil
	}
	return nil, err
}

// state keeps the table in its directory as it changes.
type state struct {
	dir string
	j   *journal.Journal
	log *slog.Logger
}

// openState recovers the table from dir into table, then keeps it there
// until close. It runs once the capture is attached, so that the entries
// the capture already took win. legacy, when set, is a snapshot file an
// older toad wrote at stop (--snapshot): loaded once, into a directory
// that holds no state yet, and removed once the directory holds it. A
// replayed (frozen) table expires nothing it recovers.
func openState(dir, legacy string, fsync, live bool, table *correlate.Table, log *slog.Logger) (*state, error) {
	now := time.Now
	if !live {
		now = func() time.Time { return time.Time{} }
	}
	imported := false
	if legacy != "" {
		if _, err := os.Stat(legacy); err == nil && !holdsState(dir) {
			loadSnapshot(table, legacy, now(), log)
			imported = true
		}
	}
	j, rcv, err := journal.Open(dir, table, journal.Config{Sync: fsync, Logger: log, Now: now})
	if err != nil {
		return nil, err
	}
	attrs := []any{"dir", dir, "generation", rcv.Generation, "snapshot_entries", rcv.SnapshotEntries,
		"records", rcv.Records, "connections", rcv.Loaded, "took", rcv.Took.Round(time.Microsecond)}
	if rcv.Generation == 0 {
		log.Info("no state yet: starting with an empty table", "dir", dir)
	} else {
		log.Info("state recovered", attrs...)
	}
	if rcv.TailBytes > 0 {
		log.Warn("journal tail not intact (a write cut short, or corruption): recovered up to its last intact record",
			"dir", dir, "bytes_not_applied", rcv.TailBytes, "err", rcv.TailErr)
	}
	for _, s := range rcv.Skipped {
		log.Warn("state snapshot not intact, moved aside: recovered from what could be trusted", "file", s, "moved_to", s+".corrupt")
	}
	st := j.Stats()
	if imported && !st.Failing {
		// One that was not intact has been moved aside already.
		switch err := os.Remove(legacy); {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			log.Warn("snapshot of an older toad imported, but it could not be removed: remove it", "file", legacy, "err", err)
		default:
			log.Info("snapshot of an older toad imported into the state directory, and removed", "file", legacy, "dir", dir)
		}
	}
	if st.Failing {
		log.Warn("state directory cannot be written: serving from memory, retrying; a crash loses what changes meanwhile",
			"dir", dir, "write_errors", st.WriteErrors)
	}
	return &state{dir: dir, j: j, log: log}, nil
}

// holdsState reports whether dir holds a snapshot or a journal.
func holdsState(dir string) bool {
	for _, p := range []string{"snapshot-*", "journal-*"} {
		if m, _ := filepath.Glob(filepath.Join(dir, p)); len(m) > 0 {
			return true
		}
	}
	return false
}

// close writes the last changes, compacts and stops.
func (s *state) close() error {
	start := time.Now()
	if err := s.j.Close(); err != nil {
		return fmt.Errorf("state directory %s: %w", s.dir, err)
	}
	st := s.j.Stats()
	s.log.Info("state compacted", "dir", s.dir, "bytes", st.Size, "took", time.Since(start).Round(time.Microsecond))
	return nil
}

// journalStats reads the journal's counters once the state is open, for
// metrics and GetStats.
type journalStats struct{ s atomic.Pointer[state] }

func (js *journalStats) get() (journal.Stats, bool) {
	s := js.s.Load()
	if s == nil {
		return journal.Stats{}, false
	}
	return s.j.Stats(), true
}
