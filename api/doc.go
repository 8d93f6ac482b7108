// Package api serves the toad.v1.LookupService over gRPC: applications ask
// it which real client is behind a connection that reached them through an
// L4 proxy, and it answers from a correlate.Table.
//
// A Server is bounded (message sizes, concurrent streams, watchers, the
// idle time and age of connections, keepalive enforcement; a watcher that
// stops reading loses its connection), exposes grpc.health.v1 (SERVING only once
// SetServing(true) says its source of connections is attached) and server
// reflection. ServeHealth serves the same health status, and nothing else,
// on a listener of its own, for probes that dial from the network. ListenUnix
// and ListenTCP make the listeners it is meant to serve lookups on: a unix
// socket with restricted permissions, and loopback TCP, since the answers
// reveal client addresses. How many connections each listener holds at
// once is the caller's to bound (netutil.LimitListener), since it depends
// on the process's descriptors.
//
// A Server is safe for concurrent use; build one with New, its zero value is
// not usable. The Go client is in package api/client.
package api
