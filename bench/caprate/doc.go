// Package caprate measures how fast a live capture takes TOA-carrying
// segments off a link into the connection table: two network namespaces
// joined by a veth pair, a capture (capture.Open) feeding a table on the
// server's end, and a sender on the proxies' end writing SYN segments that
// each carry a 200/8 TOA for a connection of its own, as fast as it can
// (sendmmsg(2) on a cooked packet socket), then at paced rates below that
// when the kernel dropped some. It reports the highest rate at which the
// kernel dropped nothing and every connection reached the table, and the
// CPU time per segment of the whole process (the sender included, with the
// kernel's receive path it runs) and of all but the sender's thread.
//
// It needs root and Linux; elsewhere, and without root, Run returns a
// result saying why it was skipped. Run is to be called from one goroutine
// at a time.
package caprate
