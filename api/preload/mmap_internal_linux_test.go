package preload

import "golang.org/x/sys/unix"

// mapReadOnly maps fd as the library does; fd is dup'd, as a library
// receives its own copy.
func mapReadOnly(fd, size int) ([]byte, error) {
	d, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	defer unix.Close(d)
	return unix.Mmap(d, 0, size, unix.PROT_READ, unix.MAP_SHARED)
}

func unmap(b []byte) { unix.Munmap(b) }

// writable tries to map fd for writing, which the seals forbid.
func writable(fd, size int) error {
	b, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err == nil {
		unix.Munmap(b)
	}
	return err
}
