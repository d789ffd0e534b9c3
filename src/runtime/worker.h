/* Workers: N threads, each with its own libuv loop, listener (SO_REUSEPORT), upstream
 * client (connection pool) and access-log buffer. They share only the immutable config
 * snapshot (refcounted) and a few atomics. The main thread handles signals and tells
 * workers what to do through an async handle. */
#ifndef CMX_RUNTIME_WORKER_H
#define CMX_RUNTIME_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "http/http.h"
#include "limits/limits.h"
#include "obs/accesslog.h"
#include "upstream/upstream.h"

struct cmx_runtime;

struct cmx_worker {
    int id;                                /* 0..n-1 */
    struct cmx_runtime *rt;                /* shared state */
    uv_thread_t thread;                    /* the worker thread */
    uv_loop_t loop;                        /* its loop */
    uv_async_t wake;                       /* main -> worker: look at the commands */
    uv_prepare_t flush;                    /* flushes the access log each iteration */
    uv_timer_t drain_timer;                /* bounds a graceful stop */
    struct cmx_config *cfg;                /* current snapshot (one reference) */
    _Atomic(struct cmx_config *) next_cfg; /* a reload waiting to be picked up */
    atomic_int cmd_drain;                  /* main asked for a graceful stop */
    struct cmx_http_server *http;          /* listener and connections */
    const struct cmx_upstream_ops *up_ops; /* upstream client implementation */
    struct cmx_upstream *up;               /* this worker's client */
    struct cmx_accesslog log;              /* access log buffer */
    struct cmx_limits_client *limits;      /* this worker's rate-limiter client */
    uint64_t rng[2];                       /* xorshift128+ state for ids and jitter */
    uint64_t rr;                           /* round-robin counter for ties */
    atomic_int_fast64_t inflight;          /* requests being handled (read by /metrics) */
    bool stopping;                         /* drain in progress */
    bool shut;                             /* shut_down() ran */
};

struct cmx_runtime {
    struct cmx_worker *workers; /* n_workers of them */
    int n_workers;
    const char *listen_host; /* effective listen address */
    int listen_port;
    uint64_t started_unix;     /* process start, seconds */
    atomic_bool ready;         /* every listener is up */
    atomic_bool draining;      /* SIGTERM received */
    struct cmx_limits *limits; /* rate limiter shared by the workers (memory or Redis) */
};

/* Starts worker w on its thread with cfg (a reference is taken). Blocks until it listens;
 * returns 0 or the error that prevented it. */
int cmx_worker_start(struct cmx_worker *w, struct cmx_runtime *rt, int id, struct cmx_config *cfg);

/* Asks the worker to stop gracefully (finish in-flight requests, bounded by the drain
 * timeout). Thread: main. */
void cmx_worker_drain(struct cmx_worker *w);

/* Hands a new config snapshot to the worker (it takes over the reference). Thread: main. */
void cmx_worker_reload(struct cmx_worker *w, struct cmx_config *cfg);

/* Waits for the worker thread to end and frees what it owns. */
void cmx_worker_join(struct cmx_worker *w);

/* A uniformly random 64-bit value from the worker's generator. Worker thread only. */
uint64_t cmx_worker_rand(struct cmx_worker *w);

#endif
