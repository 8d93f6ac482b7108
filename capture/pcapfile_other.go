//go:build !linux

package capture

import "os"

// mapPCAP maps nothing outside Linux: Replay reads files as streams.
func mapPCAP(*os.File) []byte { return nil }

func unmapPCAP([]byte) {}

func releasePCAP([]byte) {}
