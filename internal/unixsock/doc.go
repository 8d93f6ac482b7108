// Package unixsock makes unix socket listeners for toad's local APIs: a
// socket file with the permissions it is given from the moment it exists,
// in a directory made if missing, replacing only a crashed server's
// leftover, and removed again when the listener closes.
//
// Listen serves any unix socket type ("unix" for streams, "unixpacket" for
// SOCK_SEQPACKET). Its socket may be given a group, so that processes of
// another user in that group (nginx workers running as www-data) can
// connect, and Listen refuses a socket that group could not reach because
// its directory is closed to it.
//
// The package has no state; its functions are safe for concurrent use on
// distinct paths. It is Linux and Unix only in practice: it relies on
// socket files and chown.
package unixsock
