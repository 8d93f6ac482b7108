//go:build !linux

package preload

// Shared tables need Linux; these keep the package's tests compiling.

func (s *SharedTable) OnApplied(fn func()) {}
func (s *SharedTable) StopHeartbeat()      {}
