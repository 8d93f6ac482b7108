//go:build !unix

package journal

import "os"

// lockDir opens the directory; other systems get no lock.
func lockDir(dir string) (*os.File, error) { return os.Open(dir) }
