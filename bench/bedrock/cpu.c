/* CPU per streamed chunk on the Bedrock path: decode a recorded ConverseStream answer
 * (stream.bin from stub-bodies.mjs) with the provider's stream decoder, pass every chunk
 * through the proxy's chunk filter (usage capture, id/created fill-in) and frame it as SSE,
 * as src/api/proxy.c does, minus the socket write. Prints ns and instructions-free CPU time
 * per chunk (CLOCK_PROCESS_CPUTIME_ID).   cpu STREAM.BIN [ITERATIONS] [openai]
 * With "openai" the file is an SSE stream and the pass-through OpenAI decoder is measured
 * instead (the baseline: bench/peers/fixtures/stream.sse). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/arena.h"
#include "core/buf.h"
#include "providers/provider.h"

struct ctx {
    struct cmx_buf fixed, out;
    struct cmx_usage usage;
    long chunks;
};

static int on_chunk(void *ud, const char *json, size_t len)
{
    struct ctx *c = ud;
    struct cmx_chunk_result res;
    if (cmx_openai_chunk_filter(json, len, true, "chat.completion.chunk", "req_bench", 1732600000,
                                &c->usage, &c->fixed, &res) != 0)
        return -1;
    cmx_buf_reset(&c->out);
    cmx_buf_puts(&c->out, "data: ");
    cmx_buf_append(&c->out, res.data, res.len);
    cmx_buf_puts(&c->out, "\n\n");
    c->chunks++;
    return 0;
}

static double now(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s STREAM.BIN [ITERATIONS]\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL) {
        perror(argv[1]);
        return 1;
    }
    static char data[1 << 20];
    size_t len = fread(data, 1, sizeof(data), f);
    fclose(f);
    long iters = argc > 2 ? atol(argv[2]) : 20000;
    struct cmx_provider_cfg p = {.name = "aws", .type = CMX_PROVIDER_BEDROCK};
    struct cmx_deployment_cfg d = {.provider = &p,
                                   .model = "anthropic.claude-3-haiku-20240307-v1:0"};
    bool openai = argc > 3 && strcmp(argv[3], "openai") == 0;
    const struct cmx_provider_ops *ops =
        cmx_provider_ops_for(openai ? CMX_PROVIDER_OPENAI_COMPATIBLE : CMX_PROVIDER_BEDROCK);
    struct ctx c = {0};
    cmx_buf_init(&c.fixed, 1u << 20);
    cmx_buf_init(&c.out, 1u << 20);
    struct cmx_arena a;
    cmx_arena_init(&a);
    double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
    for (long i = 0; i < iters; i++) {
        void *st = ops->stream_new(&a, &d);
        /* arrives in 3 reads, as a TCP stream would */
        size_t a1 = len / 3, a2 = 2 * len / 3;
        if (ops->stream_feed(st, data, a1, on_chunk, &c) != 0 ||
            ops->stream_feed(st, data + a1, a2 - a1, on_chunk, &c) != 0 ||
            ops->stream_feed(st, data + a2, len - a2, on_chunk, &c) != 0 ||
            ops->stream_finish(st, on_chunk, &c) != 0) {
            fprintf(stderr, "decode failed\n");
            return 1;
        }
        ops->stream_free(st);
        cmx_arena_reset(&a);
    }
    double wall = now(CLOCK_MONOTONIC) - t0, cpu = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
    printf("%ld streams, %ld chunks (%ld per stream, %zu bytes per stream)\n", iters, c.chunks,
           c.chunks / iters, len);
    printf("decoder: %s\n", ops->name);
    printf("CPU per streamed chunk: %.0f ns (wall %.0f ns); per stream %.1f us\n", cpu / c.chunks,
           wall / c.chunks, cpu / iters / 1000);
    cmx_buf_free(&c.fixed);
    cmx_buf_free(&c.out);
    return 0;
}
