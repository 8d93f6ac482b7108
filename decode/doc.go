// Package decode turns captured frames into Records: the server-side
// 4-tuple of a TCP segment, its flags and sequence numbers, and the first
// TOA it carries.
//
// Decoding never allocates and never panics: a frame yields either a Record
// or a Reason it was rejected, which callers count. A Decoder is safe for
// concurrent use; its zero value decodes no TOA dialect (use New).
package decode
