//go:build unix

package replaycmp

import (
	"os"
	"runtime"
	"syscall"
)

// maxRSS returns the largest resident set of an ended process, in bytes.
func maxRSS(ps *os.ProcessState) int64 {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	switch {
	case !ok:
		return 0
	case runtime.GOOS == "darwin":
		return int64(ru.Maxrss)
	}
	return int64(ru.Maxrss) << 10 // in KiB

}
