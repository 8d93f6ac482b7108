// Package node holds the test that runs the Node.js example client in this
// directory against a real toad serve: lookup.js (with toad.js, built on
// @grpc/grpc-js and @grpc/proto-loader) resolves the connections of a
// generated capture and the test checks every answer.
//
// The test needs node and npm; it installs the locked dependencies with
// npm ci when node_modules is missing. It skips without node, and fails
// instead under CI=true.
package node
