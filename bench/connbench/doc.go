// Package connbench runs the end-to-end benchmark of connections
// (BenchmarkConnections in ./e2e: clients, the toad-proxy command, an
// origin application, toad and a bare gRPC echo server, each in network
// namespaces, the servers processes of their own) through `go test -bench`
// and collects the figures it reports, for the harness's report.
//
// It needs the go command, root and Linux, as the benchmark does; without
// root the benchmark skips itself and Run says so (under CI=true it fails
// instead).
package connbench
