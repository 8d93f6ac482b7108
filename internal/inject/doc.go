// Package inject writes IP packets to a network interface through a
// cooked AF_PACKET socket, as if a peer had sent them: the test and
// benchmark traffic that captures are measured on. A Sender must be made
// inside the interface's network namespace, and sends from the calling
// thread; OnOneCPU keeps that thread on one CPU, so that the kernel
// processes the packets in the order sent.
//
// A Sender is not safe for concurrent use. Off Linux, New returns an
// error wrapping errors.ErrUnsupported.
package inject
