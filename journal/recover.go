package journal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/toad-project/toad/correlate"
)

// Recovery says what Open found in the directory and loaded.
type Recovery struct {
	// Generation is the generation recovered, 0 when there was none.
	Generation uint64
	// SnapshotEntries is how many entries its snapshot held.
	SnapshotEntries int
	// Records is how many change records of its segment were applied.
	Records int
	// TailBytes is how many bytes of the segment followed the last intact
	// record and were not applied: a write the crash cut short, or
	// corruption. TailErr says what was wrong with the first of them.
	TailBytes int64
	TailErr   error
	// Skipped lists the snapshots that were not intact, newest first; each
	// was moved aside to its name with ".corrupt" appended.
	Skipped []string
	// Loaded is how many entries were added to the table: the image's,
	// less the expired ones and the keys the table already held.
	Loaded int
	// Took is how long recovery took.
	Took time.Duration
}

// recoverImage rebuilds the table's content from dir: the newest intact
// snapshot and its segment's intact records. Snapshots that are not intact
// are moved aside, so that they are never read again.
func recoverImage(dir string) (*correlate.Image, Recovery, error) {
	var rec Recovery
	snaps, _, err := generations(dir)
	if err != nil {
		return nil, rec, err
	}
	im := &correlate.Image{}
	for _, gen := range slices.Backward(snaps) {
		name := filepath.Join(dir, snapName(gen))
		err := readSnapshotFile(im, name)
		if errors.Is(err, correlate.ErrBadSnapshot) {
			os.Rename(name, name+corruptSuffix)
			rec.Skipped = append(rec.Skipped, name)
			continue
		}
		if err != nil {
			return nil, rec, err
		}
		rec.Generation = gen
		rec.SnapshotEntries = im.Len()
		break
	}
	if rec.Generation == 0 {
		return im, rec, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, segName(rec.Generation)))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// A segment is created before its snapshot, so this one was
		// removed by hand: the snapshot alone is what is left.
		rec.TailErr = err
		return im, rec, nil
	case err != nil:
		return nil, rec, err
	}
	if err := checkHeader(b, rec.Generation); err != nil {
		rec.TailBytes, rec.TailErr = int64(len(b)), err
		return im, rec, nil
	}
	n, records, err := im.Apply(b[headerLen:])
	rec.Records = records
	if err != nil {
		rec.TailBytes = int64(len(b) - headerLen - n)
		rec.TailErr = err
	}
	return im, rec, nil
}

func readSnapshotFile(im *correlate.Image, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := im.ReadSnapshot(f); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
