// Package e2e is toad's end-to-end test: real clients, each in its own
// network namespace, reach a real Go server through a FULLNAT proxy that
// inserts TOAs (the fullnat package), with kernel TCP all the way; the
// toad command captures beside the server, and the server's wrapped
// listener (api/client) must name every connection's true client. An
// attacker outside the trusted proxy ranges forges TOAs, and toad is
// restarted while connections stay open, cleanly and with SIGKILL under
// load (TestCrash; -kills N sets how many times its loop kills).
//
// The package has no code of its own, only tests. They need root and
// iproute2: they skip without them, and fail instead under CI=true.
package e2e
