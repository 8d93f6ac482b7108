// Package idlecost measures what a live toad costs with no traffic: it
// runs the toad command (toad serve, capturing on a veth whose other end
// is silent, every listener at its default) inside a network namespace,
// waits until it serves and has settled, and reads from /proc how much CPU
// time it used and how many times its threads were switched in over a
// quiet period: the wakeups a timer, a poll or a timeout would cause.
//
// It needs root and Linux; elsewhere, and without root, Run returns a
// result saying why it was skipped.
package idlecost
