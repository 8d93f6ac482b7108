// Package apicmp measures toad's lookup service beside a bare gRPC echo on
// the same transport (a unix socket), in the same process and the same
// run, so that the ratio between them is what toad adds to gRPC itself:
//
//   - unary: Lookup of a known connection against grpc.testing's UnaryCall
//     echoing messages of the same sizes;
//   - batch: BatchLookup of many known connections a call against the echo
//     of payloads of the request's and the response's sizes;
//   - stream: Watch events, new connections observed by the table and
//     received by a watcher, against a server stream of as many messages
//     of the same size.
//
// The two sides take turns in phases of fixed length, several rounds, and
// the medians count. Run is to be called from one goroutine at a time.
package apicmp
