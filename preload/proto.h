/* The wire format of PROTOCOL.md: fixed frames, big-endian integers. */
#ifndef TOAD_PRELOAD_PROTO_H
#define TOAD_PRELOAD_PROTO_H

#include <stdint.h>
#include <string.h>

#define FRAME_SIZE 128
#define PROTO_VERSION 1
#define MAGIC0 'T'
#define MAGIC1 'D'
#define RANGES_PER_FRAME 6

enum frame_type {
	T_HELLO = 1,
	T_WELCOME = 2,
	T_RANGES = 3,
	T_LOOKUP = 4,
	T_ANSWER = 5,
	T_REPORT = 6,
};

enum status {
	S_OK = 1,
	S_NOT_FOUND = 2,
	S_NOT_SERVING = 3,
	S_BAD_REQUEST = 4,
	S_BAD_VERSION = 5,
	S_BUSY = 6,
};

#define WELCOME_ALL_TRUSTED 0x01
#define WELCOME_SHARED_TABLE 0x02
#define ANSWER_HAS_PORT 0x01

/* Field offsets. */
#define OFF_VERSION 2
#define OFF_TYPE 3
#define OFF_ID 4
#define HELLO_PID 8
#define WELCOME_STATUS 8
#define WELCOME_FLAGS 9
#define WELCOME_RANGES 10
#define WELCOME_GENERATION 12
#define WELCOME_SHARED_SIZE 20
#define RANGES_FIRST 8
#define RANGES_COUNT 10
#define RANGES_ENTRIES 12
#define RANGE_SIZE 18
#define LOOKUP_PEER 8
#define LOOKUP_LOCAL 26
#define LOOKUP_WAIT 44
#define LOOKUP_REPORT 48
#define REPORT_COUNTERS 8
#define ANSWER_STATUS 8
#define ANSWER_FAMILY 9
#define ANSWER_FLAGS 10
#define ANSWER_ADDR 16
#define ANSWER_PORT 32
#define ANSWER_GENERATION 36

static inline void put16(uint8_t *b, uint16_t v)
{
	b[0] = (uint8_t)(v >> 8);
	b[1] = (uint8_t)v;
}

static inline void put32(uint8_t *b, uint32_t v)
{
	b[0] = (uint8_t)(v >> 24);
	b[1] = (uint8_t)(v >> 16);
	b[2] = (uint8_t)(v >> 8);
	b[3] = (uint8_t)v;
}

static inline uint16_t get16(const uint8_t *b)
{
	return (uint16_t)(b[0] << 8 | b[1]);
}

static inline uint32_t get32(const uint8_t *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static inline void put_header(uint8_t *f, enum frame_type t, uint32_t id)
{
	memset(f, 0, FRAME_SIZE);
	f[0] = MAGIC0;
	f[1] = MAGIC1;
	f[OFF_VERSION] = PROTO_VERSION;
	f[OFF_TYPE] = (uint8_t)t;
	put32(f + OFF_ID, id);
}

#endif
