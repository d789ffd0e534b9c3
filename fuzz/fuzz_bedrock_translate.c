/* libFuzzer target for src/providers/bedrock.c's answer translators. The first byte picks:
 *   0: a whole Converse body -> chat.completion (translate)
 *   1: raw bytes as a ConverseStream event stream (stream decoder)
 *   2: lines "eventType<TAB>payload" framed with valid CRCs, so the JSON mapping is reached
 *   3: an error answer (parse_error, with the text as x-amzn-ErrorType too)
 *   4: a client chat request -> Converse (build)
 * Whatever comes in, every chunk and body that goes out must be valid JSON (or [DONE], only
 * last), and nothing may crash or leak. */
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/eventstream.h"
#include "core/arena.h"
#include "core/err.h"
#include "core/json_scan.h"
#include "providers/provider.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct cmx_provider_cfg prov = {
    .name = "aws",
    .type = CMX_PROVIDER_BEDROCK,
    .region = "us-east-1",
    .base_url = "http://127.0.0.1:9",
    .access_key_id = "AKID",
    .secret_access_key = "SECRET",
};
static struct cmx_deployment_cfg dep = {.provider = &prov, .model = "anthropic.claude-v2:1"};

static void must_be_json(const char *s, size_t len)
{
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, s, (int)len);
    bool ok = o != NULL && json_tokener_get_error(tok) == json_tokener_success &&
              (size_t)json_tokener_get_parse_end(tok) == len;
    json_object_put(o);
    json_tokener_free(tok);
    if (!ok)
        __builtin_trap();
}

struct sink {
    bool done; /* [DONE] seen: nothing may follow */
};

static int chunk_cb(void *ud, const char *json, size_t len)
{
    struct sink *k = ud;
    if (k->done)
        __builtin_trap();
    if (len == 6 && memcmp(json, "[DONE]", 6) == 0) {
        k->done = true;
        return 0;
    }
    must_be_json(json, len);
    return 0;
}

static void stream(struct cmx_arena *a, const char *s, size_t len)
{
    void *st = cmx_provider_bedrock.stream_new(a, &dep);
    if (st == NULL)
        return;
    struct sink k = {0};
    size_t half = len / 2;
    int r = cmx_provider_bedrock.stream_feed(st, s, half, chunk_cb, &k);
    if (r == 0)
        r = cmx_provider_bedrock.stream_feed(st, s + half, len - half, chunk_cb, &k);
    if (r == 0)
        r = cmx_provider_bedrock.stream_finish(st, chunk_cb, &k);
    if (r == 0 && !k.done) {
        /* a clean end without [DONE] happens only after an in-band error */
    }
    cmx_provider_bedrock.stream_free(st);
}

static void framed(struct cmx_arena *a, const char *s, size_t len)
{
    struct cmx_buf w;
    cmx_buf_init(&w, 1u << 22);
    const char *end = s + len;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *e = nl ? nl : end;
        const char *tab = memchr(s, '\t', (size_t)(e - s));
        if (tab != NULL && tab > s && tab - s < 200) {
            bool exc = *s == '!'; /* "!throttlingException\t{...}" is an exception */
            const char *name = s + exc;
            struct cmx_es_header h[3] = {
                {exc ? ":exception-type" : ":event-type", exc ? 15 : 11, CMX_ES_STRING, 0, name,
                 (size_t)(tab - name)},
                {":content-type", 13, CMX_ES_STRING, 0, "application/json", 16},
                {":message-type", 13, CMX_ES_STRING, 0, exc ? "exception" : "event", exc ? 9u : 5u},
            };
            if (h[0].len > 0)
                cmx_es_encode(&w, h, 3, tab + 1, (size_t)(e - tab - 1));
        }
        s = nl ? nl + 1 : end;
    }
    if (w.len > 0)
        stream(a, w.data, w.len);
    cmx_buf_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *s = (const char *)data + 1;
    size_t len = size - 1;
    struct cmx_arena a;
    cmx_arena_init(&a);
    struct cmx_client_req cr = {.ep = CMX_EP_CHAT, .body = "{}", .body_len = 2};
    switch (data[0] % 5) {
    case 0: {
        struct cmx_buf out;
        cmx_buf_init(&out, 1u << 24);
        if (cmx_provider_bedrock.translate(&dep, &cr, s, len, &a, &out) == 0)
            must_be_json(out.data, out.len);
        cmx_buf_free(&out);
        break;
    }
    case 1:
        stream(&a, s, len);
        break;
    case 2:
        framed(&a, s, len);
        break;
    case 3: {
        struct cmx_http_header h = {"x-amzn-errortype", 16, NULL, 0};
        char *v = cmx_arena_strndup(&a, s, len < 100 ? len : 100);
        struct cmx_upstream_error e;
        if (v != NULL) {
            h.value = v;
            h.value_len = strlen(v);
            cmx_provider_bedrock.parse_error(429, &h, 1, s, len, &a, &e);
            if (e.message == NULL)
                __builtin_trap();
        }
        break;
    }
    default: {
        struct cmx_json_member *m = malloc(CMX_MAX_MEMBERS * sizeof(*m));
        enum cmx_json_type top;
        size_t n = 0;
        if (m != NULL && cmx_json_scan(s, len, &top, m, CMX_MAX_MEMBERS, &n) == 0 &&
            top == CMX_JSON_OBJECT) {
            cr.body = s;
            cr.body_len = len;
            cr.members = m;
            cr.n_members = n;
            struct cmx_provider_req out = {0};
            const char *why = NULL;
            int r = cmx_provider_bedrock.build(&dep, &cr, &a, &out, &why);
            if (r == 0)
                must_be_json(out.body, out.body_len);
            else if (r == CMX_EINVAL && why == NULL)
                __builtin_trap();
        }
        free(m);
        break;
    }
    }
    cmx_arena_reset(&a);
    return 0;
}
