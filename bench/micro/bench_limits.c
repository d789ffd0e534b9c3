/* Micro-benchmark of a rate-limit take as the request path does it: four buckets at once
 * (key RPM, key TPM, tenant RPM, tenant TPM) over 1000 keys of 10 tenants.
 *
 *   build/bench_limits [ITERATIONS [THREADS]]          memory backend
 *   build/bench_limits ITERATIONS 0 redis://127.0.0.1:6379   Redis backend (one client,
 *                                                     sequential, then 64 in flight)
 *
 * Prints ns per take (memory: one thread, then THREADS threads sharing the table) or
 * microseconds per take and takes per second (Redis). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "limits/limits.h"

#define MINUTE INT64_C(60000000)

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

struct run {
    struct cmx_limits *l;
    struct cmx_limits_client *c;
    long iters;
    long done, allowed;
    double ns;
};

static void count_cb(void *ud, const struct cmx_limits_result *r)
{
    struct run *run = ud;
    run->done++;
    run->allowed += r->allowed;
}

static void fill(struct cmx_limits_bucket b[4], char keys[4][40], long i)
{
    long k = i % 1000, t = k % 10;
    snprintf(keys[0], 40, "key:%ld:rpm", k);
    snprintf(keys[1], 40, "key:%ld:tpm", k);
    snprintf(keys[2], 40, "tenant:%ld:rpm", t);
    snprintf(keys[3], 40, "tenant:%ld:tpm", t);
    b[0] = (struct cmx_limits_bucket){keys[0], CMX_LIMITS_REQUESTS, 600, MINUTE, 1, 0, 0};
    b[1] = (struct cmx_limits_bucket){keys[1], CMX_LIMITS_TOKENS, 200000, MINUTE, 300, 0, 0};
    b[2] = (struct cmx_limits_bucket){keys[2], CMX_LIMITS_REQUESTS, 60000, MINUTE, 1, 0, 0};
    b[3] = (struct cmx_limits_bucket){keys[3], CMX_LIMITS_TOKENS, 20000000, MINUTE, 300, 0, 0};
}

static void mem_thread(void *arg)
{
    struct run *run = arg;
    struct cmx_limits_client *c;
    char keys[4][40];
    struct cmx_limits_bucket b[4];
    if (cmx_limits_client_new(run->l, NULL, &c) != 0)
        return;
    double t0 = now_ns();
    for (long i = 0; i < run->iters; i++) {
        fill(b, keys, i * 7919);
        cmx_limits_take(c, b, 4, count_cb, run);
    }
    run->ns = now_ns() - t0;
    cmx_limits_client_close(c);
}

static int bench_memory(long iters, int threads)
{
    struct cmx_limits_config cfg;
    struct cmx_limits *l;
    cmx_limits_config_init(&cfg);
    if (cmx_limits_new(&cfg, &l) != 0)
        return 1;
    struct run one = {.l = l, .iters = iters};
    mem_thread(&one);
    printf("memory, 1 thread:  %.0f ns per take of 4 buckets (%ld of %ld allowed)\n",
           one.ns / (double)iters, one.allowed, one.done);
    struct run *runs = calloc((size_t)threads, sizeof(*runs));
    uv_thread_t *t = calloc((size_t)threads, sizeof(*t));
    double t0 = now_ns();
    for (int i = 0; i < threads; i++) {
        runs[i] = (struct run){.l = l, .iters = iters};
        uv_thread_create(&t[i], mem_thread, &runs[i]);
    }
    for (int i = 0; i < threads; i++)
        uv_thread_join(&t[i]);
    double wall = now_ns() - t0;
    printf("memory, %d threads: %.0f ns per take per thread, %.2f M takes/s in all\n", threads,
           runs[0].ns / (double)iters, (double)threads * (double)iters / wall * 1e3);
    free(runs);
    free(t);
    cmx_limits_free(l);
    return 0;
}

static int bench_redis(long iters, const char *url)
{
    struct cmx_limits_config cfg;
    struct cmx_limits *l;
    char err[200], keys[4][40];
    struct cmx_limits_bucket b[4];
    uv_loop_t loop;
    cmx_limits_config_init(&cfg);
    if (cmx_limits_config_parse(&cfg, url, strlen(url), err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_limits: %s\n", err);
        return 1;
    }
    if (cmx_limits_new(&cfg, &l) != 0)
        return 1;
    uv_loop_init(&loop);
    struct run run = {.l = l};
    cmx_limits_client_new(l, &loop, &run.c);
    for (int depth = 1; depth <= 64; depth *= 64) {
        run.done = run.allowed = 0;
        long sent = 0;
        double t0 = now_ns();
        while (run.done < iters) {
            while (sent < iters && sent - run.done < depth) {
                fill(b, keys, sent * 7919);
                cmx_limits_take(run.c, b, 4, count_cb, &run);
                sent++;
            }
            uv_run(&loop, UV_RUN_ONCE);
        }
        double ns = now_ns() - t0;
        printf("redis, %2d in flight: %.1f us per take, %.0f takes/s (%ld allowed)\n", depth,
               ns / (double)iters / 1e3, (double)iters / ns * 1e9, run.allowed);
    }
    cmx_limits_client_close(run.c);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    cmx_limits_free(l);
    return 0;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 1000000;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    if (argc > 3)
        return bench_redis(iters, argv[3]);
    return bench_memory(iters, threads < 1 ? 1 : threads);
}
