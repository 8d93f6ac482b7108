package journal

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrNoSpace is returned, wrapped, by Check when the directory's
// filesystem has no room left (or the user's quota is spent).
var ErrNoSpace = errors.New("no space left for the journal")

// Check makes dir if it is missing (mode 0750) and checks that a journal
// can keep its files there, by writing and removing a small file, so that
// a mistake shows before anything starts. Its errors say what to do: dir
// is not a directory, cannot be made or written (permissions, a read-only
// filesystem), or its filesystem is full (wrapping ErrNoSpace: a journal
// opened there serves from memory until space comes back).
func Check(dir string) error {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("%s is not a directory: the state is kept in a directory of its own", dir)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("cannot make the directory: %w (make it, or name one toad's user may create)", err)
	}
	f, err := os.CreateTemp(dir, "."+snapPrefix+"check-*"+tempSuffix)
	if err != nil {
		return checkError(dir, err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	// A whole page: filesystems that allocate late refuse it only once
	// a page must be found for it.
	if _, err := f.Write(make([]byte, 4096)); err != nil {
		return checkError(dir, err)
	}
	if err := f.Sync(); err != nil {
		return checkError(dir, err)
	}
	return nil
}

func checkError(dir string, err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ENOSPC, syscall.EDQUOT:
			return fmt.Errorf("%w on %s's filesystem: %w (free some, or name a directory on another filesystem)", ErrNoSpace, dir, errno)
		case syscall.EACCES, syscall.EPERM:
			return fmt.Errorf("directory %s is not writable by toad's user: %w (give it the directory, or name another)", dir, errno)
		case syscall.EROFS:
			return fmt.Errorf("directory %s is on a read-only filesystem: %w (name a writable one)", dir, errno)
		}
	}
	return fmt.Errorf("directory %s cannot be written: %w", dir, err)
}
