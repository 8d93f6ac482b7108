// Package daemon assembles toad serve: the connection table, its source (a
// live capture or replayed capture files), the gRPC API on a unix socket
// and TCP, gRPC health alone on its own listener, /metrics, /healthz and
// /readyz over HTTP, the snapshot kept across restarts, the warnings of
// counters that grow, and the order in which all of it starts and stops.
//
// Run runs one daemon until its context ends; a Config comes from
// DefaultConfig, changed field by field (cmd/toad fills it from flags and
// the environment). Config.Validate reports settings that are out of their
// bounds, naming the toad serve flag that sets each.
package daemon
