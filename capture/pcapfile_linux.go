package capture

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// mapPCAP maps f read-only when it is a regular classic pcap file read
// from its start, and returns nil otherwise, or when mapping it fails, for
// Replay to read f as a stream.
func mapPCAP(f *os.File) []byte {
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() < 4 || int64(int(fi.Size())) != fi.Size() {
		return nil
	}
	if off, err := f.Seek(0, io.SeekCurrent); err != nil || off != 0 {
		return nil
	}
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil || !isPCAP(magic[:]) {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	var buf []byte
	if err := rc.Control(func(fd uintptr) {
		buf, err = unix.Mmap(int(fd), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	}); err != nil || buf == nil {
		return nil
	}
	_ = unix.Madvise(buf, unix.MADV_SEQUENTIAL) // advice only
	return buf
}

// unmapPCAP unmaps what mapPCAP mapped.
func unmapPCAP(buf []byte) {
	_ = unix.Munmap(buf) // fails only for a range never mapped
}

// releasePCAP drops b, pages of a mapping of mapPCAP's, from the process's
// resident memory; they stay in the page cache, and would be read again
// from there if touched.
func releasePCAP(b []byte) {
	_ = unix.Madvise(b, unix.MADV_DONTNEED) // advice only
}
