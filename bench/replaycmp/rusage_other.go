//go:build !unix

package replaycmp

import (
	"os"
	"time"
)

func cpuTime() time.Duration { return 0 }

func maxRSS(*os.ProcessState) int64 { return 0 }
