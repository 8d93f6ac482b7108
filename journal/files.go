package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/toad-project/toad/correlate"
)

// A segment starts with a header, all integers big-endian:
//
//	"TOADJRNL", version uint16 (1), reserved uint16 (0),
//	generation uint64, CRC-32C of the 20 bytes before it
//
// then change records (see correlate.Recorder), each closed by its own
// CRC-32C. The generation ties the segment to its snapshot: a segment
// renamed or copied beside another snapshot is not applied to it.
const (
	segMagic   = "TOADJRNL"
	segVersion = 1
	headerLen  = len(segMagic) + 2 + 2 + 8 + 4

	snapPrefix    = "snapshot-"
	segPrefix     = "journal-"
	tempSuffix    = ".tmp"
	corruptSuffix = ".corrupt"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func snapName(gen uint64) string { return fmt.Sprintf("%s%016x", snapPrefix, gen) }
func segName(gen uint64) string  { return fmt.Sprintf("%s%016x", segPrefix, gen) }

func header(gen uint64) []byte {
	b := make([]byte, 0, headerLen)
	b = append(b, segMagic...)
	b = binary.BigEndian.AppendUint16(b, segVersion)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint64(b, gen)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// errBadHeader says a segment's header is not intact or names another
// generation; none of its records is applied.
var errBadHeader = errors.New("bad journal segment header")

func checkHeader(b []byte, gen uint64) error {
	want := header(gen)
	switch {
	case len(b) < headerLen:
		return fmt.Errorf("%w: %d bytes, want %d", errBadHeader, len(b), headerLen)
	case !bytes.Equal(b[:len(segMagic)], []byte(segMagic)):
		return fmt.Errorf("%w: starts %q, want %q", errBadHeader, b[:len(segMagic)], segMagic)
	case !bytes.Equal(b[:headerLen], want):
		return fmt.Errorf("%w: corrupt, from a newer toad, or of another generation than %d", errBadHeader, gen)
	}
	return nil
}

// generations lists the generations of the snapshots and the segments in
// dir, each in increasing order.
func generations(dir string) (snaps, segs []uint64, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ents {
		name := e.Name()
		for _, k := range []struct {
			prefix string
			to     *[]uint64
		}{{snapPrefix, &snaps}, {segPrefix, &segs}} {
			hex, ok := strings.CutPrefix(name, k.prefix)
			if !ok || len(hex) != 16 {
				continue
			}
			if g, err := strconv.ParseUint(hex, 16, 64); err == nil {
				*k.to = append(*k.to, g)
			}
		}
	}
	slices.Sort(snaps)
	slices.Sort(segs)
	return snaps, segs, nil
}

// removeTemps removes the temporary snapshots a compaction cut short left.
func removeTemps(dir string) {
	names, _ := filepath.Glob(filepath.Join(dir, "."+snapPrefix+"*"+tempSuffix))
	for _, n := range names {
		os.Remove(n)
	}
}

// writeSnapshot writes t to dir as generation gen's snapshot, atomically:
// to a temporary file, synced, renamed into place, the directory synced.
// It returns the size written.
func writeSnapshot(dir string, gen uint64, t *correlate.Table) (size int64, err error) {
	final := filepath.Join(dir, snapName(gen))
	tmp := filepath.Join(dir, "."+snapName(gen)+tempSuffix)
	// Mode 0600: it holds client addresses.
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	cw := &countingWriter{w: f}
	if err := t.WriteSnapshot(cw); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return 0, err
	}
	syncDir(dir)
	return cw.n, nil
}

// syncDir makes the renames and removals in dir durable. Some filesystems
// cannot sync a directory; the files themselves are synced either way.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

type countingWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// segment is a journal segment open for appending.
type segment struct {
	gen  uint64
	f    *os.File
	size int64 // bytes written, header included
}

// createSegment creates generation gen's segment with its header.
func createSegment(dir string, gen uint64) (*segment, error) {
	name := filepath.Join(dir, segName(gen))
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	h := header(gen)
	if _, err := f.Write(h); err != nil {
		f.Close()
		os.Remove(name)
		return nil, err
	}
	return &segment{gen: gen, f: f, size: int64(len(h))}, nil
}

// append writes b in one write.
func (s *segment) append(b []byte) error {
	n, err := s.f.Write(b)
	s.size += int64(n)
	return err
}

// remove closes the segment and removes its file.
func (s *segment) remove(dir string) {
	s.f.Close()
	os.Remove(filepath.Join(dir, segName(s.gen)))
}
