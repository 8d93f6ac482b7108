// Package netnstest builds throwaway network namespaces for privileged
// tests: create a namespace, join namespaces with veth pairs, configure them
// with ip(8), and run Go code inside one.
//
// Every namespace is named "toadtest-<prefix>-<pid>-<n>", so parallel test
// binaries never collide, and is deleted in t.Cleanup whether the test
// passes or fails. IPv6 duplicate address detection is off in it, so IPv6
// addresses (link-local ones too) work as soon as their link is up.
// Callers gate their test with privtest.Require(t, "ip") first. Code that
// is not a test, such as the benchmark harness, uses Open, Run, Connect and
// SetSysctl, which return errors, and deletes its namespaces with Close.
//
// Go code enters a namespace through (*NS).Do, which runs a function on an
// OS thread locked into the namespace. Sockets created there (listeners,
// dialed connections, packet sockets) belong to the namespace for their
// whole life and may be used from any goroutine afterwards; goroutines
// started inside the function do not inherit the namespace.
//
// An NS is safe for concurrent use. Its zero value is not usable; use New or Open.
// The package is Linux only.
package netnstest
