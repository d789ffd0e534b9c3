/* libFuzzer target for src/codec/eventstream.c. The first input byte picks a split point
 * and the message size cap; the rest is the stream. Fed whole, split in two at that point,
 * and byte by byte, it must give the same messages and the same result every time; every
 * message it accepts must re-encode to exactly the bytes it was decoded from. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/eventstream.h"
#include "core/buf.h"
#include "core/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int record_cb(void *ud, const struct cmx_es_message *m)
{
    struct cmx_buf *b = ud;
    size_t before = b->len;
    /* re-encoding what was decoded gives the same bytes (CRCs included) */
    if (cmx_es_encode(b, m->headers, m->n_headers, m->payload, m->payload_len) != 0)
        __builtin_trap();
    if (b->len - before != m->total_len)
        __builtin_trap();
    struct cmx_es_message again;
    const char *why;
    if (cmx_es_decode_one(b->data + before, m->total_len, &again, &why) != 0 ||
        again.message_crc != m->message_crc || again.prelude_crc != m->prelude_crc)
        __builtin_trap();
    return 0;
}

static int run(const char *s, size_t len, const size_t *cuts, size_t ncuts, size_t max,
               struct cmx_buf *out)
{
    struct cmx_es_decoder d;
    size_t at = 0;
    int r = 0;

    cmx_es_decoder_init(&d, max);
    for (size_t i = 0; i <= ncuts && r == 0; i++) {
        size_t next = i < ncuts ? cuts[i] : len;
        r = cmx_es_feed(&d, s + at, next - at, record_cb, out);
        at = next;
    }
    if (r == 0)
        r = cmx_es_finish(&d);
    if (r != 0 && (d.error == NULL || r != CMX_EUPSTREAM))
        __builtin_trap();
    cmx_es_decoder_free(&d);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *s = (const char *)data + 1;
    size_t len = size - 1;
    size_t at = data[0] % (len + 1);
    size_t max = data[0] & 1 ? 16 + data[0] % 200 : 0;
    size_t *cuts = malloc((len ? len : 1) * sizeof(*cuts));
    if (cuts == NULL)
        return 0;
    for (size_t i = 0; i + 1 < len; i++)
        cuts[i] = i + 1;
    struct cmx_buf whole, split, bytes;
    cmx_buf_init(&whole, SIZE_MAX / 2);
    cmx_buf_init(&split, SIZE_MAX / 2);
    cmx_buf_init(&bytes, SIZE_MAX / 2);
    int rw = run(s, len, NULL, 0, max, &whole);
    int rs = run(s, len, &at, 1, max, &split);
    int rb = run(s, len, cuts, len ? len - 1 : 0, max, &bytes);
    if (rw != rs || rw != rb || whole.len != split.len || whole.len != bytes.len)
        __builtin_trap();
    if (whole.len > 0 &&
        (memcmp(whole.data, split.data, whole.len) != 0 ||
         memcmp(whole.data, bytes.data, whole.len) != 0 || memcmp(whole.data, s, whole.len) != 0))
        __builtin_trap();
    cmx_buf_free(&whole);
    cmx_buf_free(&split);
    cmx_buf_free(&bytes);
    free(cuts);
    return 0;
}
