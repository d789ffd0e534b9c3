/* AWS event stream (application/vnd.amazon.eventstream): the binary framing of Bedrock's
 * ConverseStream / InvokeModelWithResponseStream answers (and Transcribe, S3 Select...).
 *
 * One message on the wire:
 *   total_len u32 | headers_len u32 | prelude_crc u32 (CRC-32 of the 8 bytes before)
 *   headers (headers_len bytes) | payload | message_crc u32 (CRC-32 of everything before)
 * all big-endian; a header is name_len u8, name, type u8, value (types 0-9 below).
 *
 * The decoder is incremental: bytes may arrive split anywhere, and each complete, verified
 * message is handed to a callback. Messages complete in the caller's buffer are decoded in
 * place (no copy); only a message split across reads is buffered (capped). */
#ifndef CMX_CODEC_EVENTSTREAM_H
#define CMX_CODEC_EVENTSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define CMX_ES_MAX_HEADERS 32
#define CMX_ES_MAX_MESSAGE (16u << 20) /* AWS's own limit is 16 MiB of payload + headers */

enum cmx_es_type {
    CMX_ES_BOOL_TRUE = 0,
    CMX_ES_BOOL_FALSE = 1,
    CMX_ES_BYTE = 2,
    CMX_ES_INT16 = 3,
    CMX_ES_INT32 = 4,
    CMX_ES_INT64 = 5,
    CMX_ES_BYTES = 6,
    CMX_ES_STRING = 7,
    CMX_ES_TIMESTAMP = 8, /* ms since the epoch */
    CMX_ES_UUID = 9,      /* 16 bytes */
};

struct cmx_es_header {
    const char *name; /* not NUL-terminated; points into the message */
    size_t name_len;
    enum cmx_es_type type;
    int64_t num;      /* bool (1/0), byte, int16/32/64, timestamp */
    const char *data; /* bytes, string, uuid: not NUL-terminated */
    size_t len;       /* their length (16 for uuid) */
};

struct cmx_es_message {
    struct cmx_es_header headers[CMX_ES_MAX_HEADERS]; /* in wire order */
    size_t n_headers;
    const char *payload; /* points into the message; valid during the callback only */
    size_t payload_len;
    uint32_t total_len;   /* from the prelude */
    uint32_t headers_len; /* from the prelude */
    uint32_t prelude_crc; /* as sent (verified) */
    uint32_t message_crc; /* as sent (verified) */
};

/* Called for each complete, verified message. Return non-zero to stop decoding (that value
 * is returned by cmx_es_feed). */
typedef int (*cmx_es_message_cb)(void *ud, const struct cmx_es_message *m);

struct cmx_es_decoder {
    struct cmx_buf partial; /* bytes of a message not yet complete */
    size_t max_message;     /* largest total_len accepted */
    const char *error;      /* why decoding failed (static text), NULL while fine */
};

/* Prepares a decoder accepting messages up to max_message bytes (0: CMX_ES_MAX_MESSAGE). */
void cmx_es_decoder_init(struct cmx_es_decoder *d, size_t max_message);

/* Feeds bytes; calls cb for each message completed. Returns 0, the callback's non-zero
 * return, CMX_EUPSTREAM on a malformed message (bad CRC, lengths, header type; d->error
 * says which, and every later call fails the same way) or CMX_ENOMEM. */
int cmx_es_feed(struct cmx_es_decoder *d, const char *data, size_t len, cmx_es_message_cb cb,
                void *ud);

/* At the end of the stream: CMX_EUPSTREAM ("Truncated message") when bytes of an
 * unfinished message remain, else 0 (or the earlier failure). */
int cmx_es_finish(struct cmx_es_decoder *d);

/* Frees the buffer; the decoder can be initialised again. */
void cmx_es_decoder_free(struct cmx_es_decoder *d);

/* Decodes exactly one whole message from buf (len must equal its total_len). 0 or
 * CMX_EUPSTREAM with *why set. For tests and tools. */
int cmx_es_decode_one(const char *buf, size_t len, struct cmx_es_message *m, const char **why);

/* The first header named name (NUL-terminated) or NULL. */
const struct cmx_es_header *cmx_es_find(const struct cmx_es_message *m, const char *name);

/* True when header h is a string equal to s. */
bool cmx_es_header_is(const struct cmx_es_header *h, const char *s);

/* Appends one encoded message (headers as given: name, type and num or data/len) to out.
 * 0, CMX_EINVAL (a name over 255 bytes or a value over 65535) or a cmx_buf error. */
int cmx_es_encode(struct cmx_buf *out, const struct cmx_es_header *h, size_t n, const void *payload,
                  size_t payload_len);

/* CRC-32 (IEEE 802.3, zlib's crc32) of n bytes continuing from crc (start with 0). */
uint32_t cmx_crc32(uint32_t crc, const void *p, size_t n);

#endif
