// Package testbed runs toad's moving parts for privileged end-to-end tests
// and benchmarks: the fullnat proxy inside a network namespace (Proxy),
// and the toad command itself, built from this module (BuildToad) and run
// as its own process inside a namespace (StartToad), as can be any other
// command that logs when it is ready (BuildCommand, Start).
//
// Everything it starts is stopped when the test ends, whether it passes or
// fails: the proxy is closed, and a toad process still running is killed
// and waited for. A toad process also dies with the test binary, should
// that be killed first. Callers gate their test with privtest.Require(t,
// "ip") and build their namespaces with netnstest.
//
// A Process is safe for concurrent use; its zero value is not usable (use
// Start or StartToad). The package is Linux only.
package testbed
