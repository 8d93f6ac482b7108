'use strict';
// A small client for toad's LookupService: ask which real client is behind
// a connection your server accepted through an L4 proxy.
//
//   const toad = require('./toad');
//   const c = toad.connect('unix:///run/toad/toad.sock');
//   const conn = await c.realClient(socket);   // socket: a net.Socket
//   console.log(conn.client);                  // "203.0.113.7:51234"

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_DIR = path.join(__dirname, '..', '..', 'proto');

const definition = protoLoader.loadSync('toad/v1/toad.proto', {
  includeDirs: [PROTO_DIR],
  keepCase: true, // field names as in the .proto: client_ip, first_seen
  longs: String,
  enums: String,
  defaults: true,
});
const toadv1 = grpc.loadPackageDefinition(definition).toad.v1;

// address formats a socket address as toad expects it: "ip:port", with
// brackets for IPv6 ("[::ffff:198.51.100.10]:40001" from a dual-stack
// server).
function address(ip, port) {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

// toTarget turns "unix:///path", "/path" or "host:port" into a gRPC target.
function toTarget(addr) {
  if (addr.startsWith('/')) return `unix://${addr}`;
  return addr;
}

class Client {
  constructor(addr) {
    this.stub = new toadv1.LookupService(toTarget(addr), grpc.credentials.createInsecure());
  }

  // lookup resolves to the Connection toad knows for peer -> local, waiting
  // up to waitMs for a handshake in flight. A connection toad does not know
  // rejects with an error whose code is grpc.status.NOT_FOUND.
  lookup(peer, local, waitMs = 0, deadlineMs = 5000) {
    const req = { peer, local };
    if (waitMs > 0) {
      req.wait = { seconds: Math.floor(waitMs / 1000), nanos: (waitMs % 1000) * 1e6 };
    }
    const deadline = new Date(Date.now() + waitMs + deadlineMs);
    return new Promise((resolve, reject) => {
      this.stub.Lookup(req, { deadline }, (err, resp) => (err ? reject(err) : resolve(resp.connection)));
    });
  }

  // batchLookup resolves to one { found, connection } per key, in order.
  batchLookup(keys, deadlineMs = 5000) {
    const deadline = new Date(Date.now() + deadlineMs);
    return new Promise((resolve, reject) => {
      this.stub.BatchLookup({ keys }, { deadline }, (err, resp) => (err ? reject(err) : resolve(resp.results)));
    });
  }

  // realClient resolves to the Connection behind an accepted net.Socket.
  realClient(socket, waitMs = 500) {
    return this.lookup(
      address(socket.remoteAddress, socket.remotePort),
      address(socket.localAddress, socket.localPort),
      waitMs,
    );
  }

  close() {
    this.stub.close();
  }
}

function connect(addr = 'unix:///run/toad/toad.sock') {
  return new Client(addr);
}

module.exports = { connect, address, Client, status: grpc.status };
